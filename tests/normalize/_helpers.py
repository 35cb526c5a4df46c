"""Builders of small raw Shopify / WooCommerce products for the normalizer tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from coffee_scraper.normalize import NormalizeResult, normalize_product

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT.parent / "shared" / "fixtures"


def shopify(
    title: str = "House Blend",
    body: str = "",
    tags: list[str] | None = None,
    product_type: str = "Coffee",
    options: list[tuple[str, list[str]]] | None = None,
    variants: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    opts = options if options is not None else [("Title", ["Default Title"])]
    if variants is None:
        variants = [
            {
                "id": 11,
                "title": "Default Title",
                "option1": "Default Title",
                "price": "500.00",
                "compare_at_price": None,
                "available": True,
                "grams": 0,
            }
        ]
    return {
        "id": 1,
        "title": title,
        "body_html": body,
        "tags": tags or [],
        "product_type": product_type,
        "options": [{"name": n, "position": i + 1, "values": v} for i, (n, v) in enumerate(opts)],
        "variants": variants,
    }


def shopify_variant(vid: int, *values: str, price: str = "500.00", compare: str | None = None) -> dict[str, Any]:
    v: dict[str, Any] = {
        "id": vid,
        "title": " / ".join(values),
        "price": price,
        "compare_at_price": compare,
        "available": True,
        "grams": 250,
    }
    for i, val in enumerate(values):
        v[f"option{i + 1}"] = val
    return v


def norm(raw: dict[str, Any], platform: str = "shopify", currency: str | None = "INR") -> NormalizeResult:
    return normalize_product(raw, platform, currency)  # type: ignore[arg-type]


def coffee(body: str, title: str = "House Blend", tags: list[str] | None = None) -> NormalizeResult:
    """A Shopify coffee (grind/size options) with the given description."""
    return norm(
        shopify(
            title=title,
            body=body,
            tags=tags,
            options=[("Size", ["250g"]), ("Grind", ["Whole Bean"])],
            variants=[shopify_variant(21, "250g", "Whole Bean")],
        )
    )
