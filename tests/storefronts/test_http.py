"""Fetcher/Shop behaviour against real HTTP on 127.0.0.1: robots, pacing, retries, caps, 304s, breaker, SSRF.

Platform paging and detection are tested in test_platforms.py.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from coffee_scraper.storefronts import (
    CachedResponse,
    CircuitOpen,
    Fetcher,
    PermanentHTTPError,
    RequestEvent,
    ResponseTooLarge,
    RobotsDisallowed,
    ShopState,
    ShopUnavailable,
    ShopUnreachable,
    TransientExhausted,
    UnsafeAddress,
    parse_retry_after,
)

from ._server import Hit, Reply, Req, Server, html_reply, json_reply
from ._support import DictCache, FakeClock, fast_settings
from .conftest import ServerFactory

ROBOTS = "text/plain"


def fresh_robots_state() -> ShopState:
    """A state whose robots.txt (404: allow all) is already known, so tests see only their own requests."""
    return ShopState(robots_status=404, robots_fetched_at=datetime.now(UTC))


def sequence(*replies: Reply) -> Callable[[Req], Awaitable[Reply]]:
    """A route answering the given replies in order, then repeating the last."""
    queue = list(replies)

    async def handler(req: Req) -> Reply:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return handler


def non_robots(server: Server) -> list[Hit]:
    return [h for h in server.hits if h.target != "/robots.txt"]


# --- robots.txt -----------------------------------------------------------------------------------------


async def test_robots_disallow_raises_and_only_robots_is_requested(server: Server) -> None:
    server.route(
        "/robots.txt",
        Reply(
            200,
            {"Content-Type": ROBOTS},
            b"User-agent: coffee-scraper\nDisallow: /products.json\n\nUser-agent: *\nDisallow: /\n",
        ),
    )
    server.route("/products.json", json_reply({"products": []}))
    async with Fetcher(fast_settings()) as fetcher:
        shop = fetcher.shop(server.url)
        with pytest.raises(RobotsDisallowed) as err:
            await shop.get("/products.json?limit=1")
        assert "robots.txt" in str(err.value)
        assert await shop.allowed("/meta.json")  # our group allows it, even though * is disallowed
        assert not await shop.allowed("/products.json")
    assert server.targets() == ["/robots.txt"]
    assert shop.state.robots_status == 200 and shop.state.robots_txt is not None


async def test_robots_fetched_once_and_cached_in_state(server: Server) -> None:
    server.route("/robots.txt", Reply(200, {"Content-Type": ROBOTS}, b"User-agent: *\nAllow: /\n"))
    server.route("/a", html_reply("a"))
    async with Fetcher(fast_settings()) as fetcher:
        shop = fetcher.shop(server.url)
        await shop.get("/a")
        await shop.get("/a")
    assert server.targets() == ["/robots.txt", "/a", "/a"]
    # a second run that loads the persisted state does not fetch robots.txt again
    async with Fetcher(fast_settings()) as fetcher:
        again = fetcher.shop(server.url, state=shop.state)
        await again.get("/a")
    assert server.targets().count("/robots.txt") == 1


async def test_robots_404_allows_everything(server: Server) -> None:
    server.route("/a", html_reply("ok"))
    async with Fetcher(fast_settings()) as fetcher:
        shop = fetcher.shop(server.url)
        page = await shop.get("/a")
    assert page.status == 200 and page.body == b"ok"
    assert shop.state.robots_status == 404


@pytest.mark.parametrize("status", [500, 429])
async def test_robots_500_disallows_everything(server: Server, status: int) -> None:
    server.route("/robots.txt", Reply(status, body=b"boom"))
    server.route("/a", html_reply("ok"))
    async with Fetcher(fast_settings(max_attempts=2)) as fetcher:
        shop = fetcher.shop(server.url)
        with pytest.raises(RobotsDisallowed) as err:
            await shop.get("/a")
        assert "could not be read" in str(err.value)
        assert not await shop.allowed("/a")  # remembered; robots.txt is not hammered
    assert server.targets() == ["/robots.txt", "/robots.txt"]  # retried like any 5xx, then given up
    assert shop.state.robots_status == status


async def test_robots_500_uses_cached_copy_younger_than_30_days(server: Server) -> None:
    server.route("/robots.txt", Reply(503, body=b"down"))
    server.route("/a", html_reply("ok"))
    state = ShopState(
        robots_txt="User-agent: *\nDisallow: /private\n",
        robots_status=200,
        robots_fetched_at=datetime.now(UTC) - timedelta(days=3),  # stale (> 24 h) but < 30 days
    )
    async with Fetcher(fast_settings(max_attempts=1)) as fetcher:
        shop = fetcher.shop(server.url, state=state)
        assert (await shop.get("/a")).status == 200
        with pytest.raises(RobotsDisallowed):
            await shop.get("/private/x")
    assert server.targets() == ["/robots.txt", "/a"]
    assert state.robots_status == 200 and "robots_error_at" in state.extra


async def test_crawl_delay_is_a_minimum_delay(server: Server) -> None:
    server.route("/robots.txt", Reply(200, {"Content-Type": ROBOTS}, b"User-agent: *\nCrawl-delay: 0.3\n"))
    server.route("/a", html_reply("ok"))
    async with Fetcher(fast_settings()) as fetcher:
        shop = fetcher.shop(server.url)
        await shop.get("/a")
        await shop.get("/a")
        assert shop.delay_s == pytest.approx(0.3)
    a1, a2 = non_robots(server)
    assert a1.end is not None and a2.start - a1.end >= 0.29


# --- politeness -----------------------------------------------------------------------------------------


async def test_one_request_at_a_time_per_shop_with_delay(server: Server) -> None:
    server.route("/p", Reply(200, {"Content-Type": "text/html"}, b"ok", delay_s=0.08))  # slower than the delay
    delay = 0.05
    async with Fetcher(fast_settings(request_delay_s=delay)) as fetcher:
        shop = fetcher.shop(server.url)
        await asyncio.gather(*(shop.get(f"/p?i={i}") for i in range(4)))
    assert server.max_in_flight == 1
    hits = sorted(server.hits, key=lambda h: h.start)
    assert hits[0].target == "/robots.txt"  # robots.txt is paced like any request
    for prev, nxt in itertools.pairwise(hits):
        assert prev.end is not None
        assert nxt.start - prev.end >= delay - 0.005, (prev.target, nxt.target)


async def test_two_shops_run_concurrently(make_server: ServerFactory) -> None:
    a, b = await make_server(), await make_server()
    for srv in (a, b):
        srv.route("/slow", Reply(200, {"Content-Type": "text/html"}, b"ok", delay_s=0.3))
    async with Fetcher(fast_settings()) as fetcher:
        shop_a = fetcher.shop(a.url, state=fresh_robots_state())
        shop_b = fetcher.shop(b.url, state=fresh_robots_state())
        started = time.monotonic()
        await asyncio.gather(shop_a.get("/slow"), shop_b.get("/slow"))
        took = time.monotonic() - started
    (ha,), (hb,) = a.hits, b.hits
    assert ha.end is not None and hb.end is not None
    assert ha.start < hb.end and hb.start < ha.end  # overlapped in time
    assert took < 0.55


async def test_per_shop_concurrency_override(server: Server) -> None:
    server.route("/p", Reply(200, {"Content-Type": "text/html"}, b"ok", delay_s=0.2))
    async with Fetcher(fast_settings(request_delay_s=0.01)) as fetcher:
        shop = fetcher.shop(server.url, state=fresh_robots_state(), concurrency=2)
        await asyncio.gather(*(shop.get(f"/p?i={i}") for i in range(4)))
    assert server.max_in_flight == 2


async def test_global_concurrency_caps_across_shops(make_server: ServerFactory) -> None:
    a, b = await make_server(), await make_server()
    for srv in (a, b):
        srv.route("/slow", Reply(200, {"Content-Type": "text/html"}, b"ok", delay_s=0.1))
    async with Fetcher(fast_settings(global_concurrency=1)) as fetcher:
        shop_a = fetcher.shop(a.url, state=fresh_robots_state())
        shop_b = fetcher.shop(b.url, state=fresh_robots_state())
        await asyncio.gather(shop_a.get("/slow"), shop_b.get("/slow"))
    (ha,), (hb,) = a.hits, b.hits
    first, second = sorted((ha, hb), key=lambda h: h.start)
    assert first.end is not None and second.start >= first.end


async def test_same_origin_gives_same_shop(server: Server) -> None:
    async with Fetcher(fast_settings()) as fetcher:
        s1 = fetcher.shop(server.url)
        s2 = fetcher.shop(server.url + "/collections/coffee")
        assert s1 is s2
        other = ShopState()
        assert fetcher.shop(server.url, state=other).state is s1.state  # first state wins; persist shop.state
        assert fetcher.shop(server.url.replace("127.0.0.1", "localhost")) is not s1
        with pytest.raises(ValueError):
            s1.url_for("http://example.com/x")


# --- retries --------------------------------------------------------------------------------------------


async def test_retry_after_is_obeyed(server: Server) -> None:
    server.route(
        "/p",
        sequence(Reply(429, {"Retry-After": "0.3"}, b"slow down"), json_reply({"ok": True})),
    )
    events: list[RequestEvent] = []
    async with Fetcher(fast_settings(), on_event=events.append) as fetcher:
        page = await fetcher.shop(server.url, state=fresh_robots_state()).get("/p")
    assert page.status == 200 and page.attempts == 2
    first, second = server.hits
    assert first.end is not None and second.start - first.end >= 0.3
    assert [e.result for e in events] == ["rate_limited", "ok"]
    assert events[0].retry_after_s == pytest.approx(0.3) and events[0].status == 429


async def test_retry_after_longer_than_cap_gives_up(server: Server) -> None:
    server.route("/p", Reply(503, {"Retry-After": "3600"}, b"later"))
    async with Fetcher(fast_settings(retry_after_cap_s=10)) as fetcher:
        shop = fetcher.shop(server.url, state=fresh_robots_state())
        with pytest.raises(TransientExhausted) as err:
            await shop.get("/p")
    assert "Retry-After" in str(err.value) and "3600" in str(err.value)
    assert len(server.hits) == 1
    assert "retry_not_before" in shop.state.extra


def test_parse_retry_after_forms() -> None:
    now = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("2.0", now) == 2.0
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after("Mon, 01 Jun 2026 12:00:30 GMT", now) == pytest.approx(30.0)
    assert parse_retry_after("Mon, 01 Jun 2026 11:00:00 GMT", now) == 0.0  # in the past
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


async def test_backoff_on_500s_then_success(server: Server) -> None:
    server.route("/p", sequence(Reply(500), Reply(502), json_reply({"ok": 1})))
    events: list[RequestEvent] = []
    settings = fast_settings(max_attempts=3, backoff_base_s=0.05, backoff_cap_s=1.0)
    async with Fetcher(settings, on_event=events.append, rng=random.Random(7)) as fetcher:
        page = await fetcher.shop(server.url, state=fresh_robots_state()).get("/p")
    assert page.attempts == 3 and page.body == b'{"ok": 1}'
    assert [e.result for e in events] == ["retry", "retry", "ok"]
    assert [e.status for e in events] == [500, 502, 200]
    # full jitter: waits are within [0, base * 2**(n-1)]
    assert events[0].retry_after_s is not None and 0 <= events[0].retry_after_s <= 0.05
    assert events[1].retry_after_s is not None and 0 <= events[1].retry_after_s <= 0.10


async def test_404_is_permanent_and_not_retried(server: Server) -> None:
    async with Fetcher(fast_settings()) as fetcher:
        shop = fetcher.shop(server.url, state=fresh_robots_state())
        with pytest.raises(PermanentHTTPError) as err:
            await shop.get("/missing.json")
    assert err.value.status == 404 and len(server.hits) == 1
    assert shop.state.consecutive_failures == 0  # the shop answered: not a breaker failure


async def test_403_password_and_challenge_are_unavailable(server: Server) -> None:
    server.route("/forbidden", html_reply("no", status=403))
    server.route("/products.json", Reply(302, {"Location": "/password"}))
    server.route(
        "/challenged.json",
        html_reply("<html><title>Just a moment...</title><script src='/cdn-cgi/challenge-platform/x'>", 200),
    )
    server.route("/cf", Reply(503, {"cf-mitigated": "challenge", "Content-Type": "text/html"}, b"<html>"))
    async with Fetcher(fast_settings()) as fetcher:
        shop = fetcher.shop(server.url, state=fresh_robots_state())
        for path in ("/forbidden", "/products.json", "/challenged.json", "/cf"):
            with pytest.raises(ShopUnavailable):
                await shop.get(path)
    assert "/password" not in server.targets()  # the password redirect is not followed
    assert server.targets().count("/cf") == 1  # a challenge is not retried


async def test_redirects_are_followed_and_capped(server: Server) -> None:
    server.route("/old", Reply(301, {"Location": "/new"}))
    server.route("/new", html_reply("moved"))
    for i in range(7):
        server.route(f"/loop{i}", Reply(302, {"Location": f"/loop{i + 1}"}))
    server.route("/ftp", Reply(302, {"Location": "ftp://127.0.0.1/x"}))
    async with Fetcher(fast_settings()) as fetcher:
        shop = fetcher.shop(server.url, state=fresh_robots_state())
        page = await shop.get("/old")
        assert page.body == b"moved" and page.final_url == server.url + "/new"
        with pytest.raises(PermanentHTTPError, match="redirects"):
            await shop.get("/loop0")
        with pytest.raises(UnsafeAddress):
            await shop.get("/ftp")
    assert server.targets().count("/loop5") == 1 and "/loop6" not in server.targets()


# --- size, time --------------------------------------------------------------------------------------------


async def test_size_cap_streams_and_aborts_50mb_body(server: Server) -> None:
    async def fifty_mb() -> AsyncIterator[bytes]:
        chunk = b"x" * 65536
        for _ in range(50 * 1024 * 1024 // len(chunk)):
            yield chunk

    server.route("/huge.json", Reply(200, {"Content-Type": "application/json"}, fifty_mb))
    server.route("/declared.json", Reply(200, {"Content-Length": str(50 * 1024 * 1024)}, fifty_mb))
    async with Fetcher(fast_settings(max_response_bytes=1_000_000)) as fetcher:
        shop = fetcher.shop(server.url, state=fresh_robots_state())
        with pytest.raises(ResponseTooLarge):
            await shop.get("/huge.json")
        with pytest.raises(ResponseTooLarge, match="declared"):
            await shop.get("/declared.json")
    huge = next(h for h in server.hits if h.target == "/huge.json")
    assert huge.sent < 20 * 1024 * 1024  # the client hung up long before 50 MB went out


async def test_hanging_shop_exhausts_retries_in_bounded_time(server: Server) -> None:
    server.route("/p", Reply(200, {"Content-Type": "text/html"}, b"late", delay_s=5))
    settings = fast_settings(read_timeout_s=0.2, max_attempts=2)
    started = time.monotonic()
    async with Fetcher(settings) as fetcher:
        with pytest.raises(TransientExhausted, match="timed out"):
            await fetcher.shop(server.url, state=fresh_robots_state()).get("/p")
    assert time.monotonic() - started < 2.0
    assert len(server.hits) == 2


async def test_trickling_shop_is_cut_by_the_deadline(server: Server) -> None:
    async def trickle() -> AsyncIterator[bytes]:
        for _ in range(200):
            yield b"x"
            await asyncio.sleep(0.05)

    server.route("/p", Reply(200, {"Content-Type": "text/html"}, trickle))
    settings = fast_settings(read_timeout_s=1.0, request_deadline_s=0.3, max_attempts=1)
    started = time.monotonic()
    async with Fetcher(settings) as fetcher:
        with pytest.raises(TransientExhausted, match="timed out"):
            await fetcher.shop(server.url, state=fresh_robots_state()).get("/p")
    assert time.monotonic() - started < 1.5


async def test_connection_refused_is_transient(make_server: ServerFactory) -> None:
    gone = await make_server()
    url = gone.url
    await gone.close()
    async with Fetcher(fast_settings(max_attempts=2)) as fetcher:
        with pytest.raises(TransientExhausted, match="connection failed"):
            await fetcher.shop(url, state=fresh_robots_state()).get("/p")


async def test_unreachable_shop_is_reported_as_unreachable_not_disallowed(make_server: ServerFactory) -> None:
    """No answer to robots.txt at all: the error names the network failure, not robots rules."""
    gone = await make_server()
    url = gone.url
    await gone.close()
    async with Fetcher(fast_settings(max_attempts=2)) as fetcher:
        with pytest.raises(ShopUnreachable, match="could not be reached") as info:
            await fetcher.shop(url).get("/products.json")
    assert info.value.kind == "unreachable" and "network" in info.value.hint


# --- conditional requests -------------------------------------------------------------------------------


async def test_etag_304_returns_cached_body(server: Server) -> None:
    async def validated(req: Req) -> Reply:
        if req.headers.get("if-none-match") == '"v1"':
            return Reply(304, {"ETag": '"v1"'})
        return json_reply({"products": [1]}, headers={"ETag": '"v1"'})

    server.route("/products.json", validated)
    server.route("/meta.json", Reply(304))  # a broken server: 304 to an unconditional GET
    cache = DictCache()
    async with Fetcher(fast_settings(), cache=cache) as fetcher:
        shop = fetcher.shop(server.url, state=fresh_robots_state())
        first = await shop.get("/products.json")
        assert first.status == 200 and not first.from_cache
        cache.entries[first.url] = CachedResponse(etag=first.headers["etag"], last_modified=None, body=first.body)
        second = await shop.get("/products.json")
        assert second.status == 304 and second.from_cache and second.body == first.body
        third = await shop.get("/products.json", conditional=False)
        assert third.status == 200
        with pytest.raises(PermanentHTTPError):
            await shop.get("/meta.json")
    sent = [h.headers.get("if-none-match") for h in server.hits if h.target == "/products.json"]
    assert sent == [None, '"v1"', None]


async def test_last_modified_sends_if_modified_since(server: Server) -> None:
    stamp = "Wed, 21 Oct 2025 07:28:00 GMT"

    async def validated(req: Req) -> Reply:
        if req.headers.get("if-modified-since") == stamp:
            return Reply(304)
        return json_reply([])

    server.route("/x.json", validated)
    cache = DictCache()
    cache.entries[server.url + "/x.json"] = CachedResponse(etag=None, last_modified=stamp, body=b"[1]")
    async with Fetcher(fast_settings(), cache=cache) as fetcher:
        page = await fetcher.shop(server.url, state=fresh_robots_state()).get("/x.json")
    assert page.from_cache and page.body == b"[1]"


# --- circuit breaker ------------------------------------------------------------------------------------


async def test_breaker_opens_after_threshold_and_half_opens_after_reset(server: Server) -> None:
    healthy = False

    async def flaky(req: Req) -> Reply:
        return html_reply("ok") if healthy else Reply(500, body=b"down")

    server.route("/p", flaky)
    clock = FakeClock()
    settings = fast_settings(max_attempts=1, breaker_failure_threshold=2, breaker_reset_s=60)
    async with Fetcher(settings, clock=clock.monotonic, sleep=clock.sleep, now=clock.now) as fetcher:
        shop = fetcher.shop(server.url)
        for _ in range(2):
            with pytest.raises(TransientExhausted):
                await shop.get("/p")
        assert shop.state.circuit_state == "open" and shop.state.consecutive_failures == 2
        asked = len(server.hits)
        with pytest.raises(CircuitOpen):
            await shop.get("/p")
        assert len(server.hits) == asked  # refused without a request

        clock.advance(61)  # half-open: one probe; it fails → open again
        with pytest.raises(TransientExhausted):
            await shop.get("/p")
        assert shop.state.circuit_state == "open"
        with pytest.raises(CircuitOpen):
            await shop.get("/p")

        clock.advance(61)
        healthy = True
        page = await shop.get("/p")
        assert page.status == 200
        assert shop.state.circuit_state == "closed" and shop.state.consecutive_failures == 0
        assert shop.state.circuit_opened_at is None


async def test_breaker_stops_queued_requests_once_open(server: Server) -> None:
    server.route("/p", Reply(500, body=b"down"))
    settings = fast_settings(max_attempts=1, breaker_failure_threshold=2, request_delay_s=0.01)
    async with Fetcher(settings) as fetcher:
        shop = fetcher.shop(server.url, state=fresh_robots_state())
        results = await asyncio.gather(*(shop.get(f"/p?i={i}") for i in range(6)), return_exceptions=True)
    kinds = [type(r).__name__ for r in results]
    assert kinds.count("TransientExhausted") == 2 and kinds.count("CircuitOpen") == 4
    assert len(server.hits) == 2


async def test_breaker_state_loaded_open_refuses(server: Server) -> None:
    clock = FakeClock()
    state = ShopState(circuit_state="open", circuit_opened_at=clock.now(), consecutive_failures=5)
    async with Fetcher(fast_settings(), clock=clock.monotonic, sleep=clock.sleep, now=clock.now) as fetcher:
        with pytest.raises(CircuitOpen) as err:
            await fetcher.shop(server.url, state=state).get("/p")
    assert "next trial request" in str(err.value)
    assert server.hits == []


# --- SSRF guard -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_private_addresses_refused_unless_allowed(server: Server, host: str) -> None:
    url = server.url.replace("127.0.0.1", host)
    async with Fetcher(fast_settings(allow_private_addresses=False)) as fetcher:
        shop = fetcher.shop(url)
        with pytest.raises(UnsafeAddress, match="SSRF"):
            await shop.get("/products.json")
    assert server.hits == []


def test_only_http_schemes() -> None:
    fetcher = Fetcher(fast_settings())
    with pytest.raises(UnsafeAddress):
        fetcher.shop("file:///etc/passwd")
    with pytest.raises(UnsafeAddress):
        fetcher.shop("ftp://example.com")


# --- events and headers -----------------------------------------------------------------------------------


async def test_user_agent_accept_and_events(server: Server) -> None:
    server.route("/products.json", json_reply({"products": []}))
    server.route("/", html_reply("home"))
    events: list[RequestEvent] = []
    settings = fast_settings(user_agent="coffee-scraper-test/1 (+https://example.org)")
    async with Fetcher(settings, on_event=events.append) as fetcher:
        shop = fetcher.shop(server.url)
        await shop.get("/products.json")
        await shop.get("/")
    _robots, products, home = server.hits
    assert all(h.headers["user-agent"] == settings.user_agent for h in server.hits)
    assert products.headers["accept"] == "application/json"
    assert "text/html" in home.headers["accept"]
    assert [(e.url.rsplit("/", 1)[-1], e.status, e.result) for e in events] == [
        ("robots.txt", 404, "error"),
        ("products.json", 200, "ok"),
        ("", 200, "ok"),
    ]
    assert events[1].origin == server.url and events[1].bytes == len(b'{"products": []}')


async def test_a_failing_event_callback_does_not_break_fetching(server: Server) -> None:
    def boom(event: RequestEvent) -> None:
        raise RuntimeError("metrics down")

    server.route("/a", html_reply("ok"))
    async with Fetcher(fast_settings(), on_event=boom) as fetcher:
        assert (await fetcher.shop(server.url).get("/a")).status == 200
