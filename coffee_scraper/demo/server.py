"""Loopback demo shops: each ``DemoShop`` speaks the real Shopify or WooCommerce Store API protocol on its
own 127.0.0.1 port, with scripted faults and a record of every request (demos, end-to-end tests, benchmarks).

Not here: generating the catalogs (``coffee_scraper.demo.catalog``) or any client/scraping logic. All shops of
one ``DemoServer`` are served by a single asyncio event loop on one daemon thread, so 500 shops cost 500
listening sockets and one thread, and requests to one shop can overlap (a politeness test can see that).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hashlib
import html
import itertools
import json
import logging
import math
import re
import threading
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from coffee_scraper.demo.catalog import PLACEHOLDER_ORIGIN, make_shopify_products, make_woocommerce_products

__all__ = [
    "DemoServer",
    "DemoShop",
    "Fault",
    "FaultKind",
    "RequestRecord",
    "demo_shops",
    "max_concurrency",
]

log = logging.getLogger(__name__)

FaultKind = Literal[
    "status",
    "retry_after",
    "malformed_json",
    "html",
    "huge_body",
    "hang",
    "password_redirect",
    "empty",
    "slow",
]
Platform = Literal["shopify", "woocommerce"]

SHOPIFY_DEFAULT_LIMIT = 30
SHOPIFY_MAX_LIMIT = 250
SHOPIFY_PAGE_LIMIT_CAP = 25_000
WOO_DEFAULT_PER_PAGE = 10
WOO_MAX_PER_PAGE = 100
KEEP_ALIVE_IDLE_S = 15.0
MAX_HEAD_BYTES = 64 * 1024
_STREAM_CHUNK = 64 * 1024
_DEFAULT_FAULT_STATUS: dict[str, int] = {"status": 500, "retry_after": 429, "password_redirect": 302}


# --------------------------------------------------------------------------------------------------
# Public data types
# --------------------------------------------------------------------------------------------------


@dataclass
class Fault:
    """One scripted misbehaviour of a shop.

    kinds: ``status`` (answer ``status``, default 500, small HTML body, ``Retry-After`` if given);
    ``retry_after`` (``status`` default 429 with ``Retry-After: retry_after``, default ``"1"``);
    ``malformed_json`` (200 ``application/json`` whose body is the real answer cut in half);
    ``html`` (200 ``text/html`` theme page); ``huge_body`` (200 JSON-ish bytes streamed chunked,
    ``size_bytes`` long, never held in memory); ``hang`` (no answer for ``seconds``, then the connection is
    dropped; ``seconds`` <= 0 hangs until the client goes away); ``password_redirect`` (302 to
    ``/password``, an HTML page); ``empty`` (200 ``application/json`` with an empty body); ``slow`` (the
    normal answer, its body trickled out over ``seconds``).

    ``path_prefix`` selects requests by path; ``times`` is how many matching requests misbehave (-1 forever).
    ``status`` ``None`` means the kind's default (500, 429 or 302).
    """

    kind: FaultKind
    path_prefix: str = "/"
    times: int = 1
    status: int | None = None
    retry_after: str | None = None
    seconds: float = 0.0
    size_bytes: int = 50 * 1024 * 1024


@dataclass(frozen=True)
class RequestRecord:
    """One request a demo shop received. Times are ``time.monotonic()`` seconds; ``status`` 0 = no answer
    (hang, or the client left before the answer). ``query`` keeps the last value of a repeated key."""

    method: str
    path: str
    query: dict[str, str]
    started: float
    finished: float
    status: int
    headers: dict[str, str] = field(default_factory=dict)  # request headers, lower-case names
    connection: int = 0  # id of the TCP connection (same id = keep-alive reuse)


@dataclass
class DemoShop:
    """One demo storefront: its platform, catalog (raw platform dicts) and scripted behaviour.

    ``robots_txt`` ``None`` makes ``/robots.txt`` answer 404; ``etag`` False drops ETag and Last-Modified;
    ``hidden_products`` adds to meta.json's ``published_products_count`` what products.json never lists.
    """

    name: str
    platform: Platform
    products: list[dict[str, Any]]
    currency: str = "INR"
    robots_txt: str | None = "User-agent: *\nAllow: /\n"
    latency_s: float = 0.0
    faults: list[Fault] = field(default_factory=list)
    etag: bool = True
    hidden_products: int = 0  # published in meta.json's count but missing from products.json (partial listing)

    @classmethod
    def from_dump(cls, name: str, path: str | Path, platform: Platform | None = None, **kwargs: Any) -> DemoShop:
        """A shop serving a real dump file: Shopify ``{"products": [...]}`` or a WooCommerce Store API list.

        ``platform`` None guesses it from the file's shape. Extra keyword arguments go to ``DemoShop``.
        """
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if platform is None:
            platform = "shopify" if isinstance(data, dict) else "woocommerce"
        if platform == "shopify":
            if not (isinstance(data, dict) and isinstance(data.get("products"), list)):
                raise ValueError(f"{path}: a Shopify dump must be an object {{'products': [...]}}")
            products = data["products"]
        else:
            if not isinstance(data, list):
                raise ValueError(f"{path}: a WooCommerce dump must be a JSON array of Store API products")
            products = data
        return cls(name=name, platform=platform, products=products, **kwargs)


def max_concurrency(records: Iterable[RequestRecord]) -> int:
    """The largest number of requests that were open at the same instant (1 = strictly one at a time)."""
    events: list[tuple[float, int]] = []
    for r in records:
        events.append((r.started, 1))
        events.append((r.finished, -1))
    events.sort(key=lambda e: (e[0], e[1]))  # a request ending at t closes before one starting at t opens
    open_now = peak = 0
    for _, delta in events:
        open_now += delta
        peak = max(peak, open_now)
    return peak


# --------------------------------------------------------------------------------------------------
# Internals: per-shop runtime state (shared between the caller's thread and the loop thread)
# --------------------------------------------------------------------------------------------------


@dataclass
class _Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    cacheable: bool = False  # a 200 from the catalogue: gets validators, may become 304


@dataclass
class _ActiveFault:
    fault: Fault
    remaining: int  # -1 = forever


class _ShopRuntime:
    def __init__(self, shop: DemoShop, index: int) -> None:
        self.shop = shop
        self.index = index
        self.lock = threading.Lock()
        self.port = 0
        self.origin = ""
        self.records: list[RequestRecord] = []
        self.in_flight = 0
        self.faults = [_ActiveFault(f, f.times) for f in shop.faults]
        self.last_modified = 0.0
        self._set(shop.products, bump=False)

    def _set(self, products: Sequence[dict[str, Any]], *, bump: bool) -> None:
        self.products = list(products)
        self.encoded: list[bytes | None] = [None] * len(self.products)
        # hostile catalogs (tests) may hold non-objects; they are served as they are and never indexed
        self.by_handle = {
            str(p.get("handle")): i for i, p in enumerate(self.products) if isinstance(p, dict) and "handle" in p
        }
        self.by_id: dict[int, int] = {}
        self.variation_parent: dict[int, int] = {}
        for i, p in enumerate(self.products):
            if not isinstance(p, dict):
                continue
            if isinstance(p.get("id"), int):
                self.by_id[p["id"]] = i
            for v in p.get("variations") or []:
                if isinstance(v, dict) and isinstance(v.get("id"), int):
                    self.variation_parent[v["id"]] = i
        now = float(int(time.time()))
        if bump:  # a new Last-Modified second, so If-Modified-Since can never hide the change
            now = max(now, self.last_modified + 1)
        self.last_modified = now
        self.cache: dict[tuple[Any, ...], bytes] = {}

    def set_products(self, products: Sequence[dict[str, Any]]) -> None:
        with self.lock:
            self.shop.products = list(products)
            self._set(products, bump=True)

    def take_fault(self, path: str) -> Fault | None:
        with self.lock:
            for active in self.faults:
                if active.remaining != 0 and path.startswith(active.fault.path_prefix):
                    if active.remaining > 0:
                        active.remaining -= 1
                    return active.fault
        return None

    def encode(self, index: int) -> bytes:
        """One product as the platform's JSON encoder writes it (called with the lock held)."""
        cached = self.encoded[index]
        if cached is None:
            cached = _encode(self.shop.platform, self.products[index], self.origin)
            self.encoded[index] = cached
        return cached


def _encode(platform: str, obj: Any, origin: str) -> bytes:
    if platform == "woocommerce":
        # wp_json_encode: ASCII only (\u20b9) and escaped slashes (https:\/\/...)
        text = json.dumps(obj, ensure_ascii=True, separators=(",", ":"))
        text = text.replace(PLACEHOLDER_ORIGIN, origin).replace("/", "\\/")
        return text.encode("ascii")
    # Shopify (Rails): UTF-8, with <, > and & escaped as \u003c \u003e \u0026
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text.encode("utf-8")


def _json_body(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


_JSON = "application/json; charset=utf-8"
_HTML = "text/html; charset=utf-8"


def _html_page(title: str, body: str, platform: str) -> bytes:
    marker = (
        '<script>window.Shopify = window.Shopify || {}; Shopify.theme = {"name": "Dawn"};</script>'
        if platform == "shopify"
        else '<meta name="generator" content="WooCommerce 9.8.5">'
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"{marker}</head><body><main>{body}</main></body></html>"
    ).encode()


def _not_found(shop: DemoShop) -> _Response:
    if shop.platform == "shopify":
        body = _html_page(
            f"404 Not Found – {shop.name}",
            "<h1>404 Page Not Found</h1><p>The page you were looking for does not exist.</p>",
            "shopify",
        )
    else:
        body = _html_page(
            f"Page not found – {shop.name}", "<h1>Oops! That page can&rsquo;t be found.</h1>", "woocommerce"
        )
    return _Response(404, [("Content-Type", _HTML)], body)


def _wp_error(status: int, code: str, message: str, extra: dict[str, Any] | None = None) -> _Response:
    data: dict[str, Any] = {"status": status, **(extra or {})}
    return _Response(status, [("Content-Type", _JSON)], _json_body({"code": code, "message": message, "data": data}))


def _parse_int(text: str) -> int | None:
    text = text.strip()
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    return None


# --------------------------------------------------------------------------------------------------
# Routing: the two platforms' public catalogue endpoints
# --------------------------------------------------------------------------------------------------

_SHOPIFY_PRODUCT = re.compile(r"^/products/([^/]+)\.json$")
_WOO_PREFIXES = ("/wp-json/wc/store/v1/products", "/wp-json/wc/store/products")


def _route(rt: _ShopRuntime, path: str, query: dict[str, str]) -> _Response:
    shop = rt.shop
    if path == "/robots.txt":
        if shop.robots_txt is None:
            return _not_found(shop)
        return _Response(200, [("Content-Type", "text/plain; charset=utf-8")], shop.robots_txt.encode(), True)
    if path == "/password":
        return _Response(
            200,
            [("Content-Type", _HTML)],
            _html_page(
                f"{shop.name} – Opening Soon",
                '<form action="/password" method="post"><input type="password" '
                'name="password"><button>Enter</button></form><p>This store is password protected.</p>',
                "shopify",
            ),
        )
    if path == "/":
        return _Response(
            200,
            [("Content-Type", _HTML)],
            _html_page(shop.name, f"<h1>{html.escape(shop.name)}</h1>", shop.platform),
        )
    if shop.platform == "shopify":
        return _route_shopify(rt, path, query)
    return _route_woo(rt, path, query)


def _route_shopify(rt: _ShopRuntime, path: str, query: dict[str, str]) -> _Response:
    shop = rt.shop
    headers = [("Content-Type", _JSON), ("X-ShopId", str(_shop_id(shop.name))), ("Powered-By", "Shopify")]
    if path == "/meta.json":
        with rt.lock:
            count = len(rt.products) + shop.hidden_products
        slug = re.sub(r"[^a-z0-9]+", "-", shop.name.lower()).strip("-") or "shop"
        meta = {
            "id": _shop_id(shop.name),
            "name": shop.name,
            "city": "Bengaluru",
            "province": "Karnataka",
            "country": "IN",
            "currency": shop.currency,
            "domain": rt.origin.split("://", 1)[1],
            "url": rt.origin,
            "myshopify_domain": f"{slug}.myshopify.invalid",  # .invalid: a fallback never leaves the machine
            "description": f"Freshly roasted Indian specialty coffee from {shop.name}.",
            "ships_to_countries": ["IN"],
            "money_format": "₹{{amount}}" if shop.currency == "INR" else "{{amount}} " + shop.currency,
            "published_collections_count": 1,
            "published_products_count": count,
        }
        return _Response(200, headers, _encode("shopify", meta, rt.origin), True)
    if path == "/products.json":
        limit = _parse_int(query.get("limit", "")) or SHOPIFY_DEFAULT_LIMIT
        limit = SHOPIFY_DEFAULT_LIMIT if limit < 1 else min(limit, SHOPIFY_MAX_LIMIT)
        page = _parse_int(query.get("page", "")) or 1
        page = max(page, 1)
        if page * limit > SHOPIFY_PAGE_LIMIT_CAP:
            return _Response(400, headers, _json_body({"errors": "Page * Limit exceeds the 25000 limit."}))
        key = ("products.json", page, limit)
        with rt.lock:
            body = rt.cache.get(key)
            if body is None:
                start = (page - 1) * limit
                items = [rt.encode(i) for i in range(start, min(start + limit, len(rt.products)))]
                body = b'{"products":[' + b",".join(items) + b"]}"
                rt.cache[key] = body
        return _Response(200, headers, body, True)
    match = _SHOPIFY_PRODUCT.match(path)
    if match:
        with rt.lock:
            index = rt.by_handle.get(match.group(1))
            if index is not None:
                return _Response(200, headers, b'{"product":' + rt.encode(index) + b"}", True)
    return _not_found(shop)


def _route_woo(rt: _ShopRuntime, path: str, query: dict[str, str]) -> _Response:
    shop = rt.shop
    if not (path == "/wp-json" or path.startswith("/wp-json/")):
        return _not_found(shop)
    route = path.rstrip("/")
    api_link = ("Link", f'<{rt.origin}/wp-json/>; rel="https://api.w.org/"')
    if route == "/wp-json":
        index = {
            "name": shop.name,
            "description": "Indian specialty coffee",
            "url": rt.origin,
            "home": rt.origin,
            "namespaces": ["wp/v2", "wc/store", "wc/store/v1"],
            "routes": {},
        }
        return _Response(200, [("Content-Type", _JSON), api_link], _encode("woocommerce", index, rt.origin), True)
    for prefix in _WOO_PREFIXES:
        if route == prefix:
            return _woo_list(rt, query, prefix, api_link)
        if route.startswith(prefix + "/"):
            return _woo_single(rt, route[len(prefix) + 1 :], api_link)
    return _wp_error(404, "rest_no_route", "No route was found matching the URL and request method.")


def _woo_list(rt: _ShopRuntime, query: dict[str, str], route: str, api_link: tuple[str, str]) -> _Response:
    invalid: dict[str, str] = {}
    details: dict[str, dict[str, Any]] = {}
    values: dict[str, int] = {}
    for name, default, low, high in (
        ("page", 1, 1, None),
        ("per_page", WOO_DEFAULT_PER_PAGE, 1, WOO_MAX_PER_PAGE),
    ):
        raw = query.get(name)
        if raw is None:
            values[name] = default
            continue
        number = _parse_int(raw)
        if number is None:
            msg, code = f"{name} is not of type integer.", "rest_invalid_type"
        elif high is not None and not low <= number <= high:
            msg, code = (
                f"{name} must be between {low} (inclusive) and {high} (inclusive)",
                "rest_out_of_bounds",
            )
        elif number < low:
            msg, code = f"{name} must be greater than or equal to {low}", "rest_out_of_bounds"
        else:
            values[name] = number
            continue
        invalid[name] = msg
        details[name] = {"code": code, "message": msg, "data": None}
    if invalid:
        return _wp_error(
            400,
            "rest_invalid_param",
            f"Invalid parameter(s): {', '.join(invalid)}",
            {"params": invalid, "details": details},
        )
    page, per_page = values["page"], values["per_page"]
    with rt.lock:
        total = len(rt.products)
        key = ("woo", page, per_page)
        body = rt.cache.get(key)
        if body is None:
            start = (page - 1) * per_page
            items = [rt.encode(i) for i in range(start, min(start + per_page, total))]
            body = b"[" + b",".join(items) + b"]"
            rt.cache[key] = body
    total_pages = math.ceil(total / per_page)
    headers = [
        ("Content-Type", _JSON),
        ("X-WP-Total", str(total)),
        ("X-WP-TotalPages", str(total_pages)),
        api_link,
    ]
    base_query = {k: v for k, v in query.items() if k != "page"}

    def page_link(number: int, rel: str) -> tuple[str, str]:
        return ("Link", f'<{rt.origin}{route}?{urlencode({**base_query, "page": number})}>; rel="{rel}"')

    if page > 1:
        headers.append(page_link(min(page - 1, max(total_pages, 1)), "prev"))
    if total_pages > page:
        headers.append(page_link(page + 1, "next"))
    return _Response(200, headers, body, True)


def _woo_single(rt: _ShopRuntime, tail: str, api_link: tuple[str, str]) -> _Response:
    number = _parse_int(tail) if "/" not in tail else None
    headers = [("Content-Type", _JSON), api_link]
    with rt.lock:
        if number is not None and number in rt.by_id:
            return _Response(200, headers, rt.encode(rt.by_id[number]), True)
        if number is not None and number in rt.variation_parent:
            parent = rt.products[rt.variation_parent[number]]
            body = _encode("woocommerce", _woo_variation(parent, number), rt.origin)
            return _Response(200, headers, body, True)
    if number is None:
        return _wp_error(404, "rest_no_route", "No route was found matching the URL and request method.")
    return _wp_error(404, "woocommerce_rest_product_invalid_id", "Invalid product ID.")


def _woo_variation(parent: dict[str, Any], variation_id: int) -> dict[str, Any]:
    """What the Store API answers for ``/products/<variation id>``: the parent's data as a variation."""
    variation = next(v for v in parent.get("variations", []) if v.get("id") == variation_id)
    names: dict[tuple[str, str], str] = {}
    for attr in parent.get("attributes", []):
        for term in attr.get("terms", []):
            names[(attr.get("name", ""), term.get("slug", ""))] = term.get("name", "")
    label = ", ".join(f"{a['name']}: {names.get((a['name'], a['value']), a['value'])}" for a in variation["attributes"])
    prices = dict(parent.get("prices", {}))
    prices["price_range"] = None
    return {
        **parent,
        "id": variation_id,
        "parent": parent.get("id", 0),
        "type": "variation",
        "variation": label,
        "prices": prices,
        "attributes": [],
        "variations": [],
        "has_options": False,
    }


def _shop_id(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=5).digest(), "big") % 90_000_000_000 + 1


# --------------------------------------------------------------------------------------------------
# HTTP/1.1 over asyncio streams
# --------------------------------------------------------------------------------------------------


class _ClientGone(Exception):
    pass


@dataclass
class _Conn:
    id: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    buf: bytearray = field(default_factory=bytearray)

    def closing(self) -> bool:
        return self.writer.transport.is_closing()

    async def pause(self, seconds: float) -> bool:
        """Sleep ``seconds`` (<= 0: forever) while watching the socket; False as soon as the client leaves."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds if seconds > 0 else math.inf
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return True
            try:
                async with asyncio.timeout(None if remaining == math.inf else remaining):
                    data = await self.reader.read(65536)
            except TimeoutError:
                return True
            except ConnectionError:
                return False
            if not data:
                return False
            self.buf.extend(data)  # a pipelined request: keep it for later

    async def read_head(self, idle_s: float) -> bytes | None:
        while True:
            while self.buf[:2] == b"\r\n":  # tolerate stray CRLF between requests (RFC 9112 §2.2)
                del self.buf[:2]
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(self.buf[:end])
                del self.buf[: end + 4]
                return head
            if len(self.buf) > MAX_HEAD_BYTES:
                raise ValueError("request head too large")
            try:
                async with asyncio.timeout(idle_s if not self.buf else 30.0):
                    data = await self.reader.read(65536)
            except (TimeoutError, ConnectionError):
                return None
            if not data:
                return None
            self.buf.extend(data)

    async def discard_body(self, length: int) -> None:
        while len(self.buf) < length:
            data = await self.reader.read(65536)
            if not data:
                raise _ClientGone
            self.buf.extend(data)
        del self.buf[:length]

    async def send(self, data: bytes) -> None:
        if self.closing():
            raise _ClientGone
        self.writer.write(data)
        try:
            await self.writer.drain()
        except ConnectionError as exc:
            raise _ClientGone from exc


def _status_line(status: int) -> str:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    return f"HTTP/1.1 {status} {reason}\r\n"


def _head(status: int, headers: Sequence[tuple[str, str]], keep_alive: bool) -> bytes:
    lines = [
        _status_line(status),
        f"Date: {email.utils.formatdate(usegmt=True)}\r\n",
        "Server: coffee-scraper-demo\r\n",
    ]
    lines += [f"{k}: {v}\r\n" for k, v in headers]
    lines.append("Connection: keep-alive\r\n" if keep_alive else "Connection: close\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    started: float
    sent_status: int = 0  # status line already sent (0 = none yet)
    recorded: bool = False


class DemoServer:
    """Serves a list of ``DemoShop`` on 127.0.0.1, one port (one origin) per shop, from a background thread.

    Use as a context manager, or ``start()`` / ``stop()``. All public methods are thread-safe. A shop's
    ``latency_s``, ``robots_txt`` and ``etag`` are read on every request, so changing them takes effect at
    once; change the catalog with ``set_products`` and script faults with ``add_fault``.
    """

    def __init__(self, shops: Sequence[DemoShop], host: str = "127.0.0.1") -> None:
        names = [s.name for s in shops]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"shop names must be unique; repeated: {duplicates}")
        self.host = host
        self._shops = {s.name: _ShopRuntime(s, i) for i, s in enumerate(shops)}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._conn_ids = itertools.count(1)
        self._started = False
        self._stopped = False
        self.startup_seconds = 0.0

    # ---- lifecycle -----------------------------------------------------------------------------
    def start(self) -> DemoServer:
        """Bind every shop's port and start serving; returns self. Raises if called twice."""
        if self._started:
            raise RuntimeError("DemoServer.start() was already called; make a new DemoServer to serve again")
        self._started = True
        began = time.perf_counter()
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(ready, failure), name="demo-shops", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join(10)
            raise RuntimeError(f"demo shops could not start: {failure[0]!r}") from failure[0]
        self.startup_seconds = time.perf_counter() - began
        return self

    def stop(self) -> None:
        """Close every port and connection and end the thread (idempotent)."""
        if not self._started or self._stopped:
            return
        self._stopped = True
        assert self._loop is not None and self._thread is not None
        with contextlib.suppress(RuntimeError):  # loop already closed
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        if self._thread.is_alive():  # pragma: no cover - would mean a handler blocks the loop
            log.warning("demo server thread did not stop within 30 s")

    def __enter__(self) -> DemoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._bind_all())
        except BaseException as exc:
            failure.append(exc)
            loop.run_until_complete(self._close_all())
            loop.close()
            ready.set()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._close_all())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _bind_all(self) -> None:
        async def bind(rt: _ShopRuntime) -> None:
            async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                await self._serve_connection(rt, reader, writer)

            server = await asyncio.start_server(handler, self.host, 0, backlog=256, reuse_address=True)
            self._servers.append(server)
            rt.port = server.sockets[0].getsockname()[1]
            host = f"[{self.host}]" if ":" in self.host else self.host
            rt.origin = f"http://{host}:{rt.port}"

        await asyncio.gather(*(bind(rt) for rt in self._shops.values()))

    async def _close_all(self) -> None:
        for server in self._servers:
            server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for _ in range(3):  # let transports finish closing their sockets
            await asyncio.sleep(0)
        self._servers.clear()

    # ---- queries and controls ----------------------------------------------------------------
    @property
    def shop_names(self) -> list[str]:
        return list(self._shops)

    def _rt(self, shop_name: str) -> _ShopRuntime:
        try:
            return self._shops[shop_name]
        except KeyError:
            raise KeyError(f"no demo shop named {shop_name!r}; known: {sorted(self._shops)}") from None

    def url(self, shop_name: str) -> str:
        """The shop's origin, e.g. ``http://127.0.0.1:40123`` (no trailing slash)."""
        rt = self._rt(shop_name)
        if not rt.origin:
            raise RuntimeError("the demo server is not started; call start() or use it as a context manager")
        return rt.origin

    def urls(self) -> dict[str, str]:
        return {name: self.url(name) for name in self._shops}

    def requests(self, shop_name: str) -> list[RequestRecord]:
        """Completed requests to the shop, in the order they finished."""
        rt = self._rt(shop_name)
        with rt.lock:
            return list(rt.records)

    def clear_requests(self, shop_name: str | None = None) -> None:
        for rt in [self._rt(shop_name)] if shop_name is not None else self._shops.values():
            with rt.lock:
                rt.records.clear()

    def in_flight(self, shop_name: str) -> int:
        """Requests the shop has received and not finished yet (e.g. a hang in progress)."""
        rt = self._rt(shop_name)
        with rt.lock:
            return rt.in_flight

    def wait_idle(self, shop_name: str | None = None, timeout: float = 5.0) -> bool:
        """Wait until no request is in flight (a client that timed out on a hang is noticed shortly after)."""
        deadline = time.monotonic() + timeout
        names = [shop_name] if shop_name is not None else list(self._shops)
        while time.monotonic() < deadline:
            if all(self.in_flight(n) == 0 for n in names):
                return True
            time.sleep(0.01)
        return False

    def set_products(self, shop_name: str, products: list[dict[str, Any]]) -> None:
        """Replace the shop's catalog; the next request sees it (new ETag, later Last-Modified)."""
        self._rt(shop_name).set_products(products)

    def products(self, shop_name: str) -> list[dict[str, Any]]:
        rt = self._rt(shop_name)
        with rt.lock:
            return list(rt.products)

    def add_fault(self, shop_name: str, fault: Fault) -> None:
        """Script one more misbehaviour; faults are tried in the order added, the first match applies."""
        rt = self._rt(shop_name)
        with rt.lock:
            rt.shop.faults.append(fault)
            rt.faults.append(_ActiveFault(fault, fault.times))

    def clear_faults(self, shop_name: str) -> None:
        rt = self._rt(shop_name)
        with rt.lock:
            rt.shop.faults.clear()
            rt.faults.clear()

    # ---- serving ----------------------------------------------------------------------------
    async def _serve_connection(
        self, rt: _ShopRuntime, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = _Conn(next(self._conn_ids), reader, writer)
        try:
            while True:
                try:
                    head = await conn.read_head(KEEP_ALIVE_IDLE_S)
                except ValueError:
                    await conn.send(_head(431, [("Content-Length", "0")], False))
                    break
                if head is None:
                    break
                keep_alive = await self._one_request(rt, conn, head)
                if not keep_alive or conn.closing():
                    break
        except (_ClientGone, ConnectionError, asyncio.CancelledError):
            pass
        except Exception:  # pragma: no cover - a bug in the demo server, not in the client
            log.exception("demo shop %s: unexpected error", rt.shop.name)
        finally:
            self._tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _one_request(self, rt: _ShopRuntime, conn: _Conn, head: bytes) -> bool:
        started = time.monotonic()
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        headers: dict[str, str] = {}
        bad = len(parts) != 3 or not parts[2].startswith("HTTP/1.")
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name.strip():
                bad = True
                continue
            headers[name.strip().lower()] = value.strip()
        if bad:
            await conn.send(_head(400, [("Content-Length", "0")], False))
            return False
        method, target, version = parts
        keep_alive = headers.get("connection", "").lower() != "close"
        if version == "HTTP/1.0":
            keep_alive = headers.get("connection", "").lower() == "keep-alive"
        if "chunked" in headers.get("transfer-encoding", "").lower():
            await conn.send(_head(411, [("Content-Length", "0")], False))
            return False
        length = _parse_int(headers.get("content-length", "0")) or 0
        if length > 0:
            await conn.discard_body(length)
        split = urlsplit(target)
        path = unquote(split.path) or "/"
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        request = _Request(method.upper(), path, query, headers, started)
        with rt.lock:
            rt.in_flight += 1
        try:
            return await self._answer(rt, conn, request, keep_alive)
        except _ClientGone:
            return False
        finally:
            self._finish(rt, conn, request)

    def _finish(self, rt: _ShopRuntime, conn: _Conn, request: _Request) -> None:
        """Record the request once, with the status it was sent (0 when no answer went out)."""
        if request.recorded:
            return
        request.recorded = True
        record = RequestRecord(
            request.method,
            request.path,
            request.query,
            request.started,
            time.monotonic(),
            request.sent_status,
            request.headers,
            conn.id,
        )
        with rt.lock:
            rt.records.append(record)
            rt.in_flight -= 1

    async def _answer(self, rt: _ShopRuntime, conn: _Conn, request: _Request, keep_alive: bool) -> bool:
        """Answer one request; returns whether the connection stays open."""
        shop = rt.shop
        if shop.latency_s > 0 and not await conn.pause(shop.latency_s):
            raise _ClientGone
        fault = rt.take_fault(request.path)
        if fault is not None:
            return await self._misbehave(rt, conn, request, fault, keep_alive)
        if request.method not in ("GET", "HEAD"):
            response = _Response(
                405,
                [("Content-Type", _HTML), ("Allow", "GET, HEAD")],
                _html_page("Method Not Allowed", "<h1>405</h1>", shop.platform),
            )
        else:
            response = _route(rt, request.path, request.query)
        if response.cacheable and shop.etag:
            response = self._conditional(rt, request, response)
        await self._send_response(rt, conn, request, response, keep_alive)
        return keep_alive

    def _conditional(self, rt: _ShopRuntime, request: _Request, response: _Response) -> _Response:
        etag = '"' + hashlib.blake2b(response.body, digest_size=16).hexdigest() + '"'
        with rt.lock:
            last_modified = email.utils.formatdate(rt.last_modified, usegmt=True)
            modified_ts = rt.last_modified
        validators = [("ETag", etag), ("Last-Modified", last_modified)]
        inm = request.headers.get("if-none-match")
        not_modified = False
        if inm is not None:  # weak comparison (RFC 9110 §13.1.2)
            tags = [t.strip().removeprefix("W/") for t in inm.split(",")]
            not_modified = "*" in tags or etag in tags
        elif "if-modified-since" in request.headers:
            try:
                since = email.utils.parsedate_to_datetime(request.headers["if-modified-since"]).timestamp()
                not_modified = modified_ts <= since
            except (TypeError, ValueError):
                not_modified = False
        if not_modified:
            keep = [(k, v) for k, v in response.headers if k.lower() != "content-type"]
            return _Response(304, keep + validators, b"")
        response.headers.extend(validators)
        return response

    async def _send_response(
        self, rt: _ShopRuntime, conn: _Conn, request: _Request, response: _Response, keep_alive: bool
    ) -> None:
        headers = list(response.headers)
        if response.status != 304:
            headers.append(("Content-Length", str(len(response.body))))
        data = _head(response.status, headers, keep_alive)
        if request.method != "HEAD" and response.status != 304:
            data += response.body
        request.sent_status = response.status
        # Record before the bytes leave, so a client never sees an answer whose record is missing.
        self._finish(rt, conn, request)
        await conn.send(data)

    async def _send_head(
        self, conn: _Conn, request: _Request, status: int, headers: list[tuple[str, str]], keep_alive: bool
    ) -> None:
        request.sent_status = status
        await conn.send(_head(status, headers, keep_alive))

    async def _misbehave(
        self, rt: _ShopRuntime, conn: _Conn, request: _Request, fault: Fault, keep_alive: bool
    ) -> bool:
        shop = rt.shop
        kind = fault.kind
        status = fault.status if fault.status is not None else _DEFAULT_FAULT_STATUS.get(kind, 200)
        response: _Response
        if kind == "hang":
            await conn.pause(fault.seconds)
            return False  # drop the connection without an answer
        if kind in ("status", "retry_after"):
            headers = [("Content-Type", _HTML)]
            retry_after = fault.retry_after
            if retry_after is None and kind == "retry_after":
                retry_after = "1"
            if retry_after is not None:
                headers.append(("Retry-After", retry_after))
            phrase = _status_line(status)[9:].strip()
            body = _html_page(phrase, f"<h1>{html.escape(phrase)}</h1>", shop.platform)
            response = _Response(status, headers, body)
        elif kind == "password_redirect":
            headers = [("Location", f"{rt.origin}/password"), ("Content-Type", _HTML)]
            body = b'<html><body>You are being <a href="/password">redirected</a>.</body></html>'
            response = _Response(status, headers, body)
        elif kind == "html":
            body = _html_page(shop.name, "<h1>Welcome</h1><p>Shop our coffees.</p>", shop.platform)
            response = _Response(200, [("Content-Type", _HTML)], body)
        elif kind == "empty":
            response = _Response(200, [("Content-Type", _JSON)], b"")
        elif kind == "malformed_json":
            real = _route(rt, request.path, request.query).body
            body = real[: len(real) // 2] if real.startswith((b"{", b"[")) and len(real) > 8 else b'{"products":[{"'
            response = _Response(200, [("Content-Type", _JSON)], body)
        elif kind == "slow":
            real_response = _route(rt, request.path, request.query)
            headers = [*real_response.headers, ("Content-Length", str(len(real_response.body)))]
            await self._send_head(conn, request, real_response.status, headers, keep_alive)
            pieces = _slices(real_response.body, 20) if request.method != "HEAD" else []
            gap = fault.seconds / max(len(pieces), 1)
            for i, piece in enumerate(pieces):
                if gap > 0 and not await conn.pause(gap):
                    raise _ClientGone
                if i == len(pieces) - 1:
                    self._finish(rt, conn, request)
                await conn.send(piece)
            return keep_alive
        elif kind == "huge_body":
            headers = [("Content-Type", _JSON), ("Transfer-Encoding", "chunked")]
            await self._send_head(conn, request, 200, headers, False)
            async for piece in _json_ish(fault.size_bytes):
                await conn.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
            self._finish(rt, conn, request)
            await conn.send(b"0\r\n\r\n")
            return False
        else:  # pragma: no cover - the Literal type guards it
            raise ValueError(f"unknown fault kind {kind!r}")
        await self._send_response(rt, conn, request, response, keep_alive)
        return keep_alive


def _slices(body: bytes, count: int) -> list[bytes]:
    if not body:
        return []
    step = max(1, math.ceil(len(body) / count))
    return [body[i : i + step] for i in range(0, len(body), step)]


_FILLER = (b'{"id":1,"title":"Filler coffee","body_html":"' + b"x" * 400 + b'"},') * 160


async def _json_ish(size: int) -> AsyncIterator[bytes]:
    """``size`` bytes that start like a products.json answer and never end, yielded in 64 KiB pieces."""
    head = b'{"products":['
    yield head[:size]
    left = size - len(head)
    while left > 0:
        piece = _FILLER[: min(_STREAM_CHUNK, left)]
        left -= len(piece)
        yield piece
        await asyncio.sleep(0)


# --------------------------------------------------------------------------------------------------
# A ready-made mix of shops for `coffee-scraper demo`
# --------------------------------------------------------------------------------------------------

_SHOP_NAMES = [
    "Malnad Kaapi Roasters",
    "Ghat Road Coffee Co.",
    "Araku Hills Roastery",
    "Nilgiri Bean House",
    "Coorg Cherry Works",
    "Filter Kaapi Collective",
    "Baba Budan Roasters",
    "Monsoon Coast Coffee",
    "Shevaroy Slow Roast",
    "Wayanad Wild Beans",
    "Chikmagalur Craft Coffee",
    "Kaveri Valley Roasters",
]


def demo_shops(count: int = 3, *, seed: int = 7, products_per_shop: int = 40) -> list[DemoShop]:
    """``count`` shops with generated catalogs, two Shopify for every WooCommerce one, names unique."""
    if count < 0 or products_per_shop < 0:
        raise ValueError("count and products_per_shop must be >= 0")
    shops: list[DemoShop] = []
    for i in range(count):
        base = _SHOP_NAMES[(i + seed) % len(_SHOP_NAMES)]
        name = base if i < len(_SHOP_NAMES) else f"{base} #{i // len(_SHOP_NAMES) + 1}"
        shop_seed = seed * 10_007 + i
        if i % 3 == 2:
            products = make_woocommerce_products(products_per_shop, seed=shop_seed, id_base=1_000 + i * 100_000)
            shops.append(DemoShop(name=name, platform="woocommerce", products=products))
        else:
            products = make_shopify_products(
                products_per_shop, seed=shop_seed, id_base=7_300_000_000_000 + i * 10_000_000, vendor=name
            )
            shops.append(DemoShop(name=name, platform="shopify", products=products))
    return shops
