"""Cross-reference checks over the objects of a rendered repository (filled in by later work)."""

from __future__ import annotations

ALL_CHECKS: list = []
