"""`python -m opc`: the same as the `opc` executable."""

import sys

try:
    from .entry import main
except KeyboardInterrupt:  # Ctrl-C before opc.entry could handle it
    sys.stderr.write("interrupted\n")
    sys.exit(130)

main()
