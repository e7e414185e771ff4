"""The `opc` executable: every failure is one line on stderr and a non-zero exit, never a traceback.

Ctrl-C exits 130 and SIGTERM 143 (each after the command's own cleanup ran: a render in progress
removes its staging directory); an OS error (permissions, a full disk) exits 1 with what failed
and where; anything unexpected exits 1 with its type and message (``OPC_DEBUG=1`` shows the
traceback).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from types import FrameType


class Terminated(BaseException):
    """SIGTERM, raised where the program is, so that cleanup (``finally``, ``with``) runs."""


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def _fail(message: str, code: int) -> None:
    from .text import mask_credentials

    sys.stderr.write(mask_credentials(message) + "\n")
    sys.exit(code)


def _signalled(message: str, code: int) -> None:
    """Exit after a signal, once the command's cleanup ran. ``os._exit``: an interpreter that saw
    a KeyboardInterrupt anywhere (an import included) may otherwise end by re-raising SIGINT at
    shutdown, whatever code it was given."""
    sys.stderr.write(message + "\n")
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def os_error(exc: OSError) -> str:
    what = exc.strerror or str(exc)
    where = f": {exc.filename}" if exc.filename else ""
    return f"{what}{where}"


def _interrupted(exc: BaseException) -> bool:
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    try:
        import click

        from .cli import main as cli

        try:
            cli.main(prog_name="opc", standalone_mode=False)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.exceptions.Abort as exc:
            if isinstance(exc.__cause__, KeyboardInterrupt):  # click turns Ctrl-C into Abort
                _signalled("interrupted", 130)
            _fail("aborted", 1)
    except KeyboardInterrupt:
        _signalled("interrupted", 130)
    except Terminated:
        _signalled("terminated", 143)
    except BrokenPipeError:
        sys.exit(1)
    except OSError as exc:
        _fail(f"error: {os_error(exc)}", 1)
    except Exception as exc:
        if _interrupted(exc):  # Ctrl-C inside code that wraps what it catches (e.g. __set_name__)
            _signalled("interrupted", 130)
        if os.environ.get("OPC_DEBUG"):
            raise
        _fail(f"error: unexpected {type(exc).__name__}: {' '.join(str(exc).split())} "
              "(OPC_DEBUG=1 shows where)", 1)
