"""opc: scaffold, validate and upgrade a one-person company's multi-cloud GitOps repository."""

# Nothing is imported here: `python -m opc` and the `opc` executable import this package before
# opc.entry can turn Ctrl-C into one line, so it must take no time.


def version() -> str:
    """The installed version of opc ("0+unknown" in a checkout that is not installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("opc")
    except PackageNotFoundError:
        return "0+unknown"
