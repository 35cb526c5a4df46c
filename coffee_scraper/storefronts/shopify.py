"""Shopify public storefront JSON: ``/meta.json`` and paged ``/products.json`` (25,000-item cap respected).

HTTP, politeness and retries live in http.py; turning products into coffees lives in ``normalize/``.
"""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator
from typing import Any

from coffee_scraper.storefronts.http import Shop, json_payload
from coffee_scraper.storefronts.types import (
    BadPayload,
    CatalogPage,
    CatalogTooLarge,
    FetchedPage,
    PermanentHTTPError,
)

MAX_LIMIT = 250
PAGE_CAP = 25_000  # Shopify answers 400 when page × limit exceeds this


async def fetch_meta(shop: Shop) -> dict[str, Any] | None:
    """The shop's ``/meta.json`` object, or None when it has none (4xx, HTML, not a JSON object).

    Blocked/unavailable shops and transient failures still raise (ShopUnavailable, TransientExhausted, …).
    """
    try:
        page = await shop.get("/meta.json")
    except PermanentHTTPError as exc:
        if exc.status is not None and 400 <= exc.status < 500:
            return None
        raise
    try:
        data = json_payload(page, what="Shopify meta.json")
    except BadPayload:
        return None
    return data if isinstance(data, dict) else None


def products_of(page: FetchedPage) -> list[Any]:
    """The ``products`` list of a products.json page; BadPayload unless the body is ``{"products": [...]}``.

    Items are passed through unchecked (a non-object item included): validating single products, and
    quarantining bad ones without failing the page, is the pipeline's job.
    """
    data = json_payload(page, what="Shopify products.json")
    products = data.get("products") if isinstance(data, dict) else None
    if not isinstance(products, list):
        shape = type(data).__name__ if not isinstance(data, dict) else f"object with keys {sorted(data)[:8]}"
        raise BadPayload(
            f"{page.url} is not a Shopify product listing (got a JSON {shape})",
            url=page.url,
            status=page.status,
            hint='expected {"products": [...]}; the site is probably not Shopify — run detection again or '
            "set the roaster's platform",
        )
    return products


async def iter_pages(
    shop: Shop,
    *,
    limit: int,
    expected_count: int | None = None,
    path: str = "/products.json",
) -> AsyncGenerator[CatalogPage, None]:
    """Pages of ``{path}?limit=L&page=N`` from 1 until an empty or short page.

    ``expected_count`` (meta.json ``published_products_count``) sets ``CatalogPage.total_pages``.
    Never requests beyond page × limit = 25,000: when the last reachable page is still full (and
    ``expected_count`` does not say the catalog ends there) the pages already yielded are followed by
    CatalogTooLarge. ``path`` may be ``/collections/<handle>/products.json`` to split a big catalog.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"Shopify products.json limit must be 1..{MAX_LIMIT}, got {limit}")
    max_pages = PAGE_CAP // limit
    total_pages = math.ceil(expected_count / limit) if expected_count is not None else None
    previous_ids: list[Any] | None = None
    for number in range(1, max_pages + 1):
        page = await shop.get(f"{path}?limit={limit}&page={number}")
        products = products_of(page)
        ids = [p.get("id") if isinstance(p, dict) else None for p in products]
        if products and ids == previous_ids:
            raise BadPayload(
                f"{page.url} repeats page {number - 1}: the shop ignores ?page=",
                url=page.url,
                status=page.status,
                hint="this shop cannot be paged through products.json; page per collection instead",
            )
        yield CatalogPage(number=number, fetched=page, products=products, total_pages=total_pages)
        if len(products) < limit:
            return
        if expected_count is not None and number * limit >= expected_count:
            return
        previous_ids = ids
    raise CatalogTooLarge(
        f"{shop.origin}{path} has more than {PAGE_CAP} products reachable by paging (page × limit cap); "
        f"stopped after {max_pages} pages of {limit}"
        + (f", meta.json says {expected_count}" if expected_count is not None else ""),
        url=shop.url_for(path),
        hint="the catalog is only partially fetched; page it per collection "
        "(/collections/<handle>/products.json) instead",
    )
