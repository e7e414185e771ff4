"""`python -m opc`: the same as the `opc` executable."""

from .entry import main

main()
