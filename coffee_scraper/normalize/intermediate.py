"""The platform-neutral intermediate product the attribute and variant rules read.

Platform parsing is in shopify.py / woocommerce.py; no field decisions live here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["RawProduct", "RawVariant"]


@dataclass(slots=True)
class RawVariant:
    """One sellable variant as the platform states it (prices already in minor units)."""

    id: str
    title: str
    #: (option name, option value) in option order; adapters share one tuple between variants with the
    #: same choices, and variants.py memoizes its facts on it
    options: tuple[tuple[str, str], ...]
    price_minor: int
    compare_at_minor: int | None
    in_stock: bool


@dataclass(slots=True)
class RawProduct:
    """The text and structure of one product, platform differences removed."""

    platform: str
    product_id: str
    title: str
    body: str  # clean text of the description(s), blocks on separate lines
    body_source: str  # "body_html" (Shopify) or "description" (WooCommerce)
    tags: list[str]
    types: list[str]  # Shopify product_type / WooCommerce category names
    type_source: str  # "product_type" or "categories"
    options: list[tuple[str, list[str]]]
    variants: list[RawVariant]
    currency: str
    flags: list[str] = field(default_factory=list)
