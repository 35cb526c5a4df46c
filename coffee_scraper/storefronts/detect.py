"""Which platform a shop runs (Shopify or WooCommerce), judged by JSON shape and Content-Type, not status.

Paging and payload parsing live in shopify.py / woocommerce.py; HTTP in http.py.
"""

from __future__ import annotations

from typing import Any

from coffee_scraper.storefronts.http import Shop, json_payload
from coffee_scraper.storefronts.types import (
    BadPayload,
    PermanentHTTPError,
    PlatformName,
    PlatformUnknown,
    RobotsDisallowed,
)
from coffee_scraper.storefronts.woocommerce import PRODUCTS_LEGACY, PRODUCTS_V1

_NOTHING = object()


async def _probe(shop: Shop, path: str, notes: list[str], blocked: list[RobotsDisallowed]) -> Any:
    """The decoded JSON at ``path``, or ``_NOTHING`` (with a note why) when there is no usable JSON.

    ShopUnavailable, ShopUnreachable, TransientExhausted and CircuitOpen propagate: a blocked or down shop
    is not "unknown".
    """
    try:
        page = await shop.get(path, conditional=False)
    except RobotsDisallowed as exc:
        notes.append(f"{path}: {exc.kind}" + (f" {exc.status}" if exc.status else ""))
        blocked.append(exc)
        return _NOTHING
    except PermanentHTTPError as exc:
        notes.append(f"{path}: {exc.kind}" + (f" {exc.status}" if exc.status else ""))
        return _NOTHING
    try:
        return json_payload(page, what="JSON")
    except BadPayload:
        ctype = page.headers.get("content-type", "?").split(";")[0]
        notes.append(f"{path}: {page.status} {ctype}, not JSON")
        return _NOTHING


def _note_shape(path: str, data: Any, notes: list[str]) -> None:
    shape = f"object with keys {sorted(data)[:6]}" if isinstance(data, dict) else type(data).__name__
    notes.append(f"{path}: JSON {shape}")


async def detect_platform(shop: Shop) -> PlatformName:
    """ "shopify" or "woocommerce"; PlatformUnknown (with what each probe answered) otherwise.

    Probes, in order, stopping at the first match: ``/meta.json`` (object with ``published_products_count``
    or ``myshopify_domain``), ``/products.json?limit=1`` (``{"products": [...]}``),
    ``/wp-json/wc/store/v1/products?per_page=1`` and the legacy Store API path (a JSON array).
    """
    notes: list[str] = []
    blocked: list[RobotsDisallowed] = []
    meta = await _probe(shop, "/meta.json", notes, blocked)
    if isinstance(meta, dict) and ("published_products_count" in meta or "myshopify_domain" in meta):
        return "shopify"
    if meta is not _NOTHING:
        _note_shape("/meta.json", meta, notes)

    listing = await _probe(shop, "/products.json?limit=1", notes, blocked)
    if isinstance(listing, dict) and isinstance(listing.get("products"), list):
        return "shopify"
    if listing is not _NOTHING:
        _note_shape("/products.json", listing, notes)

    for path in (PRODUCTS_V1, PRODUCTS_LEGACY):
        woo = await _probe(shop, f"{path}?per_page=1", notes, blocked)
        if isinstance(woo, list):
            return "woocommerce"
        if woo is not _NOTHING:
            _note_shape(path, woo, notes)

    if len(blocked) == len(notes):  # robots.txt forbade every probe: say so, not "unknown platform"
        raise blocked[-1]
    raise PlatformUnknown(
        f"{shop.base_url} is neither a Shopify nor a WooCommerce shop as far as its public JSON shows "
        f"({'; '.join(notes)})",
        url=shop.base_url,
        hint="check the URL is the shop's storefront (not a blog or a landing page), or set the platform "
        "explicitly if its catalog JSON lives elsewhere",
    )
