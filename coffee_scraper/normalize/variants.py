"""Variant facts: net weight, pack count and grind from option values and variant titles.

Prices arrive already exact in minor units from the platform adapters (money.py); product-level
attributes are in attributes.py.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

from pydantic import BaseModel

from .intermediate import RawProduct
from .models import NormalizedVariant
from .vocab import get_vocab, key_of

__all__ = ["build_variants", "clear_caches", "grind_of", "parse_weight"]

_UNIT_G = {"kg": Decimal(1000), "g": Decimal(1), "oz": Decimal("28.349523125"), "lb": Decimal("453.59237")}
_UNIT = r"(kgs?|kilo(?:gram)?s?|g|gm|gms|grams?|gr|grm|oz|ounces?|lbs?|pounds?)"
_NUM = r"(\d+(?:[.,]\d+)?)"
_MULT_BEFORE = re.compile(rf"\b(\d+)\s*[x×*]\s*{_NUM}\s*{_UNIT}(?![a-z])", re.I)
_MULT_AFTER = re.compile(rf"\b{_NUM}\s*{_UNIT}\s*[x×*]\s*(\d+)\b", re.I)
_WEIGHT = re.compile(rf"(?<![\w.]){_NUM}\s*{_UNIT}(?![a-z])", re.I)
_PACK_OF = re.compile(r"\b(?:pack|set|box|bundle)\s+of\s+(\d+)\b|\b(\d+)[\s\-]?pack\b", re.I)
_N_UNITS = re.compile(
    r"\b(\d+)\s*(?:sachets?|drip\s*bags?|brew\s*bags?|steeping\s*bags?|bags|pouches|pcs|pieces|packs|packets|"
    r"deliveries|shipments|installments|instalments|cans|bottles)\b",
    re.I,
)
_EACH = re.compile(rf"{_NUM}\s*{_UNIT}\s*(?:each|per\s+(?:sachet|bag|pack|pouch))\b", re.I)
_BARE_NUM = re.compile(r"^\s*(\d{1,4})\s*$")
_SIZE_NAMES = ("size", "weight", "quantity", "net", "pack", "qty", "gram")
_COUNT_NAMES = ("install", "deliver", "shipment", "subscription", "months", "number of")
_DELIVERIES = re.compile(r"\b(\d{1,3})\s*(?:deliveries|shipments|installments|instalments)\b", re.I)


def clear_caches() -> None:
    """Forget the memoized weights, grinds and variant facts."""
    parse_weight.cache_clear()
    grind_of.cache_clear()
    _variant_facts.cache_clear()


def _grams(num: str, unit: str) -> int | None:
    u = unit.casefold()
    key = (
        "kg"
        if u.startswith("k")
        else "oz"
        if u.startswith(("oz", "ou"))
        else "lb"
        if u.startswith(("lb", "po"))
        else "g"
    )
    try:
        n = Decimal(num.replace(",", "."))
    except ArithmeticError:
        return None
    g = int((n * _UNIT_G[key]).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return g if 0 < g <= 100_000 else None


@lru_cache(maxsize=4096)
def parse_weight(text: str) -> tuple[int | None, int | None]:
    """(weight of one pack in grams, pack count or None) stated in ``text``."""
    if not text:
        return None, None
    m = _MULT_BEFORE.search(text)
    if m:
        return _grams(m.group(2), m.group(3)), int(m.group(1)) or None
    m = _MULT_AFTER.search(text)
    if m:
        return _grams(m.group(1), m.group(2)), int(m.group(3)) or None
    pack: int | None = None
    pm = _PACK_OF.search(text)
    if pm:
        pack = int(pm.group(1) or pm.group(2)) or None
    else:
        um = _N_UNITS.search(text)
        pack = (int(um.group(1)) or None) if um else None
    each = _EACH.search(text)
    if each:
        return _grams(each.group(1), each.group(2)), pack
    wm = _WEIGHT.search(text)
    weight = _grams(wm.group(1), wm.group(2)) if wm else None
    return weight, pack


@lru_cache(maxsize=4096)
def grind_of(value: str) -> str:
    """The contract grind of one grind-option value ("Cold Brew / Channi / French Press" → cold_brew)."""
    v = get_vocab()
    first = re.split(r"\s*[/|,+&]\s*|\s+or\s+", value.strip(), maxsplit=1)[0]
    for part in (first, value):
        hit = v.grinds.lookup(part)
        if hit:
            return str(hit)
    for part in (first, value):
        cleaned = re.sub(r"\b(?:grind|ground|for|size|brewing|brew|method)\b", " ", part, flags=re.I)
        hit = v.grinds.lookup(cleaned)
        if hit:
            return str(hit)
        for _s, _e, _m, val in v.grinds.finditer(part):
            return str(val)
    return "other"


def _is_grind_option(name: str, values: list[str]) -> bool:
    v = get_vocab()
    k = key_of(name)
    if k in v.grind_option_names or "grind" in k:
        return True
    if not values or k in ("size", "weight", "quantity"):
        return False
    known = sum(1 for val in values if v.grinds.lookup(val) not in (None, "other"))
    return known >= max(2, (len(values) + 1) // 2)


#: the keys of the values dict below (every field is set)
_VARIANT_FIELDS = set(NormalizedVariant.model_fields)
_SLOT_SETTERS = tuple(
    BaseModel.__dict__[name].__set__
    for name in ("__dict__", "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__")
)


def build_variants(raw: RawProduct) -> list[NormalizedVariant]:
    """One NormalizedVariant per raw variant, in platform order."""
    grind_opts = frozenset(n for n, vals in raw.options if _is_grind_option(n, vals))
    title_pack = None
    dm = _DELIVERIES.search(raw.title)
    if dm:
        title_pack = int(dm.group(1)) or None
    product_title = raw.title if len(raw.variants) == 1 else ""
    currency = raw.currency
    each_g: list[int | None] = []  # the body's "(100 g each)" weight, read on first need
    out: list[NormalizedVariant] = []
    append = out.append
    facts = _variant_facts
    # models.construct(NormalizedVariant, values), inlined: this loop runs once per variant
    new, cls = NormalizedVariant.__new__, NormalizedVariant
    fields_copy = _VARIANT_FIELDS.copy
    # the BaseModel slot descriptors, called directly (what object.__setattr__ ends up calling)
    set_dict, set_fields, set_extra, set_private = _SLOT_SETTERS
    for rv in raw.variants:
        weight, pack, grind = facts(rv.options, rv.title, product_title, grind_opts, title_pack)
        if pack > 1 and weight and raw.body:
            # "Pack of 2" sold as "200g" with "(100 gms each)" stated: the net weight of ONE pack
            if not each_g:
                each = _EACH.search(raw.body)
                each_g.append(_grams(each.group(1), each.group(2)) if each else None)
            w_each = each_g[0]
            if w_each and w_each * pack == weight:
                weight = w_each
        # keys in field order: the dict becomes the model's __dict__
        values = {
            "platform_variant_id": rv.id,
            "title": rv.title,
            "weight_g": weight,
            "pack_count": pack,
            "grind": grind,
            "price_minor": rv.price_minor,
            "compare_at_minor": rv.compare_at_minor,
            "currency": currency,
            "in_stock": rv.in_stock,
        }
        m = new(cls)
        set_dict(m, values)
        set_fields(m, fields_copy())
        set_extra(m, None)
        set_private(m, None)
        append(m)
    return out


@lru_cache(maxsize=8192)
def _variant_facts(
    options: tuple[tuple[str, str], ...],
    title: str,
    product_title: str,
    grind_opts: frozenset[str],
    title_pack: int | None,
) -> tuple[int | None, int, str | None]:
    """(weight_g, pack_count, grind) of one variant's options and title (memoized: shops repeat them)."""
    weight: int | None = None
    pack: int | None = None
    grind: str | None = None
    for name, value in options:
        lname = name.casefold()
        if name in grind_opts:
            if grind is None and value:
                grind = grind_of(value)
            continue
        bare = _BARE_NUM.match(value)
        if bare and any(w in lname for w in _COUNT_NAMES):
            pack = pack or int(bare.group(1)) or None
            continue
        if bare and any(w in lname for w in _SIZE_NAMES):
            n = int(bare.group(1))
            if weight is None and 20 <= n <= 5000:
                weight = n
            continue
        w, p = parse_weight(value)
        if weight is None and w is not None:
            weight = w
        if pack is None and p is not None:
            pack = p
    if weight is None or pack is None:
        for t in (title, product_title):
            if not t:
                continue
            w, p = parse_weight(t)
            if weight is None and w is not None:
                weight = w
            if pack is None and p is not None:
                pack = p
    if pack is None:
        pack = title_pack
    return weight, (pack if pack and pack > 0 else 1), grind
