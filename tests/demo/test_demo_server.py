"""Tests of the loopback demo shops over real HTTP: platform protocols, validators, faults, request records,
catalog swaps, concurrency and clean start/stop of many shops.

Catalog generation itself is tested in test_demo_catalog.py.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from coffee_scraper.demo.catalog import make_shopify_products, make_woocommerce_products, mutate_prices
from coffee_scraper.demo.server import DemoServer, DemoShop, Fault, demo_shops, max_concurrency

WOO = "/wp-json/wc/store/v1/products"


@pytest.fixture
def shops() -> list[DemoShop]:
    return [
        DemoShop("big", "shopify", make_shopify_products(600, seed=1)),
        DemoShop("woo", "woocommerce", make_woocommerce_products(25, seed=2)),
        DemoShop("small", "shopify", make_shopify_products(5, seed=3), robots_txt=None),
    ]


@pytest.fixture
def server(shops: list[DemoShop]) -> Iterator[DemoServer]:
    with DemoServer(shops) as srv:
        yield srv


def client(server: DemoServer, shop: str, **kwargs: object) -> httpx.Client:
    return httpx.Client(base_url=server.url(shop), timeout=5.0, **kwargs)  # type: ignore[arg-type]


# ---- Shopify -------------------------------------------------------------------------------------


def test_shopify_paging_limit_clamp_and_end(server: DemoServer) -> None:
    with client(server, "big") as c:
        sizes = [len(c.get("/products.json", params={"limit": 250, "page": n}).json()["products"]) for n in (1, 2, 3)]
        assert sizes == [250, 250, 100]
        assert c.get("/products.json", params={"limit": 250, "page": 4}).json() == {"products": []}
        assert len(c.get("/products.json").json()["products"]) == 30  # default limit
        assert len(c.get("/products.json", params={"limit": 1000}).json()["products"]) == 250  # clamped
        ids = [p["id"] for n in (1, 2, 3) for p in c.get(f"/products.json?limit=250&page={n}").json()["products"]]
        assert ids == [p["id"] for p in server.products("big")]


def test_shopify_page_times_limit_cap(server: DemoServer) -> None:
    with client(server, "big") as c:
        ok = c.get("/products.json", params={"limit": 250, "page": 100})
        assert ok.status_code == 200 and ok.json() == {"products": []}
        over = c.get("/products.json", params={"limit": 250, "page": 101})
        assert over.status_code == 400
        assert over.json() == {"errors": "Page * Limit exceeds the 25000 limit."}
        clamped = c.get("/products.json", params={"limit": 5000, "page": 101})  # limit clamps to 250
        assert clamped.status_code == 400
        assert c.get("/products.json", params={"limit": 10, "page": 2500}).status_code == 200


def test_shopify_meta_single_product_and_content_type(server: DemoServer) -> None:
    with client(server, "big") as c:
        meta = c.get("/meta.json")
        assert meta.headers["content-type"] == "application/json; charset=utf-8"
        body = meta.json()
        assert body["published_products_count"] == 600 and body["currency"] == "INR"
        assert {"id", "name", "domain", "myshopify_domain", "money_format", "country"} <= set(body)
        first = server.products("big")[0]
        one = c.get(f"/products/{first['handle']}.json")
        assert one.json() == {"product": first}
        assert "\\u003c" in one.text  # Shopify escapes < in JSON strings
        missing = c.get("/products/no-such-coffee.json")
        assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")


def test_other_platform_endpoints_are_404_html(server: DemoServer) -> None:
    with client(server, "big") as c:
        r = c.get(WOO)
        assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    with client(server, "woo") as c:
        for path in ("/products.json", "/meta.json"):
            r = c.get(path)
            assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
        r = c.get("/wp-json/wc/store/v1/nothing-here")
        assert r.status_code == 404 and r.json()["code"] == "rest_no_route"


def test_robots_txt(server: DemoServer) -> None:
    with client(server, "big") as c:
        r = c.get("/robots.txt")
        assert r.status_code == 200 and r.text == "User-agent: *\nAllow: /\n"
        assert r.headers["content-type"].startswith("text/plain")
    with client(server, "small") as c:
        assert c.get("/robots.txt").status_code == 404


# ---- WooCommerce ---------------------------------------------------------------------------------


def test_woo_paging_headers_and_default_per_page(server: DemoServer) -> None:
    with client(server, "woo") as c:
        first = c.get(WOO)
        assert first.status_code == 200 and len(first.json()) == 10
        assert first.headers["X-WP-Total"] == "25" and first.headers["X-WP-TotalPages"] == "3"
        assert first.headers["content-type"] == "application/json; charset=utf-8"
        pages = [c.get(WOO, params={"per_page": 10, "page": n}).json() for n in (1, 2, 3)]
        assert [len(p) for p in pages] == [10, 10, 5]
        assert [p["id"] for page in pages for p in page] == [p["id"] for p in server.products("woo")]
        links = c.get(WOO, params={"per_page": 10, "page": 2}).headers.get_list("link")
        assert any('rel="next"' in link and "page=3" in link for link in links)
        assert any('rel="prev"' in link and "page=1" in link for link in links)
        past = c.get(WOO, params={"per_page": 10, "page": 9})
        assert past.status_code == 200 and past.json() == []  # Store API: no invalid-page error
        assert past.headers["X-WP-TotalPages"] == "3"
        alias = c.get("/wp-json/wc/store/products", params={"per_page": 100})
        assert alias.status_code == 200 and len(alias.json()) == 25
        assert "\\/" in alias.text  # wp_json_encode escapes slashes


@pytest.mark.parametrize(
    ("params", "bad", "code"),
    [
        ({"per_page": 0}, "per_page", "rest_out_of_bounds"),
        ({"per_page": 101}, "per_page", "rest_out_of_bounds"),
        ({"per_page": "lots"}, "per_page", "rest_invalid_type"),
        ({"page": 0}, "page", "rest_out_of_bounds"),
    ],
)
def test_woo_invalid_params_get_wp_errors(server: DemoServer, params: dict[str, object], bad: str, code: str) -> None:
    with client(server, "woo") as c:
        r = c.get(WOO, params=params)  # type: ignore[arg-type]
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == "rest_invalid_param"
    assert body["message"] == f"Invalid parameter(s): {bad}"
    assert body["data"]["status"] == 400 and bad in body["data"]["params"]
    assert body["data"]["details"][bad]["code"] == code


def test_woo_single_product_and_variation(server: DemoServer) -> None:
    products = server.products("woo")
    variable = next(p for p in products if p["variations"])
    with client(server, "woo") as c:
        one = c.get(f"{WOO}/{variable['id']}").json()
        assert one["id"] == variable["id"] and one["type"] == "variable"
        assert one["permalink"].startswith(server.url("woo"))  # placeholder origin rewritten
        vid = variable["variations"][0]["id"]
        var = c.get(f"{WOO}/{vid}").json()
        assert var["type"] == "variation" and var["parent"] == variable["id"]
        missing = c.get(f"{WOO}/999999")
        assert missing.status_code == 404 and missing.json()["code"] == "woocommerce_rest_product_invalid_id"


# ---- validators ----------------------------------------------------------------------------------


def test_etag_304_and_change_after_set_products(server: DemoServer) -> None:
    with client(server, "small") as c:
        first = c.get("/products.json", params={"limit": 250})
        etag = first.headers["etag"]
        assert etag.startswith('"') and first.headers["last-modified"]
        again = c.get("/products.json", params={"limit": 250}, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
        since = c.get(
            "/products.json",
            params={"limit": 250},
            headers={"If-Modified-Since": first.headers["last-modified"]},
        )
        assert since.status_code == 304
        server.set_products("small", mutate_prices(server.products("small"), fraction=0.5, seed=1))
        changed = c.get("/products.json", params={"limit": 250}, headers={"If-None-Match": etag})
        assert changed.status_code == 200 and changed.headers["etag"] != etag
        assert changed.json()["products"] != first.json()["products"]
        since = c.get(
            "/products.json",
            params={"limit": 250},
            headers={"If-Modified-Since": first.headers["last-modified"]},
        )
        assert since.status_code == 200  # Last-Modified moved on
    records = server.requests("small")
    assert [r.status for r in records] == [200, 304, 304, 200, 200]


def test_shop_without_validators() -> None:
    shop = DemoShop("plain", "woocommerce", make_woocommerce_products(3, seed=1), etag=False)
    with DemoServer([shop]) as srv, client(srv, "plain") as c:
        r = c.get(WOO, headers={"If-None-Match": "*"})
        assert r.status_code == 200 and "etag" not in r.headers and "last-modified" not in r.headers


def test_set_products_removal_visible_on_next_request(server: DemoServer) -> None:
    with client(server, "woo") as c:
        assert c.get(WOO, params={"per_page": 100}).headers["X-WP-Total"] == "25"
        server.set_products("woo", server.products("woo")[:20])
        r = c.get(WOO, params={"per_page": 100})
        assert r.headers["X-WP-Total"] == "20" and len(r.json()) == 20


# ---- faults --------------------------------------------------------------------------------------


def test_status_fault_applies_times_then_recovers(server: DemoServer) -> None:
    server.add_fault("small", Fault("status", path_prefix="/products.json", times=2, status=503))
    with client(server, "small") as c:
        assert c.get("/meta.json").status_code == 200  # other path unaffected
        codes = [c.get("/products.json").status_code for _ in range(3)]
    assert codes == [503, 503, 200]


def test_default_status_fault_is_500_and_forever(server: DemoServer) -> None:
    server.add_fault("small", Fault("status", times=-1))
    with client(server, "small") as c:
        assert [c.get("/meta.json").status_code for _ in range(4)] == [500] * 4
    server.clear_faults("small")
    with client(server, "small") as c:
        assert c.get("/meta.json").status_code == 200


def test_retry_after_fault(server: DemoServer) -> None:
    server.add_fault("small", Fault("retry_after", retry_after="2.5"))
    server.add_fault("small", Fault("retry_after", status=503))
    with client(server, "small") as c:
        first, second, third = (c.get("/products.json") for _ in range(3))
    assert first.status_code == 429 and first.headers["retry-after"] == "2.5"
    assert second.status_code == 503 and second.headers["retry-after"] == "1"
    assert third.status_code == 200


def test_malformed_json_html_and_empty_faults(server: DemoServer) -> None:
    server.add_fault("woo", Fault("malformed_json"))
    server.add_fault("woo", Fault("html"))
    server.add_fault("woo", Fault("empty"))
    with client(server, "woo") as c:
        broken = c.get(WOO)
        assert broken.status_code == 200 and broken.headers["content-type"].startswith("application/json")
        with pytest.raises(json.JSONDecodeError):
            json.loads(broken.content)
        page = c.get(WOO)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert page.text.lstrip().lower().startswith("<!doctype html")
        empty = c.get(WOO)
        assert empty.status_code == 200 and empty.content == b""
        assert c.get(WOO).json()


def test_password_redirect_fault(server: DemoServer) -> None:
    server.add_fault("small", Fault("password_redirect", path_prefix="/products", times=-1))
    with client(server, "small") as c:
        r = c.get("/products.json")
        assert r.status_code == 302 and r.headers["location"] == server.url("small") + "/password"
        followed = c.get("/products.json", follow_redirects=True)
        assert followed.status_code == 200 and followed.headers["content-type"].startswith("text/html")
        assert "password" in followed.text


def test_huge_body_is_streamed(server: DemoServer) -> None:
    server.add_fault("big", Fault("huge_body", size_bytes=300_000))
    server.add_fault("big", Fault("huge_body"))  # 50 MiB: the client gives up after 1 MiB
    with client(server, "big") as c:
        small = c.get("/products.json")
        assert small.status_code == 200 and len(small.content) == 300_000
        assert small.content.startswith(b'{"products":[') and "content-length" not in small.headers
        received = 0
        with c.stream("GET", "/products.json") as r:
            for chunk in r.iter_bytes():
                received += len(chunk)
                if received > 1_000_000:
                    break
        assert received > 1_000_000
        assert c.get("/meta.json").status_code == 200
    assert server.wait_idle("big")
    assert [r.status for r in server.requests("big")] == [200, 200, 200]


def test_hang_fault_client_timeout_is_recorded(server: DemoServer) -> None:
    server.add_fault("small", Fault("hang", seconds=30))
    with client(server, "small") as c:
        began = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            c.get("/products.json", timeout=0.3)
        assert time.monotonic() - began < 2
    assert server.wait_idle("small", timeout=2)
    (record,) = server.requests("small")
    assert record.status == 0 and 0.25 < record.finished - record.started < 2


def test_hang_with_seconds_drops_the_connection(server: DemoServer) -> None:
    server.add_fault("small", Fault("hang", seconds=0.2))
    with client(server, "small") as c:
        with pytest.raises(httpx.RemoteProtocolError):
            c.get("/products.json")
        assert c.get("/products.json").status_code == 200


def test_slow_fault_trickles_the_real_answer(server: DemoServer) -> None:
    server.add_fault("small", Fault("slow", seconds=0.4))
    with client(server, "small") as c:
        began = time.monotonic()
        r = c.get("/products.json")
        took = time.monotonic() - began
    assert r.status_code == 200 and len(r.json()["products"]) == 5
    assert took >= 0.35


def test_latency(shops: list[DemoShop]) -> None:
    shops[2].latency_s = 0.15
    with DemoServer(shops) as srv, client(srv, "small") as c:
        began = time.monotonic()
        c.get("/meta.json")
        assert time.monotonic() - began >= 0.15
        (record,) = srv.requests("small")
        assert record.finished - record.started >= 0.15


# ---- records, concurrency, keep-alive ------------------------------------------------------------


def test_request_records(server: DemoServer) -> None:
    before = time.monotonic()
    with client(server, "woo", headers={"User-Agent": "coffee-scraper-test/1"}) as c:
        c.get(WOO, params={"per_page": 5, "page": 2})
        c.head("/robots.txt")
    after = time.monotonic()
    first, second = server.requests("woo")
    assert (first.method, first.path, first.query, first.status) == (
        "GET",
        WOO,
        {"per_page": "5", "page": "2"},
        200,
    )
    assert first.headers["user-agent"] == "coffee-scraper-test/1"
    assert (second.method, second.path, second.status) == ("HEAD", "/robots.txt", 200)
    assert before <= first.started <= first.finished <= second.started <= second.finished <= after
    assert first.connection == second.connection  # keep-alive reuse
    server.clear_requests("woo")
    assert server.requests("woo") == []


def test_overlapping_requests_are_visible(shops: list[DemoShop]) -> None:
    shops[2].latency_s = 0.2
    with DemoServer(shops) as srv:
        url = srv.url("small") + "/meta.json"
        threads = [threading.Thread(target=httpx.get, args=(url,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert max_concurrency(srv.requests("small")) == 4
        srv.clear_requests()
        with client(srv, "small") as c:
            for _ in range(3):
                c.get("/meta.json")
        records = srv.requests("small")
        assert max_concurrency(records) == 1
        assert all(b.started >= a.finished for a, b in itertools.pairwise(records))


def test_bad_request_line_gets_400(server: DemoServer) -> None:
    port = int(server.url("small").rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"NONSENSE\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400")


# ---- lifecycle -----------------------------------------------------------------------------------


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_fifty_shops_start_and_stop_quickly_without_leaks() -> None:
    threads_before = set(threading.enumerate())
    shops = demo_shops(50, products_per_shop=10)
    assert len({s.name for s in shops}) == 50
    assert {s.platform for s in shops} == {"shopify", "woocommerce"}
    began = time.monotonic()
    srv = DemoServer(shops).start()
    ports = {int(srv.url(s.name).rsplit(":", 1)[1]) for s in shops}
    assert len(ports) == 50
    with httpx.Client(timeout=5) as c:
        for s in shops[:6]:
            path = "/products.json" if s.platform == "shopify" else WOO
            assert c.get(srv.url(s.name) + path).status_code == 200
    srv.stop()
    assert time.monotonic() - began < 5
    assert set(threading.enumerate()) <= threads_before
    assert not any(_port_open(p) for p in list(ports)[:10])
    srv.stop()  # idempotent


def test_five_hundred_shops_in_one_process() -> None:
    shops = demo_shops(500, products_per_shop=3)
    threads_before = threading.active_count()
    with DemoServer(shops) as srv:
        assert srv.startup_seconds < 3
        assert threading.active_count() == threads_before + 1  # one loop thread serves every shop
        with httpx.Client(timeout=5) as c:
            for s in shops[::50]:
                path = "/meta.json" if s.platform == "shopify" else WOO
                assert c.get(srv.url(s.name) + path).status_code == 200
    assert threading.active_count() == threads_before


def test_stop_does_not_wait_for_hanging_requests(shops: list[DemoShop]) -> None:
    shops[2].faults.append(Fault("hang", times=-1))
    srv = DemoServer(shops).start()
    url = srv.url("small") + "/products.json"
    outcome: list[BaseException] = []

    def fetch() -> None:
        try:
            httpx.get(url, timeout=10)
        except httpx.HTTPError as exc:
            outcome.append(exc)

    t = threading.Thread(target=fetch, daemon=True)
    t.start()
    deadline = time.monotonic() + 2
    while srv.in_flight("small") == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    began = time.monotonic()
    srv.stop()
    assert time.monotonic() - began < 2
    t.join(5)
    assert not t.is_alive() and outcome  # the client saw the connection drop


def test_misuse_errors(shops: list[DemoShop]) -> None:
    with pytest.raises(ValueError, match="unique"):
        DemoServer([shops[0], shops[0]])
    srv = DemoServer(shops)
    with pytest.raises(RuntimeError, match="not started"):
        srv.url("big")
    with srv:
        with pytest.raises(KeyError, match="no demo shop"):
            srv.url("nope")
        with pytest.raises(RuntimeError, match="already"):
            srv.start()
