"""Shopify ``products.json`` product → platform-neutral RawProduct.

Field decisions are elsewhere (attributes.py, variants.py); this only reads the platform shape.
"""

from __future__ import annotations

from typing import Any

from .intermediate import RawProduct, RawVariant
from .money import _MAX_DIGITS, _decimal_str_to_minor, decimal_to_minor
from .text import clean_inline, html_to_text, scalar_text

__all__ = ["clear_options_cache", "shopify_to_raw"]


def _tags(value: object) -> list[str]:
    if isinstance(value, str):  # Admin API style "a, b, c"
        items: list[object] = list(value.split(","))
    elif isinstance(value, list):
        items = value
    else:
        return []
    out = [clean_inline(t) for t in items[:500] if isinstance(t, (str, int)) and not isinstance(t, bool)]
    return [t for t in out if t]


_OptionsTitle = tuple[tuple[tuple[str, str], ...], str]
#: (option1, option2, option3, title, option names) → (options, title): shops repeat the same choices
#: ("250g / Whole Bean") across variants and products; only str/None values are memoized
_OPTIONS_CACHE: dict[tuple[object, ...], _OptionsTitle] = {}
_OPTIONS_CACHE_MAX = 20_000


def clear_options_cache() -> None:
    """Forget the memoized variant options and titles."""
    _OPTIONS_CACHE.clear()


def _variant_options(v: dict[str, Any], names: tuple[str, ...]) -> _OptionsTitle:
    """(options, title) of one raw variant, memoized on its raw option values and title."""
    get = v.get
    o1, o2, o3, title = get("option1"), get("option2"), get("option3"), get("title")
    # 1, 1.0 and True are one dict key but clean differently: memoize plain strings and None only
    if (
        (o1 is None or type(o1) is str)
        and (o2 is None or type(o2) is str)
        and (o3 is None or type(o3) is str)
        and (title is None or type(title) is str)
    ):
        key = (o1, o2, o3, title, names)
        hit = _OPTIONS_CACHE.get(key)
        if hit is None:
            hit = _options_title((o1, o2, o3), title, names)
            if len(_OPTIONS_CACHE) >= _OPTIONS_CACHE_MAX:
                _OPTIONS_CACHE.clear()
            _OPTIONS_CACHE[key] = hit
        return hit
    return _options_title((o1, o2, o3), title, names)


def _options_title(values: tuple[object, object, object], title: object, names: tuple[str, ...]) -> _OptionsTitle:
    """(options, title) of a variant from its raw ``option1``-``option3`` and ``title``."""
    v1, v2, v3 = clean_inline(values[0]), clean_inline(values[1]), clean_inline(values[2])
    if v1 and v2 and v3:
        opts: tuple[tuple[str, str], ...] = ((names[0], v1), (names[1], v2), (names[2], v3))
    elif v1 and not v3:
        opts = ((names[0], v1), (names[1], v2)) if v2 else ((names[0], v1),)
    else:
        opts = tuple((names[n], val) for n, val in enumerate((v1, v2, v3)) if val)
    return opts, clean_inline(title) or " / ".join([x for _n, x in opts]) or "Default Title"


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
        names = tuple(options[n][0] if n < len(options) else f"Option {n + 1}" for n in range(3))
        product_id = p.get("id")
        to_minor = decimal_to_minor
        str_to_minor = _decimal_str_to_minor  # decimal_to_minor of a short str, called directly
        for i, v in enumerate(raw_vars):
            if not isinstance(v, dict):
                continue
            get = v.get
            opts, title = _variant_options(v, names)
            rp, rc = get("price"), get("compare_at_price")
            price = str_to_minor(rp, currency) if type(rp) is str and len(rp) <= _MAX_DIGITS else to_minor(rp, currency)
            if price is None:
                flags.append(f"price_unparsed:{i}")
                price = 0
            if rc is None:
                cmp_ = None
            else:
                cmp_ = (
                    str_to_minor(rc, currency) if type(rc) is str and len(rc) <= _MAX_DIGITS else to_minor(rc, currency)
                )
            available = get("available")
            vid = get("id")
            variants.append(
                RawVariant(
                    (str(vid) if type(vid) is int else scalar_text(vid)) or f"{scalar_text(product_id)}:{i}",
                    title,
                    opts,
                    price,
                    cmp_ if cmp_ is not None and cmp_ > price else None,
                    available is True or (isinstance(available, str) and available.casefold() == "true"),
                )
            )
    ptype = clean_inline(p.get("product_type"))
    return RawProduct(
        platform="shopify",
        product_id=scalar_text(p.get("id")),
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
