"""Shopify and WooCommerce listings, platform detection and the package-level helpers, on 127.0.0.1.

Politeness, retries and the other HTTP behaviour are tested in test_http.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest

from coffee_scraper.storefronts import (
    BadPayload,
    CatalogPage,
    CatalogTooLarge,
    Fetcher,
    PlatformUnknown,
    Shop,
    ShopState,
    ShopUnavailable,
    detect_platform,
    iter_catalog,
    shop_currency,
    shopify,
    woocommerce,
)

from ._server import Reply, Req, Server, html_reply, json_reply
from ._support import fast_settings

Handler = Callable[[Req], Awaitable[Reply]]


def state() -> ShopState:
    return ShopState(robots_status=404, robots_fetched_at=datetime.now(UTC))


def shopify_listing(total: int) -> Handler:
    """products.json honouring limit/page, with Shopify's 400 past the 25,000 cap."""

    async def handler(req: Req) -> Reply:
        q = parse_qs(urlsplit(req.target).query)
        limit, page = int(q.get("limit", ["30"])[0]), int(q.get("page", ["1"])[0])
        if page * limit > 25_000:
            return json_reply({"errors": "Page * Limit exceeds the 25000 limit."}, status=400)
        first = (page - 1) * limit
        ids = range(first + 1, min(total, first + limit) + 1)
        return json_reply({"products": [{"id": i, "title": f"Coffee {i}"} for i in ids]})

    return handler


def woo_listing(total: int, *, headers: bool = True) -> Handler:
    async def handler(req: Req) -> Reply:
        q = parse_qs(urlsplit(req.target).query)
        per_page, page = int(q["per_page"][0]), int(q.get("page", ["1"])[0])
        pages = max(1, -(-total // per_page))
        if page > pages:
            return json_reply({"code": "rest_post_invalid_page_number"}, status=400)
        first = (page - 1) * per_page
        products = [
            {"id": i, "name": f"Coffee {i}", "prices": {"currency_code": "INR", "currency_minor_unit": 2}}
            for i in range(first + 1, min(total, first + per_page) + 1)
        ]
        extra = {"X-WP-Total": str(total), "X-WP-TotalPages": str(pages)} if headers else {}
        return json_reply(products, headers=extra)

    return handler


async def collect(pages: object) -> list[CatalogPage]:
    out: list[CatalogPage] = []
    async for page in pages:  # type: ignore[attr-defined]
        out.append(page)
    return out


def page_params(server: Server, path: str) -> list[dict[str, list[str]]]:
    return [parse_qs(urlsplit(h.target).query) for h in server.hits if h.target.startswith(path)]


# --- Shopify ----------------------------------------------------------------------------------------------


async def test_shopify_pages_until_short_page(server: Server) -> None:
    server.route("/products.json", shopify_listing(5))
    async with Fetcher(fast_settings()) as fetcher:
        shop = fetcher.shop(server.url, state=state())
        pages = await collect(shopify.iter_pages(shop, limit=2, expected_count=5))
    assert [len(p.products) for p in pages] == [2, 2, 1]
    assert [p.number for p in pages] == [1, 2, 3] and pages[0].total_pages == 3
    assert [q["page"] for q in page_params(server, "/products.json")] == [["1"], ["2"], ["3"]]
    assert all(q["limit"] == ["2"] for q in page_params(server, "/products.json"))


async def test_shopify_stops_on_empty_page_when_catalog_is_a_multiple(server: Server) -> None:
    server.route("/products.json", shopify_listing(4))
    async with Fetcher(fast_settings()) as fetcher:
        pages = await collect(shopify.iter_pages(fetcher.shop(server.url, state=state()), limit=2))
    assert [len(p.products) for p in pages] == [2, 2, 0]


async def test_shopify_never_pages_past_the_25000_cap(server: Server) -> None:
    server.route("/products.json", shopify_listing(30_000))
    async with Fetcher(fast_settings(request_delay_s=0)) as fetcher:
        shop = fetcher.shop(server.url, state=state())
        seen: list[CatalogPage] = []
        with pytest.raises(CatalogTooLarge, match="25000") as err:
            async for page in shopify.iter_pages(shop, limit=250):
                seen.append(page)
    assert len(seen) == 100 and sum(len(p.products) for p in seen) == 25_000
    params = page_params(server, "/products.json")
    assert max(int(q["page"][0]) * int(q["limit"][0]) for q in params) == 25_000
    assert "collection" in err.value.hint


async def test_shopify_exactly_at_cap_with_known_count_is_complete(server: Server) -> None:
    server.route("/products.json", shopify_listing(25_000))
    async with Fetcher(fast_settings(request_delay_s=0)) as fetcher:
        shop = fetcher.shop(server.url, state=state())
        pages = await collect(shopify.iter_pages(shop, limit=250, expected_count=25_000))
    assert len(pages) == 100


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Reply(200, {"Content-Type": "application/json"}, b'{"products": [{"id": 1},'), BadPayload),
        (json_reply({"product": {"id": 1}}), BadPayload),
        (json_reply([{"id": 1}]), BadPayload),
        (html_reply("<!doctype html><html><body>Welcome to our blog</body></html>"), BadPayload),
        (html_reply('<html><form action="/password" method="post"></form></html>'), ShopUnavailable),
    ],
)
async def test_shopify_bad_payloads(server: Server, reply: Reply, error: type[Exception]) -> None:
    server.route("/products.json", reply)
    async with Fetcher(fast_settings()) as fetcher:
        with pytest.raises(error):
            await collect(shopify.iter_pages(fetcher.shop(server.url, state=state()), limit=250))


async def test_shopify_passes_odd_items_through_for_the_pipeline_to_quarantine(server: Server) -> None:
    server.route("/products.json", json_reply({"products": [{"id": 1}, "not an object", None]}))
    async with Fetcher(fast_settings()) as fetcher:
        (page,) = await collect(shopify.iter_pages(fetcher.shop(server.url, state=state()), limit=250))
    assert page.products == [{"id": 1}, "not an object", None]


async def test_shopify_page_ignored_is_detected(server: Server) -> None:
    server.route("/products.json", json_reply({"products": [{"id": 1}, {"id": 2}]}))
    async with Fetcher(fast_settings()) as fetcher:
        with pytest.raises(BadPayload, match="ignores"):
            await collect(shopify.iter_pages(fetcher.shop(server.url, state=state()), limit=2))


async def test_fetch_meta(make_server: Callable[[], Awaitable[Server]]) -> None:
    with_meta, without, html = await make_server(), await make_server(), await make_server()
    with_meta.route("/meta.json", json_reply({"currency": "INR", "published_products_count": 30}))
    html.route("/meta.json", html_reply("<html>home</html>"))
    async with Fetcher(fast_settings()) as fetcher:
        assert await shopify.fetch_meta(fetcher.shop(with_meta.url, state=state())) == {
            "currency": "INR",
            "published_products_count": 30,
        }
        assert await shopify.fetch_meta(fetcher.shop(without.url, state=state())) is None
        assert await shopify.fetch_meta(fetcher.shop(html.url, state=state())) is None


# --- WooCommerce ----------------------------------------------------------------------------------------


async def test_woo_paging_uses_total_pages_header(server: Server) -> None:
    server.route("/wp-json/wc/store/v1/products", woo_listing(6))  # 3 full pages of 2
    async with Fetcher(fast_settings()) as fetcher:
        pages = await collect(woocommerce.iter_pages(fetcher.shop(server.url, state=state()), per_page=2))
    assert [len(p.products) for p in pages] == [2, 2, 2]
    assert all(p.total_pages == 3 for p in pages)
    # the last page is full, yet page 4 is never asked for: X-WP-TotalPages said 3
    assert [q["page"] for q in page_params(server, "/wp-json")] == [["1"], ["2"], ["3"]]


async def test_woo_without_headers_stops_on_short_page(server: Server) -> None:
    server.route("/wp-json/wc/store/v1/products", woo_listing(5, headers=False))
    async with Fetcher(fast_settings()) as fetcher:
        pages = await collect(woocommerce.iter_pages(fetcher.shop(server.url, state=state()), per_page=2))
    assert [len(p.products) for p in pages] == [2, 2, 1] and pages[0].total_pages is None


async def test_woo_falls_back_to_legacy_path_on_404(server: Server) -> None:
    server.route("/wp-json/wc/store/products", woo_listing(3))
    async with Fetcher(fast_settings()) as fetcher:
        pages = await collect(woocommerce.iter_pages(fetcher.shop(server.url, state=state()), per_page=100))
    assert [len(p.products) for p in pages] == [3]
    assert [h.target.split("?")[0] for h in server.hits] == [
        "/wp-json/wc/store/v1/products",
        "/wp-json/wc/store/products",
    ]


async def test_woo_object_instead_of_array_is_bad_payload(server: Server) -> None:
    server.route("/wp-json/wc/store/v1/products", json_reply({"products": []}))
    async with Fetcher(fast_settings()) as fetcher:
        with pytest.raises(BadPayload, match="WooCommerce"):
            await collect(woocommerce.iter_pages(fetcher.shop(server.url, state=state()), per_page=10))


# --- detection --------------------------------------------------------------------------------------------


async def test_detects_shopify_by_meta(server: Server) -> None:
    server.route("/meta.json", json_reply({"myshopify_domain": "x.myshopify.com", "published_products_count": 3}))
    async with Fetcher(fast_settings()) as fetcher:
        assert await detect_platform(fetcher.shop(server.url, state=state())) == "shopify"


async def test_detects_shopify_by_products_json_without_meta(server: Server) -> None:
    server.route("/products.json", shopify_listing(3))
    async with Fetcher(fast_settings()) as fetcher:
        assert await detect_platform(fetcher.shop(server.url, state=state())) == "shopify"


async def test_detects_woocommerce_even_when_products_json_is_html_200(server: Server) -> None:
    server.route("/products.json", html_reply("<!doctype html><html>WordPress page</html>"))
    server.route("/meta.json", html_reply("<!doctype html><html>WordPress page</html>"))
    server.route("/wp-json/wc/store/v1/products", woo_listing(3))
    async with Fetcher(fast_settings()) as fetcher:
        assert await detect_platform(fetcher.shop(server.url, state=state())) == "woocommerce"


async def test_html_site_is_platform_unknown_with_hint(server: Server) -> None:
    page = html_reply("<!doctype html><html>Just a cafe</html>")
    for path in ("/", "/meta.json", "/products.json", "/wp-json/wc/store/v1/products"):
        server.route(path, page)
    async with Fetcher(fast_settings()) as fetcher:
        with pytest.raises(PlatformUnknown) as err:
            await detect_platform(fetcher.shop(server.url, state=state()))
    assert "text/html" in str(err.value) and err.value.hint


async def test_blocked_shop_is_not_reported_as_unknown(server: Server) -> None:
    server.route("/meta.json", html_reply("denied", status=403))
    async with Fetcher(fast_settings()) as fetcher:
        with pytest.raises(ShopUnavailable):
            await detect_platform(fetcher.shop(server.url, state=state()))


# --- package helpers ------------------------------------------------------------------------------------


async def test_iter_catalog_dispatches_with_settings_page_sizes(
    make_server: Callable[[], Awaitable[Server]],
) -> None:
    sh, wc = await make_server(), await make_server()
    sh.route("/products.json", shopify_listing(3))
    wc.route("/wp-json/wc/store/v1/products", woo_listing(3))
    settings = fast_settings(shopify_page_limit=2, woocommerce_per_page=2)
    async with Fetcher(settings) as fetcher:
        shop_s: Shop = fetcher.shop(sh.url, state=state())
        shop_w: Shop = fetcher.shop(wc.url, state=state())
        s_pages = await collect(iter_catalog(shop_s, "shopify", settings))
        w_pages = await collect(iter_catalog(shop_w, "woocommerce", settings))
        with pytest.raises(PlatformUnknown):
            iter_catalog(shop_s, "magento", settings)  # type: ignore[arg-type]
    assert [len(p.products) for p in s_pages] == [2, 1]
    assert [len(p.products) for p in w_pages] == [2, 1]


async def test_shop_currency(make_server: Callable[[], Awaitable[Server]]) -> None:
    sh, bare, wc = await make_server(), await make_server(), await make_server()
    sh.route("/meta.json", json_reply({"currency": "inr"}))
    wc.route("/wp-json/wc/store/v1/products", woo_listing(3))
    async with Fetcher(fast_settings()) as fetcher:
        assert await shop_currency(fetcher.shop(sh.url, state=state()), "shopify") == "INR"
        assert await shop_currency(fetcher.shop(bare.url, state=state()), "shopify") is None
        assert await shop_currency(fetcher.shop(wc.url, state=state()), "woocommerce") == "INR"
