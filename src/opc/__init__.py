"""opc: scaffold, validate and upgrade a one-person company's multi-cloud GitOps repository."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("opc")
except PackageNotFoundError:  # running from a checkout that is not installed
    __version__ = "0+unknown"
