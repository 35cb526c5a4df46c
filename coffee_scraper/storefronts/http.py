"""Polite async HTTP to shops: shared client; per shop robots.txt, pacing, retries, 304s, breaker, SSRF guard.

Platform knowledge (Shopify/WooCommerce paths and payload shapes) lives in shopify.py / woocommerce.py.

Layers, from the outside in:

``Shop.get``      breaker gate → robots.txt verdict → ``_exchange`` → classify the status: page or error
``_exchange``     retry loop: one ``_attempt`` per try inside ``_slot``; Retry-After / backoff; RequestEvents
``_slot``         per-shop semaphore + minimum delay between requests, then the fetcher-wide semaphore
``_attempt``      one HTTP exchange: SSRF check, manual redirects (≤ 5), streamed body with a size cap
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import math
import random
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any

import httpx
from protego import Protego

from coffee_scraper.settings import Settings
from coffee_scraper.storefronts.types import (
    BadPayload,
    CachedResponse,
    CircuitOpen,
    ConditionalCache,
    FetchedPage,
    FetchError,
    PermanentHTTPError,
    RequestEvent,
    RequestResult,
    ResponseTooLarge,
    RobotsDisallowed,
    ShopState,
    ShopUnavailable,
    ShopUnreachable,
    TransientExhausted,
    UnsafeAddress,
)

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
RETRY_AFTER_STATUSES = frozenset({429, 503})
CHALLENGE_STATUSES = frozenset({429, 503})  # statuses whose HTML body may be a challenge, not a hiccup
BLOCKED_STATUSES = frozenset({403, 430})  # 430: Shopify's security rejection
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
ROBOTS_MAX_BYTES = 500 * 1024
ROBOTS_STALE_LIMIT = timedelta(days=30)
ROBOTS_NETWORK_FAILURE = 0  # ShopState.robots_status when robots.txt got no HTTP answer at all

JSON_ACCEPT = "application/json"
HTML_ACCEPT = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"
XML_ACCEPT = "application/xml,text/xml;q=0.9,*/*;q=0.8"
ROBOTS_ACCEPT = "text/plain,*/*;q=0.5"
_VALIDATOR_HEADERS = ("If-None-Match", "If-Modified-Since")

# Lower-case byte markers of bot challenges / password pages in HTML bodies. Deliberately strong ones only:
# ordinary pages carry "captcha" (newsletter forms), and a 404 page must stay a 404.
_CHALLENGE_MARKERS = (
    b"cf-chl",
    b"challenge-platform",
    b"_cf_chl_opt",
    b"<title>just a moment...</title>",
    b"attention required! | cloudflare",
    b'action="/password"',
)
_CHALLENGE_SCAN_BYTES = 64 * 1024

_RETRYABLE_EXCEPTIONS: tuple[type[BaseException], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    TimeoutError,
    OSError,  # includes socket.gaierror from our own DNS lookups
)


# --- small pure helpers -------------------------------------------------------------------------------


def origin_of(url: str | httpx.URL) -> str:
    """``scheme://host[:port]`` of a URL (lower-case, IDNA host, default port dropped)."""
    u = url if isinstance(url, httpx.URL) else httpx.URL(url)
    host = u.raw_host.decode("ascii").lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{u.scheme.lower()}://{host}" + (f":{u.port}" if u.port is not None else "")


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delay-seconds (``"2"``, ``"2.0"``) or an HTTP-date.

    Returns None when absent or unparseable; never negative.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def is_unsafe_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why an address must not be fetched (SSRF guard), or None when it is a public unicast address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    checks = (
        ("loopback", ip.is_loopback),
        ("private", ip.is_private),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("unspecified", ip.is_unspecified),
        ("non-global", not ip.is_global),
    )
    for name, hit in checks:
        if hit:
            return name
    return None


def default_accept(url: str) -> str:
    """Accept header for a URL: JSON for catalog endpoints, XML for sitemaps, HTML otherwise."""
    path = httpx.URL(url).path
    if path.endswith((".json", ".js")) or "/wp-json/" in path:
        return JSON_ACCEPT
    if path.endswith(".xml"):
        return XML_ACCEPT
    if path == "/robots.txt":
        return ROBOTS_ACCEPT
    return HTML_ACCEPT


def _is_html(headers: dict[str, str], body: bytes) -> bool:
    ctype = headers.get("content-type", "").lower()
    if "html" in ctype:
        return True
    if "json" in ctype:
        return False
    head = body[:512].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html"))


def looks_blocked(headers: dict[str, str], body: bytes) -> bool:
    """True when a response is a bot challenge or a password page rather than content."""
    if headers.get("cf-mitigated", "").lower() == "challenge":
        return True
    if not _is_html(headers, body):
        return False
    head = body[:_CHALLENGE_SCAN_BYTES].lower()
    return any(marker in head for marker in _CHALLENGE_MARKERS)


def _blocked(raw: _Raw) -> bool:
    """403/430, or a 429/503 whose body is a bot challenge (retrying a challenge never helps)."""
    return raw.status in BLOCKED_STATUSES or (raw.status in CHALLENGE_STATUSES and looks_blocked(raw.headers, raw.body))


def _is_password_path(path: str) -> bool:
    return path.rstrip("/").endswith("/password")


def json_payload(page: FetchedPage, *, what: str) -> Any:
    """Decode a page that must be JSON; classify HTML by Content-Type *and* shape, never by status alone.

    Raises ShopUnavailable for challenge/password HTML, BadPayload for other HTML or malformed JSON.
    """
    if not page.from_cache and _is_html(page.headers, page.body):
        if looks_blocked(page.headers, page.body):
            raise ShopUnavailable(
                f"{page.url} answered a bot challenge or password page instead of {what}",
                url=page.url,
                status=page.status,
                hint="the shop blocks crawlers or is password-protected; open it in a browser, and pause the "
                "roaster until it is reachable",
            )
        raise BadPayload(
            f"{page.url} answered an HTML page, not {what}",
            url=page.url,
            status=page.status,
            hint="this URL is not the platform's JSON endpoint on this site; run platform detection again or "
            "set the roaster's platform explicitly",
        )
    try:
        return json.loads(page.body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadPayload(
            f"{page.url} answered malformed JSON where {what} was expected ({exc})",
            url=page.url,
            status=page.status,
            hint="the shop sent a broken or truncated body; retry later, and report it if it persists",
        ) from exc


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _iso_to_dt(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return _aware(value)
    if isinstance(value, str):
        try:
            return _aware(datetime.fromisoformat(value))
        except ValueError:
            return None
    return None


@dataclass
class _Raw:
    """One finished HTTP exchange before classification."""

    url: str
    final_url: str
    status: int
    headers: dict[str, str]
    body: bytes


class _TooLarge(Exception):
    def __init__(self, size: int | None) -> None:
        super().__init__(size)
        self.size = size


async def _read_capped(response: httpx.Response, max_bytes: int, *, truncate: bool) -> bytes:
    """Stream the (decoded) body; past ``max_bytes`` truncate or raise _TooLarge. Never buffers more."""
    declared = response.headers.get("content-length")
    if not truncate and declared is not None and not response.headers.get("content-encoding"):
        try:
            if int(declared) > max_bytes:
                raise _TooLarge(int(declared))
        except ValueError:
            pass
    buf = bytearray()
    async for chunk in response.aiter_bytes():
        buf += chunk
        if len(buf) > max_bytes:
            if truncate:
                return bytes(buf[:max_bytes])
            raise _TooLarge(None)
    return bytes(buf)


# --- the fetcher ------------------------------------------------------------------------------------


class Fetcher:
    """One per process/run: owns the shared httpx.AsyncClient, the global semaphore, one Shop per origin."""

    def __init__(
        self,
        settings: Settings,
        *,
        cache: ConditionalCache | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
        on_event: Callable[[RequestEvent], None] | None = None,
    ) -> None:
        self.settings = settings
        self.cache = cache
        self._clock = clock
        self._sleep = sleep
        self._now = now
        self._rng = rng if rng is not None else random.Random()
        self._on_event = on_event
        self._global = asyncio.Semaphore(max(1, settings.global_concurrency))
        self._shops: dict[str, Shop] = {}
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(
                connect=settings.connect_timeout_s,
                read=settings.read_timeout_s,
                write=settings.read_timeout_s,
                pool=settings.connect_timeout_s,
            ),
            follow_redirects=False,  # followed by hand so every hop gets the SSRF check
            # one kept-alive connection per shop in flight: the default pool keeps only 20 for the whole process
            limits=httpx.Limits(
                max_connections=max(100, 2 * settings.global_concurrency),
                max_keepalive_connections=max(20, 2 * settings.global_concurrency),
                keepalive_expiry=max(5.0, 2 * settings.request_delay_s + 5.0),
            ),
            headers={"User-Agent": settings.user_agent},
            trust_env=False,  # no env proxies: the SSRF guard must see the real peer
        )

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    def shop(
        self,
        base_url: str,
        *,
        state: ShopState | None = None,
        delay_s: float | None = None,
        concurrency: int | None = None,
    ) -> Shop:
        """The Shop for ``base_url``'s origin; the same origin always gives the same Shop (first call wins).

        A later call with another ``state`` object keeps the first one (politeness must be shared per
        origin); persist ``shop.state``, not the object you passed.
        """
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise UnsafeAddress(
                f"{base_url!r} is not an http(s) URL",
                url=base_url,
                hint="give the shop's address as https://host (only http and https are fetched)",
            )
        origin = origin_of(url)
        existing = self._shops.get(origin)
        if existing is not None:
            if state is not None and state is not existing.state:
                log.warning("shop %s already open in this fetcher; keeping its first ShopState", origin)
            return existing
        shop = Shop(
            self,
            base_url=str(url).rstrip("/"),
            origin=origin,
            state=state if state is not None else ShopState(),
            delay_s=delay_s,
            concurrency=concurrency if concurrency is not None else self.settings.per_shop_concurrency,
        )
        self._shops[origin] = shop
        return shop

    # -- internals shared by shops --

    def _emit(self, event: RequestEvent) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:  # a metrics bug must never break fetching
            log.exception("on_event callback failed for %s", event.url)

    async def _check_target(self, url: str) -> None:
        """Refuse non-http(s) URLs and (unless allowed) hosts resolving to non-public addresses."""
        u = httpx.URL(url)
        if u.scheme not in ("http", "https") or not u.host:
            raise UnsafeAddress(
                f"refusing {url!r}: only http and https URLs are fetched",
                url=url,
                hint="a shop redirected to an unsupported scheme; check the shop URL",
            )
        if self.settings.allow_private_addresses:
            return
        host = u.host
        port = u.port or (443 if u.scheme == "https" else 80)
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
        for ip in addresses:
            why = is_unsafe_ip(ip)
            if why:
                raise UnsafeAddress(
                    f"refusing {url}: {host} resolves to {ip}, a {why} address (SSRF guard)",
                    url=url,
                    hint="shops must be on public addresses; for a local test shop set "
                    "COFFEE_SCRAPER_ALLOW_PRIVATE_ADDRESSES=true",
                )

    def _check_peer(self, response: httpx.Response, url: str) -> None:
        """Re-check the address actually connected to (closes most of the DNS-rebinding gap)."""
        if self.settings.allow_private_addresses:
            return
        stream = response.extensions.get("network_stream")
        if stream is None:
            return
        try:
            peer = stream.get_extra_info("server_addr")
        except Exception:
            return
        if not peer:
            return
        try:
            ip = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
        except ValueError:
            return
        why = is_unsafe_ip(ip)
        if why:
            raise UnsafeAddress(
                f"refusing {url}: connected to {ip}, a {why} address (SSRF guard)",
                url=url,
                hint="the host's DNS points at a non-public address; check the shop URL",
            )


# --- one shop -----------------------------------------------------------------------------------------


class Shop:
    """One origin (scheme + host + port): robots.txt, pacing, retries, conditional GETs, circuit breaker.

    Get one with ``Fetcher.shop``; never construct it directly.
    """

    def __init__(
        self,
        fetcher: Fetcher,
        *,
        base_url: str,
        origin: str,
        state: ShopState,
        delay_s: float | None,
        concurrency: int,
    ) -> None:
        self.base_url = base_url
        self.origin = origin
        self.state = state
        self._f = fetcher
        self._s = fetcher.settings
        self._delay_override = delay_s
        self._sem = asyncio.Semaphore(max(1, concurrency))
        self._pace_lock = asyncio.Lock()
        self._robots_lock = asyncio.Lock()
        self._next_at = -math.inf  # clock time before which no request may start (delay since last one)
        self._not_before = -math.inf  # clock time set by Retry-After / backoff, shared by every request
        self._probe_in_flight = False
        self._parsed: tuple[str, Protego] | None = None

    def __repr__(self) -> str:
        return f"Shop({self.origin!r}, circuit={self.state.circuit_state})"

    # -- public API --

    def url_for(self, url_or_path: str) -> str:
        """Absolute URL on this shop: "/x" is origin-relative, "x" is relative to base_url."""
        if "://" in url_or_path:
            if origin_of(url_or_path) != self.origin:
                raise ValueError(
                    f"{url_or_path} is not on {self.origin}; use fetcher.shop() for that origin so it is "
                    "paced and checked against its own robots.txt"
                )
            return str(httpx.URL(url_or_path))
        if url_or_path.startswith("/"):
            return self.origin + url_or_path
        return f"{self.base_url}/{url_or_path}"

    @property
    def delay_s(self) -> float:
        """Minimum seconds between two requests to this shop (before jitter): setting or Crawl-delay."""
        base = self._delay_override if self._delay_override is not None else self._s.request_delay_s
        crawl = self._crawl_delay()
        return max(base, crawl or 0.0)

    async def allowed(self, url_or_path: str) -> bool:
        """Whether robots.txt lets us fetch this URL (fetches robots.txt when not cached in ``state``)."""
        url = self.url_for(url_or_path)
        if not self._robots_current(self._f._now()):
            async with self._gate(url):
                await self._ensure_robots()
        return self._robots_verdict(url)

    async def get(self, url_or_path: str, *, conditional: bool = True, accept: str | None = None) -> FetchedPage:
        """GET one URL politely: a 2xx page or a 304 answered from the cache; raises a FetchError else.

        ``conditional``: send If-None-Match / If-Modified-Since from the fetcher's cache when it has them.
        ``accept``: Accept header; by default JSON for .json/.js/wp-json URLs, HTML otherwise.
        """
        url = self.url_for(url_or_path)
        accept = accept or default_accept(url)
        async with self._gate(url):
            await self._ensure_robots()
            if not self._robots_verdict(url):
                raise self._disallowed(url)
            cached = self._f.cache.lookup(url) if (conditional and self._f.cache is not None) else None
            headers = {"Accept": accept}
            if cached is not None:
                if cached.etag:
                    headers["If-None-Match"] = cached.etag
                if cached.last_modified:
                    headers["If-Modified-Since"] = cached.last_modified
                if len(headers) == 1:
                    cached = None  # nothing to validate with: a plain GET
            raw, attempts, elapsed_s = await self._exchange(
                url, headers=headers, max_bytes=self._s.max_response_bytes, truncate=False
            )
            return self._classify(raw, attempts, elapsed_s * 1000.0, cached=cached, accept=accept)

    # -- classification --

    def _classify(
        self, raw: _Raw, attempts: int, elapsed_ms: float, *, cached: CachedResponse | None, accept: str
    ) -> FetchedPage:
        status = raw.status

        def page(body: bytes, *, from_cache: bool = False) -> FetchedPage:
            return FetchedPage(
                url=raw.url,
                status=status,
                headers=raw.headers,
                body=body,
                elapsed_ms=elapsed_ms,
                fetched_at=self._f._now(),
                attempts=attempts,
                from_cache=from_cache,
                final_url=raw.final_url if raw.final_url != raw.url else None,
            )

        if 200 <= status < 300:
            if accept == JSON_ACCEPT and looks_blocked(raw.headers, raw.body):
                self._record_failure()
                raise self._unavailable(raw, "answered a bot challenge page instead of JSON")
            self._record_success()
            return page(raw.body)
        if status == 304:
            self._record_success()
            if cached is None:
                raise PermanentHTTPError(
                    f"{raw.url} answered 304 Not Modified to an unconditional request",
                    url=raw.url,
                    status=status,
                    hint="the shop's cache is misbehaving; fetch again without the stored validators",
                )
            return page(cached.body, from_cache=True)
        if 300 <= status < 400 and _is_password_path(httpx.URL(raw.final_url).path):
            self._record_failure()
            raise ShopUnavailable(
                f"{raw.url} redirects to {raw.final_url}: the shop is password-protected",
                url=raw.url,
                status=status,
                hint="the store is closed or pre-launch; pause the roaster until it opens (never 'zero products')",
            )
        if _blocked(raw):
            self._record_failure()
            raise self._unavailable(raw, f"answered {status} (blocked)")
        if 400 <= status < 500 or 300 <= status < 400:
            self._record_success()  # the shop answered; this URL is the problem
            hint = {
                404: "the shop has no such page; check the URL or the platform",
                410: "the page is gone; check the URL or the platform",
                401: "the endpoint needs a login; it is not a public storefront endpoint",
            }.get(status, "the request was refused; check the URL and parameters")
            raise PermanentHTTPError(f"{raw.url} answered {status}", url=raw.url, status=status, hint=hint)
        self._record_failure()
        raise PermanentHTTPError(
            f"{raw.url} answered {status}",
            url=raw.url,
            status=status,
            hint="the shop's server failed in a way that retrying does not fix; try the next run",
        )

    def _unavailable(self, raw: _Raw, what: str) -> ShopUnavailable:
        return ShopUnavailable(
            f"{raw.url} {what}",
            url=raw.url,
            status=raw.status,
            hint="the shop blocks crawlers, our region or this User-Agent; check it in a browser and pause "
            "the roaster or ask the roaster to allow it (never counted as 'zero products')",
        )

    def _disallowed(self, url: str) -> RobotsDisallowed | ShopUnreachable:
        status = self.state.robots_status
        if status == ROBOTS_NETWORK_FAILURE and self.state.extra.get("robots_error"):
            return ShopUnreachable(
                f"{self.origin} could not be reached: {self.state.extra['robots_error']}",
                url=url,
                hint="check the shop URL and this machine's network/DNS; the roaster is retried at its next run",
            )
        if status is not None and self._robots_failed(status):
            why = "no answer" if status == ROBOTS_NETWORK_FAILURE else f"HTTP {status}"
            return RobotsDisallowed(
                f"{url}: {self.origin}/robots.txt could not be read ({why}), so the whole site is treated as "
                "disallowed",
                url=url,
                status=status,
                hint=f"retried after {self._s.robots_error_retry_s:.0f} s; if it persists the shop is down",
            )
        return RobotsDisallowed(
            f"{url} is disallowed by {self.origin}/robots.txt for '{self._s.robots_token}'",
            url=url,
            hint="the shop asks crawlers not to fetch this path; skip it or ask the roaster for permission",
        )

    # -- circuit breaker (state in ShopState so the pipeline persists it) --

    @asynccontextmanager
    async def _gate(self, url: str) -> AsyncIterator[None]:
        st = self.state
        claimed = False
        if st.circuit_state != "closed":
            now = self._f._now()
            if st.circuit_state == "open":
                opened = _aware(st.circuit_opened_at) if st.circuit_opened_at else None
                due = opened + timedelta(seconds=self._s.breaker_reset_s) if opened else now
                if now < due:
                    raise CircuitOpen(
                        f"{url}: circuit for {self.origin} is open after {st.consecutive_failures} failed "
                        "requests in a row",
                        url=url,
                        hint=f"the next trial request is allowed after {due.isoformat(timespec='seconds')}; "
                        "check the shop in a browser meanwhile",
                    )
                st.circuit_state = "half_open"
                log.info("circuit for %s half-open: sending one probe", self.origin)
            if self._probe_in_flight:
                raise CircuitOpen(
                    f"{url}: circuit for {self.origin} is half-open and its probe request is in flight",
                    url=url,
                    hint="wait for the probe's outcome",
                )
            self._probe_in_flight = True
            claimed = True
        try:
            yield
        finally:
            if claimed:
                self._probe_in_flight = False

    def _record_success(self) -> None:
        st = self.state
        if st.circuit_state != "closed":
            log.info("circuit for %s closed", self.origin)
        st.consecutive_failures = 0
        st.circuit_state = "closed"
        st.circuit_opened_at = None

    def _record_failure(self) -> None:
        st = self.state
        st.consecutive_failures += 1
        if st.circuit_state == "half_open" or (
            st.circuit_state == "closed" and st.consecutive_failures >= self._s.breaker_failure_threshold
        ):
            log.warning("circuit for %s opened after %d failures", self.origin, st.consecutive_failures)
            st.circuit_state = "open"
            st.circuit_opened_at = self._f._now()

    # -- robots.txt --

    def _robots_current(self, now: datetime) -> bool:
        st = self.state
        err_at = _iso_to_dt(st.extra.get("robots_error_at"))
        if err_at is not None and (now - err_at).total_seconds() < self._s.robots_error_retry_s:
            return True
        if st.robots_status is None or st.robots_fetched_at is None:
            return False
        age = (now - _aware(st.robots_fetched_at)).total_seconds()
        if self._robots_failed(st.robots_status):
            return age < self._s.robots_error_retry_s
        return age < self._s.robots_cache_s

    @staticmethod
    def _robots_failed(status: int) -> bool:
        # 429 is a 4xx, but "allow all because you throttled us" would be rude: treat it like a 5xx
        return status in (ROBOTS_NETWORK_FAILURE, 429) or status >= 500

    def _parser(self) -> Protego | None:
        txt = self.state.robots_txt
        if txt is None or self.state.robots_status is None or not 200 <= self.state.robots_status < 300:
            return None
        if self._parsed is None or self._parsed[0] is not txt:
            self._parsed = (txt, Protego.parse(txt))
        return self._parsed[1]

    def _crawl_delay(self) -> float | None:
        parser = self._parser()
        if parser is None:
            return None
        try:
            delay = parser.crawl_delay(self._s.robots_token)
        except Exception:
            return None
        return float(delay) if delay is not None else None

    def _robots_verdict(self, url: str) -> bool:
        status = self.state.robots_status
        if status is None:
            return False  # never fetched (ensure_robots failed oddly): be safe
        if self._robots_failed(status):
            return False
        parser = self._parser()
        if parser is None:
            return True  # 3xx/4xx: no rules
        return bool(parser.can_fetch(url, self._s.robots_token))

    async def _ensure_robots(self) -> None:
        """Fetch robots.txt into ``state`` unless a current copy (or a recent failure) is there."""
        async with self._robots_lock:
            now = self._f._now()
            if self._robots_current(now):
                return
            url = self.origin + "/robots.txt"
            status: int
            text: str | None = None
            try:
                raw, _, _ = await self._exchange(
                    url, headers={"Accept": ROBOTS_ACCEPT}, max_bytes=ROBOTS_MAX_BYTES, truncate=True
                )
                status = raw.status
                if 200 <= status < 300:
                    text = raw.body.decode("utf-8", errors="replace").lstrip("\ufeff")
            except TransientExhausted as exc:  # failure already counted by _exchange
                status = exc.status if exc.status is not None else ROBOTS_NETWORK_FAILURE
                self.state.extra["robots_error"] = str(exc.args[0]) if exc.args else type(exc).__name__
            except PermanentHTTPError as exc:  # e.g. more than 5 redirects: RFC 9309 says "unavailable"
                status = exc.status if exc.status is not None else 404
            now = self._f._now()
            st = self.state
            if not self._robots_failed(status):
                self._record_success()
                st.robots_txt, st.robots_status, st.robots_fetched_at = text, status, now
                st.extra.pop("robots_error_at", None)
                return
            if status != ROBOTS_NETWORK_FAILURE and status not in RETRY_STATUSES:
                self._record_failure()  # non-retryable 5xx (retryable ones were counted by _exchange)
            log.warning("robots.txt of %s failed (status %s)", self.origin, status or "no answer")
            good = (
                st.robots_status is not None
                and not self._robots_failed(st.robots_status)
                and st.robots_fetched_at is not None
                and now - _aware(st.robots_fetched_at) < ROBOTS_STALE_LIMIT
            )
            st.extra["robots_error_at"] = now.isoformat()
            if status != ROBOTS_NETWORK_FAILURE:
                st.extra.pop("robots_error", None)
            if not good:
                st.robots_txt, st.robots_status, st.robots_fetched_at = None, status, now

    # -- pacing --

    def _jittered_delay(self) -> float:
        jitter = self._s.request_jitter_s
        return self.delay_s + (self._f._rng.uniform(0.0, jitter) if jitter > 0 else 0.0)

    @asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        """Hold one of the shop's slots, wait out the delay, then one of the fetcher-wide slots."""
        clock, sleep = self._f._clock, self._f._sleep
        async with self._sem:
            async with self._pace_lock:
                while True:
                    wait = max(self._next_at, self._not_before) - clock()
                    if wait <= 0:
                        break
                    await sleep(wait)
                self._next_at = clock() + self._jittered_delay()  # start-to-start spacing (concurrency > 1)
            async with self._f._global:
                try:
                    yield
                finally:
                    self._next_at = max(self._next_at, clock() + self._jittered_delay())  # end-to-start

    # -- the retry loop --

    async def _exchange(
        self, url: str, *, headers: dict[str, str], max_bytes: int, truncate: bool
    ) -> tuple[_Raw, int, float]:
        """GET with retries: (first non-retryable response, attempts, seconds of that attempt without
        pacing). Raises TransientExhausted after the last try (counting one breaker failure), or the
        FetchError of a non-HTTP problem."""
        s = self._s
        attempts = max(1, s.max_attempts)
        last_status: int | None = None
        last_reason = ""
        for attempt in range(1, attempts + 1):
            raw: _Raw | None = None
            reason = ""
            async with self._slot():
                t0 = self._f._clock()
                if self.state.circuit_state == "open":  # opened by another request while this one queued
                    raise CircuitOpen(
                        f"{url}: circuit for {self.origin} opened while this request waited",
                        url=url,
                        hint="the shop keeps failing; the next trial request is allowed after "
                        f"breaker_reset_s={self._s.breaker_reset_s:.0f} s",
                    )
                try:
                    async with asyncio.timeout(s.request_deadline_s):
                        raw = await self._attempt(url, headers, max_bytes=max_bytes, truncate=truncate)
                    t1 = self._f._clock()
                except FetchError as exc:
                    self._event(url, exc.status, "error", t0, 0, attempt, error=exc.kind)
                    raise
                except _TooLarge as exc:
                    self._event(url, None, "error", t0, 0, attempt, error="response_too_large")
                    size = f" ({exc.size} bytes declared)" if exc.size else ""
                    raise ResponseTooLarge(
                        f"{url} is larger than max_response_bytes={s.max_response_bytes}{size}",
                        url=url,
                        hint="raise COFFEE_SCRAPER_MAX_RESPONSE_BYTES if this shop's pages are legitimately "
                        "that big, or use a smaller page size",
                    ) from exc
                except httpx.DecodingError as exc:
                    self._event(url, None, "error", t0, 0, attempt, error="decoding")
                    raise BadPayload(
                        f"{url}: body could not be decoded ({exc})",
                        url=url,
                        hint="the shop sent a corrupt compressed body; retry later",
                    ) from exc
                except _RETRYABLE_EXCEPTIONS as exc:
                    if isinstance(exc, TimeoutError | httpx.TimeoutException):
                        reason = f"timed out ({type(exc).__name__})"
                    else:
                        reason = f"connection failed ({type(exc).__name__}: {exc})"
                except httpx.HTTPError as exc:
                    self._event(url, None, "error", t0, 0, attempt, error=type(exc).__name__)
                    raise PermanentHTTPError(
                        f"{url}: request failed ({type(exc).__name__}: {exc})",
                        url=url,
                        hint="check the shop URL",
                    ) from exc

            if raw is not None:
                nbytes = len(raw.body)
                if raw.status not in RETRY_STATUSES or _blocked(raw):
                    self._event(url, raw.status, self._result_for(raw), t0, nbytes, attempt)
                    return raw, attempt, t1 - t0
                last_status = raw.status
                reason = f"HTTP {raw.status}"
            else:
                nbytes = 0
                last_status = None
            last_reason = reason
            rate_limited = raw is not None and raw.status == 429

            wait, retry_after = self._retry_wait(raw, attempt)
            if retry_after is not None and wait is None:
                self._event(
                    url,
                    last_status,
                    "rate_limited" if rate_limited else "error",
                    t0,
                    nbytes,
                    attempt,
                    retry_after_s=retry_after,
                    error="retry_after_too_long",
                )
                self.state.extra["retry_not_before"] = (self._f._now() + timedelta(seconds=retry_after)).isoformat()
                self._record_failure()
                raise TransientExhausted(
                    f"{url}: the shop asked us to wait {retry_after:.0f} s (Retry-After, HTTP "
                    f"{last_status}), longer than retry_after_cap_s={s.retry_after_cap_s:.0f}",
                    url=url,
                    status=last_status,
                    hint="the shop is throttling us; the run is partial — try again after the wait",
                )
            if attempt == attempts:
                self._event(
                    url,
                    last_status,
                    "rate_limited" if rate_limited else "error",
                    t0,
                    nbytes,
                    attempt,
                    error=None if raw is not None else reason,
                )
                break
            assert wait is not None
            self._event(
                url,
                last_status,
                "rate_limited" if rate_limited else "retry",
                t0,
                nbytes,
                attempt,
                retry_after_s=wait,
                error=None if raw is not None else reason,
            )
            self._not_before = max(self._not_before, self._f._clock() + wait)

        self._record_failure()
        raise TransientExhausted(
            f"{url}: still failing after {attempts} attempts (last: {last_reason})",
            url=url,
            status=last_status,
            hint="the shop is down, slow or throttling us; the run is partial — it is retried next run, and "
            f"the circuit opens after {s.breaker_failure_threshold} such failures",
        )

    def _retry_wait(self, raw: _Raw | None, attempt: int) -> tuple[float | None, float | None]:
        """(wait before the next try, Retry-After seconds if the shop sent one). wait None: give up."""
        s = self._s
        if raw is not None and raw.status in RETRY_AFTER_STATUSES:
            retry_after = parse_retry_after(raw.headers.get("retry-after"), self._f._now())
            if retry_after is not None:
                if retry_after > s.retry_after_cap_s:
                    return None, retry_after
                return retry_after, retry_after
        ceiling = min(s.backoff_cap_s, s.backoff_base_s * (2 ** (attempt - 1)))
        return self._f._rng.uniform(0.0, ceiling), None  # full jitter

    @staticmethod
    def _result_for(raw: _Raw) -> RequestResult:
        if 200 <= raw.status < 300:
            return "ok"
        if raw.status == 304:
            return "not_modified"
        if _blocked(raw):
            return "blocked"
        if 300 <= raw.status < 400 and _is_password_path(httpx.URL(raw.final_url).path):
            return "blocked"
        if raw.status == 429:
            return "rate_limited"
        return "error"

    def _event(
        self,
        url: str,
        status: int | None,
        result: RequestResult,
        t0: float,
        nbytes: int,
        attempt: int,
        *,
        retry_after_s: float | None = None,
        error: str | None = None,
    ) -> None:
        self._f._emit(
            RequestEvent(
                origin=self.origin,
                url=url,
                status=status,
                result=result,
                elapsed_s=max(0.0, self._f._clock() - t0),
                bytes=nbytes,
                attempt=attempt,
                retry_after_s=retry_after_s,
                error=error,
            )
        )

    # -- one HTTP exchange --

    async def _attempt(self, url: str, headers: dict[str, str], *, max_bytes: int, truncate: bool) -> _Raw:
        """One GET with manual redirects (each hop SSRF-checked); stops at a /password redirect."""
        client = self._f._client
        current = url
        hop_headers = dict(headers)
        for hop in range(MAX_REDIRECTS + 1):
            await self._f._check_target(current)
            request = client.build_request("GET", current, headers=hop_headers)
            response = await client.send(request, stream=True)
            try:
                self._f._check_peer(response, current)
                resp_headers = {k.lower(): v for k, v in response.headers.items()}
                location = response.headers.get("location")
                if response.status_code in REDIRECT_STATUSES and location:
                    target = response.url.join(location)
                    if _is_password_path(target.path):
                        return _Raw(url, str(target), response.status_code, resp_headers, b"")
                    if hop == MAX_REDIRECTS:
                        raise PermanentHTTPError(
                            f"{url}: more than {MAX_REDIRECTS} redirects (last to {target})",
                            url=url,
                            status=response.status_code,
                            hint="the shop has a redirect loop; check the shop URL in a browser",
                        )
                    current = str(target)
                    # validators belong to the original URL; never let another resource answer 304
                    hop_headers = {k: v for k, v in hop_headers.items() if k not in _VALIDATOR_HEADERS}
                    continue
                body = await _read_capped(response, max_bytes, truncate=truncate)
                return _Raw(url, str(response.url), response.status_code, resp_headers, body)
            finally:
                await response.aclose()
        raise AssertionError("unreachable")  # pragma: no cover
