"""Helpers for the ``coffee-scraper normalize`` command: iterate a storefront dump, emit JSON Lines.

The Typer command itself lives in coffee_scraper/cli.py; this module does no argument parsing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import IO, Any, Literal

from .core import normalize_product

__all__ = ["iter_dump", "normalize_dump_to_jsonl", "read_dump"]

Platform = Literal["shopify", "woocommerce"]


def iter_dump(data: Any, platform: Platform) -> Iterator[dict[str, Any]]:
    """Products of a dump: Shopify ``{"products": [...]}`` (or one ``{"product": {...}}``), or a list."""
    if isinstance(data, dict):
        if isinstance(data.get("products"), list):
            items: list[Any] = data["products"]
        elif isinstance(data.get("product"), dict):
            items = [data["product"]]
        else:
            raise ValueError(f"not a {platform} dump: expected a JSON list or an object with 'products'")
    elif isinstance(data, list):
        items = data
    else:
        raise ValueError(f"not a {platform} dump: expected a JSON list or an object with 'products'")
    for item in items:
        if isinstance(item, dict):
            yield item


def read_dump(stream: IO[str] | IO[bytes]) -> Any:
    """Parse a whole JSON document from an open text or binary stream."""
    return json.loads(stream.read())


def normalize_dump_to_jsonl(data: Any, platform: Platform, currency: str | None = None) -> Iterator[str]:
    """One JSON line (no trailing newline) per product, in input order: the contract record only.

    Raises ValueError for a Shopify dump without ``currency`` (before any line is produced).
    """
    if platform == "shopify" and not currency:
        raise ValueError("--currency is required for Shopify dumps (products.json has no currency)")
    for raw in iter_dump(data, platform):
        result = normalize_product(raw, platform, currency)
        yield json.dumps(result.product.model_dump(mode="json"), ensure_ascii=False, separators=(",", ":"))
