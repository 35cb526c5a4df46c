"""Public data types and errors of the storefronts package (what the pipeline sees).

Everything here is plain data; HTTP, politeness and platform logic live in the sibling modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

PlatformName = Literal["shopify", "woocommerce"]
CircuitState = Literal["closed", "open", "half_open"]
RequestResult = Literal["ok", "not_modified", "retry", "error", "rate_limited", "blocked"]


@dataclass(frozen=True)
class FetchedPage:
    """One HTTP exchange as stored in raw_artifacts (body already decompressed, size-capped)."""

    url: str
    status: int
    headers: dict[str, str]
    body: bytes
    elapsed_ms: float
    fetched_at: datetime
    attempts: int = 1
    from_cache: bool = False  # True when a 304 answered and ``body`` is the cached copy
    final_url: str | None = None  # where redirects ended, when that differs from ``url``


@dataclass(frozen=True)
class RequestEvent:
    """One HTTP attempt (robots.txt included), reported to ``Fetcher(on_event=...)`` for metrics and logs.

    ``result``: "ok" (2xx), "not_modified" (304), "retry" (failed, will be tried again), "rate_limited"
    (429, retried or not), "blocked" (403/430/challenge/password page), "error" (anything else that ends
    the request: other 4xx/5xx, timeouts on the last try, too large, unsafe address).
    """

    origin: str
    url: str
    status: int | None  # None: no HTTP response (timeout, connection error, refused before sending)
    result: RequestResult
    elapsed_s: float
    bytes: int
    attempt: int
    retry_after_s: float | None = None  # the wait chosen before the next try (Retry-After or backoff)
    error: str | None = None  # short reason when there was no usable response


@dataclass(frozen=True)
class CatalogPage:
    """One page of a shop's product listing, parsed into raw product dicts (not yet validated)."""

    number: int
    fetched: FetchedPage
    products: list[dict[str, Any]]  # as the shop sent them: unvalidated, so an odd item may not be a dict
    total_pages: int | None = None  # when the platform tells (WooCommerce X-WP-TotalPages, Shopify meta.json)


@dataclass(frozen=True)
class CachedResponse:
    """A stored earlier response used for conditional requests (ETag / Last-Modified → 304)."""

    etag: str | None
    last_modified: str | None
    body: bytes


class ConditionalCache(Protocol):
    """Where validators and bodies of earlier responses come from (the pipeline backs it with the DB)."""

    def lookup(self, url: str) -> CachedResponse | None: ...


@dataclass
class ShopState:
    """Per-shop politeness and breaker state; loaded from and saved to the roaster row by the pipeline."""

    consecutive_failures: int = 0
    circuit_state: CircuitState = "closed"
    circuit_opened_at: datetime | None = None
    robots_txt: str | None = None
    robots_status: int | None = None  # HTTP status of the last robots.txt fetch (None: never fetched)
    robots_fetched_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class FetchError(Exception):
    """Base of every error the storefronts package raises. ``hint`` says what the user can do next."""

    kind: str = "fetch_error"
    retryable: bool = False

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None, hint: str = ""):
        super().__init__(message)
        self.url = url
        self.status = status
        self.hint = hint

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base} — {self.hint}" if self.hint else base


class RobotsDisallowed(FetchError):
    kind = "robots_disallowed"


class ShopUnreachable(FetchError):
    """No HTTP answer at all (DNS failure, connection refused, timeouts) even after retries."""

    kind = "unreachable"
    retryable = True


class CircuitOpen(FetchError):
    kind = "circuit_open"


class UnsafeAddress(FetchError):
    kind = "unsafe_address"


class ShopUnavailable(FetchError):
    """Password page, 403/challenge, HTML where JSON was expected: unavailable, never 'zero products'."""

    kind = "shop_unavailable"


class PermanentHTTPError(FetchError):
    kind = "http_permanent"


class TransientExhausted(FetchError):
    """429/5xx/timeouts still failing after every retry."""

    kind = "http_transient"
    retryable = True


class ResponseTooLarge(FetchError):
    kind = "response_too_large"


class BadPayload(FetchError):
    """Malformed JSON or a JSON shape that is not the platform's product listing."""

    kind = "bad_payload"


class PlatformUnknown(FetchError):
    kind = "platform_unknown"


class CatalogTooLarge(FetchError):
    """The listing endpoint cannot reach the whole catalog (Shopify's page × limit ≤ 25,000 cap)."""

    kind = "catalog_too_large"
