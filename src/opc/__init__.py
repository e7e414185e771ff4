"""opc: scaffold, validate and upgrade a one-person company's multi-cloud GitOps repository."""

__version__ = "0.1.0"
