"""WooCommerce Store API product → platform-neutral RawProduct.

Field decisions are elsewhere (attributes.py, variants.py); this only reads the platform shape.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

from .intermediate import RawProduct, RawVariant
from .money import rescale_minor
from .text import clean_inline, html_to_text, scalar_text

__all__ = ["clear_variation_cache", "woo_currency", "woo_to_raw"]

_OptionsTitle = tuple[tuple[tuple[str, str], ...], str]
#: product terms (attribute name → slug → term name, as items) → (raw (name, value) pairs of a
#: variation's attributes → (options, title)): catalogues repeat the same choices across variations and
#: products; only plain-string names and values are memoized (1, 1.0 and True are one dict key)
_VARIATION_CACHE: dict[tuple[object, ...], dict[tuple[tuple[object, object], ...], _OptionsTitle]] = {}
_VARIATION_CACHE_MAX = 20_000
_variation_count = [0]
_name_value = itemgetter("name", "value")


def clear_variation_cache() -> None:
    """Forget the memoized variation options and titles."""
    _VARIATION_CACHE.clear()
    _variation_count[0] = 0


def _names(value: object) -> list[str]:
    if not isinstance(value, list):
        return []
    out = []
    for item in value[:500]:
        name = clean_inline(item.get("name")) if isinstance(item, dict) else clean_inline(item)
        if name:
            out.append(name)
    return out


def _term_pair(name: object, value: object, terms: dict[str, dict[str, str]]) -> tuple[str, str]:
    """(attribute name, term name) of one variation attribute (its value is the term's slug)."""
    aname = clean_inline(name)
    slug = scalar_text(value)
    return aname, terms.get(aname.casefold(), {}).get(slug) or clean_inline(slug)


def _variation_options(
    vattrs: object, terms: dict[str, dict[str, str]], seen: dict[str, dict[str, tuple[str, str]]]
) -> _OptionsTitle:
    """(options, title) of one variation from its raw ``attributes`` list."""
    opts: list[tuple[str, str]] = []
    if isinstance(vattrs, list):
        for va in vattrs if len(vattrs) <= 20 else vattrs[:20]:
            if not isinstance(va, dict):
                continue
            rn, rv = va.get("name"), va.get("value")
            # memoize on exact str only: 1, 1.0 and True are one dict key but clean differently
            if type(rn) is str and type(rv) is str:
                by_value = seen.get(rn)
                if by_value is None:
                    by_value = seen[rn] = {}
                pair = by_value.get(rv)
                if pair is None:
                    pair = by_value[rv] = _term_pair(rn, rv, terms)
            else:
                pair = _term_pair(rn, rv, terms)
            opts.append(pair)
    return tuple(opts), " / ".join([v for _n, v in opts if v]) or "Default Title"


def woo_currency(p: dict[str, Any]) -> str | None:
    prices = p.get("prices")
    if isinstance(prices, dict):
        code = prices.get("currency_code")
        if isinstance(code, str) and code.strip():
            return code.strip().upper()[:8]
    return None


def woo_to_raw(p: dict[str, Any], fallback_currency: str | None) -> RawProduct:
    """Read one WooCommerce Store API product (already checked to be a dict)."""
    flags: list[str] = []
    currency = woo_currency(p) or (fallback_currency or "").upper()
    if not currency:
        flags.append("currency_missing")
        currency = "XXX"
    prices = p.get("prices") if isinstance(p.get("prices"), dict) else {}
    assert isinstance(prices, dict)
    mu = prices.get("currency_minor_unit")
    price = rescale_minor(prices.get("price"), mu, currency)
    if price is None:
        flags.append("price_unparsed")
        price = 0
    regular = rescale_minor(prices.get("regular_price"), mu, currency)
    compare = regular if regular is not None and regular > price else None
    in_stock = p.get("is_in_stock") is True

    # attribute name -> (slug -> term name)
    terms: dict[str, dict[str, str]] = {}
    options: list[tuple[str, list[str]]] = []
    extra_lines: list[str] = []  # attributes that are facts, not choices ("Roast : Dark")
    attrs = p.get("attributes")
    if isinstance(attrs, list):
        for at in attrs[:50]:
            if not isinstance(at, dict):
                continue
            name = clean_inline(at.get("name"))
            tmap: dict[str, str] = {}
            tl = at.get("terms")
            if isinstance(tl, list):
                for t in tl[:1000]:
                    if isinstance(t, dict):
                        slug = scalar_text(t.get("slug"))
                        tname = clean_inline(t.get("name"))
                        if slug:
                            tmap[slug] = tname or slug
            terms[name.casefold()] = tmap
            if at.get("has_variations") is False:
                extra_lines.append(f"{name} : {', '.join(tmap.values())}")
            else:
                options.append((name, list(tmap.values())))

    variants: list[RawVariant] = []
    seen: dict[str, dict[str, tuple[str, str]]] = {}  # attribute name → slug → (name, term name)
    vars_ = p.get("variations")
    if isinstance(vars_, list) and vars_:
        if prices.get("price_range"):
            flags.append("variation_price_from_parent_range")
        product_id = scalar_text(p.get("id"))
        terms_key = tuple((k, tuple(m.items())) for k, m in terms.items())
        cache = _VARIATION_CACHE.get(terms_key)
        if cache is None:
            if len(_VARIATION_CACHE) >= _VARIATION_CACHE_MAX:
                clear_variation_cache()
            cache = _VARIATION_CACHE[terms_key] = {}
        for i, var in enumerate(vars_):
            if not isinstance(var, dict):
                continue
            vattrs = var.get("attributes")
            hit: _OptionsTitle | None = None
            key: tuple[tuple[object, object], ...] | None = None
            if type(vattrs) is list and len(vattrs) <= 20:
                try:
                    key = tuple(map(_name_value, vattrs))
                    hit = cache.get(key)
                except (KeyError, TypeError):  # not all dicts with a name and a value; unhashable values
                    key = None
            if hit is None:
                hit = _variation_options(vattrs, terms, seen)
                if key is not None and all(type(n) is str and type(v) is str for n, v in key):
                    if _variation_count[0] >= _VARIATION_CACHE_MAX:
                        clear_variation_cache()
                        cache = _VARIATION_CACHE[terms_key] = {}
                    cache[key] = hit
                    _variation_count[0] += 1
            vid = var.get("id")
            variants.append(
                RawVariant(
                    (str(vid) if type(vid) is int else scalar_text(vid)) or f"{product_id}:{i}",
                    hit[1],
                    hit[0],
                    price,
                    compare,
                    in_stock,
                )
            )
    if not variants:
        variants.append(
            RawVariant(
                id=scalar_text(p.get("id")),
                title="Default Title",
                options=(),
                price_minor=price,
                compare_at_minor=compare,
                in_stock=in_stock,
            )
        )
    short = html_to_text(p.get("short_description"))
    long_ = html_to_text(p.get("description"))
    body = short if not long_ else long_ if not short or short in long_ else f"{short}\n{long_}"
    if extra_lines:
        body = "\n".join([body, *extra_lines]) if body else "\n".join(extra_lines)
    return RawProduct(
        platform="woocommerce",
        product_id=scalar_text(p.get("id")),
        title=clean_inline(p.get("name")),
        body=body,
        body_source="description",
        tags=_names(p.get("tags")),
        types=_names(p.get("categories")),
        type_source="categories",
        options=options,
        variants=variants,
        currency=currency,
        flags=flags,
    )
