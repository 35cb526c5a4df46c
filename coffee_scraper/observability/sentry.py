"""Error reporting to Sentry (optional): on only when ``COFFEE_SCRAPER_SENTRY_DSN`` is set.

``configure_logging`` calls ``init_sentry`` (once per process), so every command reports errors: exceptions
logged at ERROR (``log.exception``) and uncaught ones become Sentry events, INFO lines become breadcrumbs.
``run_scope(roaster, run_id)`` tags whatever is captured during one roaster run.

Privacy: ``send_default_pii`` stays False (no IPs, users, cookies or request bodies), no trace headers are
sent to shops (``trace_propagation_targets=[]``),
and ``scrub_event`` masks secrets (tokens, passwords, DSN/URL passwords, Authorization headers, cookies)
anywhere in an event — messages, exception values, breadcrumbs, request data, local variables — before it
leaves the process.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import sentry_sdk

from coffee_scraper.observability.redact import mask_url
from coffee_scraper.settings import Settings

FILTERED = "[Filtered]"
_SECRET_KEYS = re.compile(r"(token|passw|secret|dsn|authorization|api[_-]?key|cookie|credential)", re.I)
_KEY_VALUE = re.compile(
    r"\b(access_token|token|password|passwd|pwd|secret|api[_-]?key|authorization|dsn)(\s*[=:]\s*)"
    r"(?:(?:bearer|basic|token)\s+)?(\"[^\"]*\"|'[^']*'|[^\s\"'&,;)]+)",
    re.I,
)
_BEARER = re.compile(r"\b(bearer|basic)(\s+)([A-Za-z0-9._~+/=-]{8,})", re.I)
_state: dict[str, Any] = {}


def release() -> str:
    try:
        return f"coffee-scraper@{version('coffee-scraper')}"
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "coffee-scraper@unknown"


def scrub_text(text: str) -> str:
    """Mask URL passwords, bearer tokens and ``key=value`` secrets inside free text."""
    text = mask_url(text, FILTERED)
    text = _KEY_VALUE.sub(rf"\1\2{FILTERED}", text)
    return _BEARER.sub(lambda m: m.group(0) if m.group(3) == FILTERED else f"{m.group(1)}{m.group(2)}{FILTERED}", text)


def _scrub(value: Any, depth: int = 0) -> Any:
    if depth > 20:
        return value
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {
            k: (FILTERED if isinstance(k, str) and _SECRET_KEYS.search(k) and v else _scrub(v, depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        # headers arrive as [name, value] pairs in some integrations
        if len(value) == 2 and isinstance(value[0], str) and _SECRET_KEYS.search(value[0]):
            return [value[0], FILTERED]
        return [_scrub(v, depth + 1) for v in value]
    return value


def scrub_event(event: Any, _hint: Any = None) -> Any:
    """``before_send`` / ``before_send_transaction``: the event with every secret-looking value masked."""
    return _scrub(event)


def _scrub_breadcrumb(crumb: Any, _hint: Any = None) -> Any:
    return _scrub(crumb)


def init_sentry(settings: Settings, component: str) -> bool:
    """Start the Sentry client once per process when a DSN is configured; True when reporting is on."""
    if not settings.sentry_dsn:
        return False
    if _state.get("dsn") == settings.sentry_dsn:
        return True
    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        environment=settings.sentry_environment,
        release=release(),
        traces_sample_rate=settings.sentry_traces_sample_rate,
        # send_default_pii stays at its default, False (passing it is deprecated in recent 2.x releases)
        trace_propagation_targets=[],  # never add sentry-trace/baggage headers to requests sent to shops
        before_send=scrub_event,
        before_send_transaction=scrub_event,
        before_breadcrumb=_scrub_breadcrumb,
    )
    sentry_sdk.set_tag("component", component)
    _state["dsn"] = settings.sentry_dsn
    return True


def shutdown_sentry(timeout_s: float = 2.0) -> None:
    """Flush pending events and stop reporting (tests; the SDK also flushes at exit by itself)."""
    client = sentry_sdk.get_client()
    if client.is_active():
        client.flush(timeout=timeout_s)
        client.close(timeout=timeout_s)
    _state.clear()


@contextmanager
def run_scope(roaster: str, run_id: int | None = None, mode: str | None = None) -> Iterator[None]:
    """Tag everything captured inside (this task or thread only) with the roaster, run id and mode."""
    with sentry_sdk.isolation_scope() as scope:
        scope.set_tag("roaster", roaster)
        if run_id is not None:
            scope.set_tag("run_id", str(run_id))
        if mode is not None:
            scope.set_tag("mode", mode)
        yield
