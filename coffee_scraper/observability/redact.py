"""Masking of secrets embedded in text: the password part of URLs such as database DSNs.

Used by logging, Sentry scrubbing and the CLI; which keys count as secret is decided by each of those.
"""

from __future__ import annotations

import re

URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)([^@\s]+)(@)")  # masks too much rather than too little


def mask_url(text: str, mask: str = "***") -> str:
    """``postgresql://user:secret@host/db`` → ``postgresql://user:***@host/db`` (anywhere in ``text``)."""
    return URL_PASSWORD.sub(rf"\g<1>{mask}\g<3>", text)
