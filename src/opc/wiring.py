"""The checks `opc validate` runs over all built objects, after schema validation."""

from __future__ import annotations

from .policy import check_policies

ALL_CHECKS = [check_policies]
