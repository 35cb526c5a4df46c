"""What every channel sender shares: the message handed to it, its result, its error, HTTP error classification.

Lives here: ``Outgoing`` (one claimed outbox row), ``Delivered``, ``DeliveryError`` (permanent or retryable, with
Retry-After), ``Sender`` (the protocol of ``slack``/``github``/``email``/``webhook``), Retry-After parsing.
Does not live here: the outbox table and its state machine (``notify/outbox.py``), channel specifics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
ERROR_TEXT_LIMIT = 500


@dataclass(frozen=True)
class Outgoing:
    """A claimed outbox row as the sender sees it."""

    id: int
    incident_id: str | None
    channel: str
    target: str
    kind: str
    payload: dict[str, Any]
    attempts: int  # including this one
    created_at: datetime


@dataclass(frozen=True)
class Delivered:
    external_ref: str | None = None  # e.g. the GitHub issue URL, the e-mail Message-ID
    status_code: int | None = None
    detail: str = ""


class DeliveryError(Exception):
    """A delivery failed. ``permanent``: retrying cannot help (bad token, bad payload); else retry later,
    not before ``retry_after`` seconds when the peer said so."""

    def __init__(
        self, message: str, *, permanent: bool = False, retry_after: float | None = None, status_code: int | None = None
    ) -> None:
        super().__init__(message[:ERROR_TEXT_LIMIT])
        self.permanent = permanent
        self.retry_after = retry_after
        self.status_code = status_code


# (incident_id, channel) -> external_ref of the incident's first delivered row there (e.g. its GitHub issue URL)
RefLookup = Callable[[str, str], str | None]


class Sender(Protocol):
    channel: str

    def send(self, msg: Outgoing, lookup: RefLookup) -> Delivered: ...

    def close(self) -> None: ...


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP-date (RFC 9110); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def short_body(resp: httpx.Response) -> str:
    try:
        text = resp.text
    except Exception:  # undecodable body
        return ""
    return " ".join(text.split())[:200]


def http_error(resp: httpx.Response, what: str) -> DeliveryError:
    """Classify a non-success HTTP answer: 408/425/429/5xx retry (with Retry-After), other 4xx are permanent."""
    code = resp.status_code
    retry_after = retry_after_seconds(resp.headers.get("retry-after"))
    permanent = code not in RETRYABLE_STATUS and 400 <= code < 500
    return DeliveryError(
        f"{what}: HTTP {code} {short_body(resp)}".strip(),
        permanent=permanent,
        retry_after=retry_after,
        status_code=code,
    )


def transport_error(exc: Exception, what: str) -> DeliveryError:
    """A network problem (refused, timeout, TLS): always worth retrying."""
    return DeliveryError(f"{what}: {type(exc).__name__}: {exc}".strip())
