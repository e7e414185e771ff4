"""Text that opc prints."""

from __future__ import annotations

import re

URL_USERINFO = re.compile(r"(://)([^/@\s]*)@")


def mask_credentials(text: str) -> str:
    """Hide what sits between '://' and '@' in every URL (a user and password, or a token)."""
    return URL_USERINFO.sub(r"\1***@", text)
