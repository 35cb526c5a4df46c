"""The normalizer pipeline: platform adapter → is_coffee → attributes → variants → NormalizeResult.

Pure functions only; the public names are re-exported from the package ``__init__``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from . import money, shopify, text, variants, vocab, woocommerce
from .attributes import Attributes, extract_attributes, name_clean
from .classify import classify
from .intermediate import RawProduct
from .models import NormalizedProduct, NormalizeResult, construct
from .shopify import shopify_to_raw
from .text import clean_inline
from .variants import build_variants
from .vocab import get_vocab
from .woocommerce import woo_to_raw

__all__ = [
    "clear_caches",
    "content_hash",
    "normalize_product",
    "normalize_shopify",
    "normalize_woocommerce",
]


def clear_caches() -> None:
    """Empty every memo cache of the normalizer (not the compiled vocabularies).

    Results never depend on the caches; benchmarks clear them to time a never-seen catalogue.
    """
    vocab.clear_key_cache()
    shopify.clear_options_cache()
    text.clear_inline_cache()
    variants.clear_caches()
    money.clear_caches()
    woocommerce.clear_variation_cache()


def _result(raw: RawProduct) -> NormalizeResult:
    v = get_vocab()
    is_coffee, evidence = classify(raw, v)
    attrs = extract_attributes(raw, v) if is_coffee else Attributes()
    values: dict[str, Any] = dict(
        platform=raw.platform,
        platform_product_id=raw.product_id,
        title=raw.title,
        is_coffee=is_coffee,
        name_clean=name_clean(raw.title),
        roast_level=attrs.roast_level,
        process=attrs.process,
        species=attrs.species,
        chicory_pct=attrs.chicory_pct,
        country=attrs.country,
        region=attrs.region,
        estate=attrs.estate,
        altitude_m=attrs.altitude_m,
        varieties=attrs.varieties,
        tasting_notes=attrs.tasting_notes,
        decaf=attrs.decaf,
        variants=build_variants(raw),
    )
    # every value was built from contract enums (vocabularies are checked when loaded): no re-validation
    product = construct(NormalizedProduct, values)
    return construct(
        NormalizeResult,
        {"product": product, "evidence": evidence + attrs.evidence, "review_flags": raw.flags + attrs.flags},
    )


def normalize_shopify(raw: Any, currency: str | None) -> NormalizeResult:
    """Normalize one Shopify ``products.json`` product; ``currency`` is the shop's ISO 4217 code."""
    if currency is None or not isinstance(currency, str) or not currency.strip():
        raise ValueError(
            "Shopify products.json carries no currency: pass the shop currency (e.g. currency='INR', "
            "from meta.json or the roaster configuration)"
        )
    p = raw if isinstance(raw, dict) else {}
    if isinstance(p.get("product"), dict) and "title" not in p:  # /products/<handle>.json wrapper
        p = p["product"]
    return _result(shopify_to_raw(p, clean_inline(currency).upper()[:8]))


def normalize_woocommerce(raw: Any, currency: str | None = None) -> NormalizeResult:
    """Normalize one WooCommerce Store API product (currency comes from ``prices.currency_code``)."""
    p = raw if isinstance(raw, dict) else {}
    return _result(woo_to_raw(p, currency))


def normalize_product(
    raw: dict[str, Any], platform: Literal["shopify", "woocommerce"], currency: str | None = None
) -> NormalizeResult:
    """Normalize one raw storefront product into the contract record with evidence and review flags.

    ``currency`` is required for Shopify (products.json has none) and ignored for WooCommerce.
    """
    if platform == "shopify":
        return normalize_shopify(raw, currency)
    if platform == "woocommerce":
        return normalize_woocommerce(raw, None)
    raise ValueError(f"unknown platform {platform!r}: expected 'shopify' or 'woocommerce'")


def content_hash(raw: dict[str, Any]) -> str:
    """Stable sha256 hex digest of the product's canonical JSON (sorted keys, no whitespace)."""
    data = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(data.encode("utf-8", "surrogatepass")).hexdigest()
