"""Coffee normalizer: raw Shopify / WooCommerce product JSON → the normalized product contract.

Pure functions (no network, no database); vocabularies are data files under ``vocab/``.
"""

from __future__ import annotations

from .core import clear_caches, content_hash, normalize_product, normalize_shopify, normalize_woocommerce
from .models import Evidence, NormalizedProduct, NormalizedVariant, NormalizeResult

__all__ = [
    "Evidence",
    "NormalizeResult",
    "NormalizedProduct",
    "NormalizedVariant",
    "clear_caches",
    "content_hash",
    "normalize_product",
    "normalize_shopify",
    "normalize_woocommerce",
]
