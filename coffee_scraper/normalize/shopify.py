"""Shopify ``products.json`` product → platform-neutral RawProduct.

Field decisions are elsewhere (attributes.py, variants.py); this only reads the platform shape.
"""

from __future__ import annotations

from typing import Any

from .intermediate import RawProduct, RawVariant
from .money import decimal_to_minor
from .text import clean_inline, html_to_text

__all__ = ["shopify_to_raw"]


def _s(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, (str, int)):
        return str(value)
    return ""


def _tags(value: object) -> list[str]:
    if isinstance(value, str):  # Admin API style "a, b, c"
        items: list[object] = list(value.split(","))
    elif isinstance(value, list):
        items = value
    else:
        return []
    out = [clean_inline(t) for t in items[:500] if isinstance(t, (str, int)) and not isinstance(t, bool)]
    return [t for t in out if t]


def shopify_to_raw(p: dict[str, Any], currency: str) -> RawProduct:
    """Read one Shopify product (already checked to be a dict)."""
    flags: list[str] = []
    options: list[tuple[str, list[str]]] = []
    raw_opts = p.get("options")
    if isinstance(raw_opts, list):
        for i, o in enumerate(raw_opts[:3]):
            if isinstance(o, dict):
                name = clean_inline(o.get("name")) or f"Option {i + 1}"
                vals = o.get("values")
                values = [clean_inline(x) for x in vals[:500]] if isinstance(vals, list) else []
                options.append((name, values))
            elif isinstance(o, str):
                options.append((clean_inline(o) or f"Option {i + 1}", []))
    variants: list[RawVariant] = []
    raw_vars = p.get("variants")
    if isinstance(raw_vars, list):
        for i, v in enumerate(raw_vars):
            if not isinstance(v, dict):
                continue
            opts: list[tuple[str, str]] = []
            for n in range(3):
                val = clean_inline(v.get(f"option{n + 1}"))
                if val:
                    name = options[n][0] if n < len(options) else f"Option {n + 1}"
                    opts.append((name, val))
            title = clean_inline(v.get("title")) or " / ".join(x for _n, x in opts) or "Default Title"
            price = decimal_to_minor(v.get("price"), currency)
            if price is None:
                flags.append(f"price_unparsed:{i}")
                price = 0
            cmp_ = decimal_to_minor(v.get("compare_at_price"), currency)
            available = v.get("available")
            variants.append(
                RawVariant(
                    id=_s(v.get("id")) or f"{_s(p.get('id'))}:{i}",
                    title=title,
                    options=opts,
                    price_minor=price,
                    compare_at_minor=cmp_ if cmp_ is not None and cmp_ > price else None,
                    in_stock=available is True
                    or (isinstance(available, str) and available.casefold() == "true"),
                )
            )
    ptype = clean_inline(p.get("product_type"))
    return RawProduct(
        platform="shopify",
        product_id=_s(p.get("id")),
        title=clean_inline(p.get("title")),
        body=html_to_text(p.get("body_html")),
        body_source="body_html",
        tags=_tags(p.get("tags")),
        types=[ptype] if ptype else [],
        type_source="product_type",
        options=options,
        variants=variants,
        currency=currency,
        flags=flags,
    )
