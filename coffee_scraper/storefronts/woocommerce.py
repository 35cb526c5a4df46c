"""WooCommerce Store API listing: paged ``/wp-json/wc/store/v1/products`` (legacy path as fallback).

HTTP, politeness and retries live in http.py; turning products into coffees lives in ``normalize/``.
"""

from __future__ import annotations

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

PRODUCTS_V1 = "/wp-json/wc/store/v1/products"
PRODUCTS_LEGACY = "/wp-json/wc/store/products"
MAX_PER_PAGE = 100
MAX_PAGES = 10_000  # a runaway guard (1,000,000 products), not a platform limit


def products_of(page: FetchedPage) -> list[Any]:
    """The product array of a Store API page; BadPayload unless the body is a JSON array.

    Items are passed through unchecked: validating and quarantining single products is the pipeline's job.
    """
    data = json_payload(page, what="a WooCommerce Store API product array")
    if not isinstance(data, list):
        raise BadPayload(
            f"{page.url} is not a WooCommerce product array (got JSON {type(data).__name__})",
            url=page.url,
            status=page.status,
            hint="expected [...] from the Store API; the site is probably not WooCommerce (or a plugin "
            "rewrites wp-json) — run detection again or set the roaster's platform",
        )
    return data


def header_int(page: FetchedPage, name: str) -> int | None:
    """An integer response header (e.g. X-WP-TotalPages), or None when absent or not a number."""
    value = page.headers.get(name.lower())
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


async def iter_pages(shop: Shop, *, per_page: int) -> AsyncGenerator[CatalogPage, None]:
    """Pages of ``/wp-json/wc/store/v1/products?per_page=P&page=N`` until page ≥ X-WP-TotalPages or empty.

    Without X-WP-TotalPages a short page ends the listing. A 404 on the first v1 page switches to the
    legacy ``/wp-json/wc/store/products`` path.
    """
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise ValueError(f"WooCommerce per_page must be 1..{MAX_PER_PAGE}, got {per_page}")
    base = PRODUCTS_V1
    number = 1
    previous_ids: list[Any] | None = None
    while True:
        try:
            page = await shop.get(f"{base}?per_page={per_page}&page={number}")
        except PermanentHTTPError as exc:
            if number == 1 and base == PRODUCTS_V1 and exc.status == 404:
                base = PRODUCTS_LEGACY
                continue
            raise
        products = products_of(page)
        total_pages = header_int(page, "X-WP-TotalPages")
        ids = [p.get("id") if isinstance(p, dict) else None for p in products]
        if products and ids == previous_ids:
            raise BadPayload(
                f"{page.url} repeats page {number - 1}: the shop ignores ?page=",
                url=page.url,
                status=page.status,
                hint="a caching plugin or proxy strips the query string; ask the roaster to exclude wp-json",
            )
        yield CatalogPage(number=number, fetched=page, products=products, total_pages=total_pages)
        if not products:
            return
        if total_pages is not None:
            if number >= total_pages:
                return
        elif len(products) < per_page:
            return
        if number >= MAX_PAGES:
            raise CatalogTooLarge(
                f"{shop.origin}{base} still has pages after {MAX_PAGES}; stopped",
                url=page.url,
                hint="the listing looks endless; check the shop's X-WP-TotalPages header",
            )
        previous_ids = ids
        number += 1
