"""Getting a shop's catalog politely: Fetcher/Shop (HTTP), platform detection and the per-platform listings.

Parsing products into coffees lives in ``normalize/``; storing pages and runs in ``pipeline/``/``catalog/``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing

from coffee_scraper.settings import Settings
from coffee_scraper.storefronts import shopify, woocommerce
from coffee_scraper.storefronts.detect import detect_platform
from coffee_scraper.storefronts.http import Fetcher, Shop, parse_retry_after
from coffee_scraper.storefronts.types import (
    BadPayload,
    CachedResponse,
    CatalogPage,
    CatalogTooLarge,
    CircuitOpen,
    CircuitState,
    ConditionalCache,
    FetchedPage,
    FetchError,
    PermanentHTTPError,
    PlatformName,
    PlatformUnknown,
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

__all__ = [
    "BadPayload",
    "CachedResponse",
    "CatalogPage",
    "CatalogTooLarge",
    "CircuitOpen",
    "CircuitState",
    "ConditionalCache",
    "FetchError",
    "FetchedPage",
    "Fetcher",
    "PermanentHTTPError",
    "PlatformName",
    "PlatformUnknown",
    "RequestEvent",
    "RequestResult",
    "ResponseTooLarge",
    "RobotsDisallowed",
    "Shop",
    "ShopState",
    "ShopUnavailable",
    "ShopUnreachable",
    "TransientExhausted",
    "UnsafeAddress",
    "detect_platform",
    "iter_catalog",
    "parse_retry_after",
    "shop_currency",
]


def iter_catalog(
    shop: Shop, platform: PlatformName, settings: Settings, *, expected_count: int | None = None
) -> AsyncGenerator[CatalogPage, None]:
    """Every listing page of the shop's catalog, with the page size from settings.

    ``expected_count`` (Shopify meta.json ``published_products_count``) only fills ``total_pages``.
    """
    if platform == "shopify":
        return shopify.iter_pages(shop, limit=settings.shopify_page_limit, expected_count=expected_count)
    if platform == "woocommerce":
        return woocommerce.iter_pages(shop, per_page=settings.woocommerce_per_page)
    raise PlatformUnknown(
        f"unsupported platform {platform!r} for {shop.base_url}",
        url=shop.base_url,
        hint="use 'shopify', 'woocommerce' or 'auto' (detect)",
    )


async def shop_currency(shop: Shop, platform: PlatformName) -> str | None:
    """The shop's ISO currency: Shopify meta.json ``currency``; WooCommerce ``prices.currency_code`` of one
    product. None when the shop does not say (never guessed)."""
    if platform == "shopify":
        meta = await shopify.fetch_meta(shop)
        currency = meta.get("currency") if meta else None
    elif platform == "woocommerce":
        currency = None
        async with aclosing(woocommerce.iter_pages(shop, per_page=1)) as pages:
            async for page in pages:
                prices = page.products[0].get("prices") if page.products else None
                currency = prices.get("currency_code") if isinstance(prices, dict) else None
                break
    else:
        return None
    if isinstance(currency, str) and len(currency.strip()) == 3 and currency.strip().isalpha():
        return currency.strip().upper()
    return None
