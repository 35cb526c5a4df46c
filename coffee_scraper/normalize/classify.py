"""Is this product coffee a buyer brews? (beans, ground, drip bags, subscriptions) — vs gear, food, events.

Only the is_coffee decision lives here; the word lists are vocab/noncoffee.yaml.
"""

from __future__ import annotations

import re

from .intermediate import RawProduct
from .models import Evidence, fast_evidence
from .vocab import NONCOFFEE_TITLE_KINDS, Vocab, key_of

__all__ = ["classify"]

_COFFEE_WORD = re.compile(r"\bcoffees?\b|\bbeans?\b|\bespresso\b|\bkaapi\b", re.I)
_WEIGHT_OPTION = re.compile(r"\d\s*(?:g|gm|gms|kg|grams?)\b", re.I)
_COLD_BREW = re.compile(r"\bcold[\s\-]?brew", re.I)
_BEAN_FORM = re.compile(
    r"\b(?:blend|beans?|ground|grind|roast(?:ed)?|arabica|robusta|single\s+origin|drip\s+bags?|sachets?)\b",
    re.I,
)


# statements only a coffee's own page makes (origin / roast / process / notes labels, bean words)
_COFFEE_FACT = re.compile(
    r"\b(?:roast(?:ed)?\s+(?:coffee|beans)|coffee\s+beans|whole\s+beans|ground\s+coffee|roast\s+profile|"
    r"single\s+origin|tasting\s+notes|coffee\s+notes|coffee\s+origin|region\s*:|process\s*:|roast\s*:|"
    r"elevation\s*:|altitude\s*:|variety\s*:|arabica|robusta|washed|natural\s+process|honey\s+process|"
    r"(?:light|medium|dark)[\s\-]+roast|notes\s*:|packs?\s+of\s+coffee)(?!\w)",
    re.I,
)


def _hits(v: Vocab, kind: str, text: str) -> list[str]:
    return [m for _s, _e, m, _v in v.noncoffee[kind].finditer(text)]


def classify(raw: RawProduct, v: Vocab) -> tuple[bool, list[Evidence]]:
    """(is_coffee, evidence)."""
    ev: list[Evidence] = []
    title = raw.title
    # every title vocabulary in one pass: kind → matched phrases
    title_hits = {
        kind: [m for _s, _e, m, _v in hits]
        for kind, hits in zip(NONCOFFEE_TITLE_KINDS, v.noncoffee_title_scan.scan(title), strict=True)
    }
    has_grind_or_weight = any("grind" in key_of(n) or _WEIGHT_OPTION.search(" ".join(vals)) for n, vals in raw.options)
    coffee_type = [t for t in raw.types if key_of(t) in v.coffee_types or _COFFEE_WORD.search(t)]
    noncoffee_type = [t for t in raw.types + raw.tags if key_of(t) in v.noncoffee_types]

    # 1. the title names a non-coffee thing
    for kind in ("gift_cards", "events", "hampers", "equipment", "merchandise", "food", "drinks"):
        hits = title_hits[kind]
        if not hits:
            continue
        if kind in ("equipment", "merchandise", "food", "drinks"):
            # "French Press Grind", "Cold Brew Blend", "Chocolate Blend" of beans: the title is about coffee
            forms = title_hits["coffee_forms"]
            if forms and (has_grind_or_weight or _BEAN_FORM.search(title)) and kind != "food":
                continue
            if kind == "food" and has_grind_or_weight and _BEAN_FORM.search(title):
                continue
        ev.append(fast_evidence("is_coffee", "title", hits[0]))
        return False, ev

    # 2. gift boxes: coffee only when the box holds nothing but coffee
    if title_hits["gift_boxes"]:
        items = _hits(v, "hamper_items", raw.body)
        if items:
            ev.append(fast_evidence("is_coffee", raw.body_source, items[0]))
            return False, ev
        fact = _COFFEE_FACT.search(raw.body) or _COFFEE_FACT.search(title)
        if fact:
            ev.append(fast_evidence("is_coffee", raw.body_source, fact.group(0)))
            return True, ev

    # 3. department says non-coffee and nothing says coffee
    if noncoffee_type and not coffee_type and not has_grind_or_weight:
        ev.append(fast_evidence("is_coffee", raw.type_source, noncoffee_type[0]))
        return False, ev

    # 4. a cold brew that is not beans (no grind/weight choice, no bean words): a drink
    cold = _COLD_BREW.search(title) or any(_COLD_BREW.search(t) for t in raw.types)
    if cold and not has_grind_or_weight and not _BEAN_FORM.search(title):
        body_beans = re.search(r"\b(?:blend|beans|ground|roast(?:ed)?|grind)\b", raw.body, re.I)
        if not body_beans:
            ev.append(
                fast_evidence(
                    "is_coffee",
                    "title" if _COLD_BREW.search(title) else raw.type_source,
                    "cold brew (no beans, grind or weight)",
                )
            )
            return False, ev

    # 5. positive evidence
    if coffee_type:
        ev.append(fast_evidence("is_coffee", raw.type_source, coffee_type[0]))
        return True, ev
    if has_grind_or_weight:
        ev.append(fast_evidence("is_coffee", "options", "grind/weight option"))
        return True, ev
    forms = title_hits["coffee_forms"]
    if forms:
        ev.append(fast_evidence("is_coffee", "title", forms[0]))
        return True, ev
    if any(key_of(t) in v.coffee_types for t in [*raw.types, *raw.tags]):
        ev.append(fast_evidence("is_coffee", "tags", "coffee tag"))
        return True, ev
    m = _COFFEE_FACT.search(raw.body) or _COFFEE_FACT.search(title)
    if m and not noncoffee_type:
        ev.append(fast_evidence("is_coffee", raw.body_source, m.group(0)))
        return True, ev
    return False, ev
