"""Turns what the fetcher and the pipeline did into updates of the metrics declared in ``metrics.py``.

Three entry points keep the pipeline legible:

* ``record_request_event`` is the fetcher's ``on_event`` callback (one call per HTTP attempt);
* ``storage_operation("page_commit")`` wraps a transaction and counts it as ok or error;
* ``record_page`` / ``record_run`` count products and runs once their transaction committed.

The ``roaster`` label is always the roaster's name. The fetcher only knows a shop's origin, so the pipeline
tells ``label_shop`` which roaster (and platform) an origin belongs to when it opens the shop; an origin
nobody labelled (a fetcher used outside the pipeline) falls back to its host.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

from coffee_scraper.observability.metrics import (
    CIRCUIT_STATE,
    FETCH_BYTES,
    FETCH_DURATION,
    FETCH_RATE_LIMITED,
    FETCH_REQUESTS,
    FETCH_RETRIES,
    LAST_SUCCESS,
    PRODUCTS_PROCESSED,
    RUN_DURATION,
    RUNS,
    STORAGE_OPERATIONS,
    VALIDATION_ERRORS,
)
from coffee_scraper.storefronts.types import RequestEvent

CIRCUIT_VALUES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
UNKNOWN_PLATFORM = "unknown"


@dataclass(frozen=True)
class ShopLabels:
    roaster: str
    platform: str


_shops: dict[str, ShopLabels] = {}


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def label_shop(origin_or_url: str, roaster: str, platform: str | None = None) -> None:
    """Record which roaster (and platform, once known) the requests to this origin belong to."""
    known = platform if platform and platform != "auto" else UNKNOWN_PLATFORM
    _shops[_origin(origin_or_url)] = ShopLabels(roaster, known)


def shop_labels(origin: str) -> ShopLabels:
    found = _shops.get(_origin(origin))
    if found is not None:
        return found
    return ShopLabels(urlsplit(origin).hostname or origin, UNKNOWN_PLATFORM)


def record_request_event(event: RequestEvent) -> None:
    """``Fetcher(on_event=...)``: one HTTP attempt → requests, latency, bytes, retries, 429s."""
    labels = shop_labels(event.origin)
    FETCH_REQUESTS.labels(labels.roaster, labels.platform, event.result).inc()
    FETCH_DURATION.labels(labels.roaster).observe(event.elapsed_s)
    if event.bytes:
        FETCH_BYTES.labels(labels.roaster).inc(event.bytes)
    if event.status == 429:
        FETCH_RATE_LIMITED.labels(labels.roaster).inc()
    # "retry" always means another try follows; a 429 is retried when a wait was chosen and nothing vetoed it
    retried = event.result == "retry" or (
        event.result == "rate_limited" and event.retry_after_s is not None and event.error is None
    )
    if retried:
        FETCH_RETRIES.labels(labels.roaster).inc()


STORAGE_OPERATION_NAMES = ("page_commit", "run_start", "run_finish")

# Both result series exist from start-up at 0, so rate() sees the very first error after a restart.
for _operation in STORAGE_OPERATION_NAMES:
    for _result in ("ok", "error"):
        STORAGE_OPERATIONS.labels(_operation, _result)


@contextmanager
def storage_operation(operation: str) -> Iterator[None]:
    """Count the enclosed storage work as ``result="ok"`` or, when it raises, ``"error"`` (and re-raise)."""
    try:
        yield
    except BaseException:
        STORAGE_OPERATIONS.labels(operation, "error").inc()
        raise
    STORAGE_OPERATIONS.labels(operation, "ok").inc()


def record_page(roaster: str, *, stored: int, unchanged: int, quarantined: int, invalid: int, reviews: int) -> None:
    """Products of one committed page by outcome; ``invalid`` are the quarantines that failed validation."""
    for outcome, n in (("stored", stored), ("unchanged", unchanged), ("quarantined", quarantined), ("review", reviews)):
        if n:
            PRODUCTS_PROCESSED.labels(roaster, outcome).inc(n)
    if invalid:
        VALIDATION_ERRORS.labels(roaster).inc(invalid)


def record_run(
    roaster: str, *, mode: str, status: str, duration_s: float, finished_at: float, circuit_state: str | None
) -> None:
    """A finished run: count, duration, last success (Unix time) and the shop's circuit breaker state."""
    RUNS.labels(roaster, mode, status).inc()
    RUN_DURATION.labels(mode).observe(duration_s)
    if status == "ok":
        LAST_SUCCESS.labels(roaster).set(finished_at)
    if circuit_state in CIRCUIT_VALUES:
        CIRCUIT_STATE.labels(roaster).set(CIRCUIT_VALUES[circuit_state])
