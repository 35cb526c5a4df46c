"""The normalizer's fast paths give exactly what the plain versions they replace give.

Each faster form (one combined vocabulary scan, regexes rewritten so sre can skip ahead, string methods
instead of whole-text regexes) is checked against the straightforward reference it stands for, on
generated text built from the characters and words where the two could plausibly differ.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st
from selectolax.lexbor import LexborHTMLParser

from coffee_scraper.normalize import attributes as A
from coffee_scraper.normalize import clear_caches, normalize_product
from coffee_scraper.normalize import text as T
from coffee_scraper.normalize.intermediate import RawProduct
from coffee_scraper.normalize.models import (
    Evidence,
    NormalizedProduct,
    NormalizedVariant,
    NormalizeResult,
    construct,
    fast_evidence,
)
from coffee_scraper.normalize.vocab import get_vocab

from ._helpers import shopify, shopify_variant

_V = get_vocab()
_WORDS = [
    "Kenya", "kenya", "Washed", "natural", "Naturals", "honey", "anaerobic natural", "SL-28", "sl28", "sl 28",
    "Chikmagalur", "Coorg", "Indian", "arabica", "robusta", "blackcurrant", "black currant", "jam", "cherry",
    "notes", "cup", "profile", "medium", "dark", "roast", "light-roast", "Estate", "Coffee Collective",
    "Village", "The", "Big", "O'Neil", "St.", "CM", "cm", "decaf", "1,200", "1200", "12345", "masl", "m",
    "ft", "SCA 86+", "Pack of 2", "250g", "(", ")", "Whole Beans", "ground", "İstanbul", "ﬁne", "ſ", "K",
    "é", "Σ", "٣٤",
]  # fmt: skip
_SEPS = [" ", "  ", "-", "+", "_", ".", ". ", "!", "?", ",", " | ", "|", "/", ":", "\n", "\n\n", "\t", "\u00a0",
         "\u2028", "\u3000", "•", "’", "'", ""]  # fmt: skip
_texts = st.lists(st.sampled_from(_WORDS) | st.sampled_from(_SEPS), max_size=30).map("".join)
_chars = st.text(alphabet=st.sampled_from(list("ab .!?|\n\t•\u00a0\u2028\u2009\u200b\x1cXé\u0130")), max_size=40)


@settings(max_examples=400, deadline=None)
@given(_texts)
def test_multiscan_equals_each_matcher(text: str) -> None:
    for scan in (_V.text_scan, _V.noncoffee_title_scan):
        assert scan.scan(text) == [list(m.finditer(text)) for m in scan.matchers]


_WS_REF = re.compile(r"[ \t\r\f\v\u00a0\u2009\u200a\u200b\u202f\u3000]+")


@settings(max_examples=400, deadline=None)
@given(_chars | _texts)
def test_whitespace_normalization_equals_regexes(text: str) -> None:
    assert T._normalize_ws(text) == re.sub(r"\s*\n\s*", "\n", _WS_REF.sub(" ", text)).strip()
    assert T._WS_TO_FIX.sub(" ", text) == _WS_REF.sub(" ", text)


def _html_reference(value: str) -> str:
    """html_to_text as first written: a parent lookup for every text node."""
    tree = LexborHTMLParser(value)
    root = tree.body or tree.root
    assert root is not None
    parts: list[str] = []
    for node in root.traverse(include_text=True):
        if node.tag == "-text":
            parent = node.parent
            if parent is not None and parent.tag in T._SKIP_TAGS:
                continue
            if node.text_content:
                parts.append(node.text_content)
        elif node.tag in T._BLOCK_TAGS:
            parts.append("\n")
    return re.sub(r"\s*\n\s*", "\n", _WS_REF.sub(" ", "".join(parts))).strip()


_TAGS = ["<p>", "</p>", "<br>", "<script>", "</script>", "<style>", "</style>", "<noscript>", "</noscript>",
         "<li>", "<div>", "</div>", "<span>", "</span>", "<svg>", "</svg>", "<template>", "</template>"]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_TAGS) | st.sampled_from(_WORDS) | st.sampled_from(_SEPS), max_size=25))
def test_html_to_text_equals_reference(pieces: list[str]) -> None:
    html = "<div>" + "".join(pieces)
    assert T.html_to_text(html) == _html_reference(html)


_SENT_REF = re.compile(r"(?<=[.!?])\s+|\n|\s\|\s|•")
_CUE_REF = re.compile(r"\b" + A._NOTE_CUE.pattern[2:])
_ESTATE_NAME_REF = re.compile(r"[A-Z][\w’'.\-]*(?:[ \t]+[A-Z][\w’'.\-]*){0,3}[ \t]+")


def _estate_mentions_reference(text: str) -> list[tuple[int, int, str, str]]:
    """Brute force: each suffix takes the earliest start from which one to four capitalized words run up to it."""
    out: list[tuple[int, int, str, str]] = []
    last = 0
    for sm in A._ESTATE_SUFFIX_RE.finditer(text):
        st = sm.start()
        if st <= last or text[st - 1] not in " \t":
            continue
        for i in range(max(last, st - 400), st):
            if _ESTATE_NAME_REF.fullmatch(text, i, st):
                out.append((i, sm.end(), text[i:st].rstrip(" \t"), sm.group(0)))
                last = sm.end()
                break
    return out


@settings(max_examples=400, deadline=None)
@given(_chars | _texts)
def test_rewritten_regexes_match_the_same(text: str) -> None:
    raw = RawProduct("shopify", "1", "", text, "body_html", [], [], "product_type", [], [], "INR")
    c = A._Ctx(raw, _V)
    assert c.bounds == [0, *(m.end() for m in _SENT_REF.finditer(text)), len(text) + 1]
    assert c.body_sentences == ([s for s in _SENT_REF.split(text) if s] if text else [])
    low = text.lower()
    assert [m.start() for m in A._NOTE_CUE.finditer(" " + low)] == [m.start() for m in _CUE_REF.finditer(low)]
    assert A._estate_mentions(text) == _estate_mentions_reference(text)
    assert [(m.span(), m.groups()) for m in A._alt_matches(text)] == [
        (m.span(), m.groups()) for m in A._ALT.finditer(text)
    ]
    words = [w for w in re.findall(r"[A-Za-z]+", text) if w.casefold() in _V.process_title_words]
    assert _V.process_title_regex.findall(text) == words


def _name_clean_reference(title: str) -> str:
    s = A._NC_SCORE.sub(" ", title)
    s = A._NC_PACK.sub(" ", s)
    stripped = A._NC_WEIGHT.sub(" ", s)
    if re.search(r"\w", stripped):
        s = stripped
    s = A._NC_GRIND.sub(" ", s)
    s = A._NC_EMPTY_PARENS.sub(" ", s)
    s = re.sub(r"\s+", " ", s)
    s = re.sub(r"^[\s\-–—|,/:+]+|[\s\-–—|,/:+(]+$", "", s)
    return s if s else title.strip()


@settings(max_examples=400, deadline=None)
@given(_chars | _texts)
def test_name_clean_equals_reference(title: str) -> None:
    assert A.name_clean(title) == _name_clean_reference(title)


def test_construct_equals_model_construct() -> None:
    values = {
        "platform_variant_id": "7",
        "title": "250g / Whole Beans",
        "weight_g": 250,
        "pack_count": 1,
        "grind": "whole",
        "price_minor": 50000,
        "compare_at_minor": None,
        "currency": "INR",
        "in_stock": True,
    }
    built = construct(NormalizedVariant, dict(values))
    assert built == NormalizedVariant.model_construct(**values) == NormalizedVariant.model_validate(values)
    assert built.model_fields_set == NormalizedVariant.model_validate(values).model_fields_set
    ev = fast_evidence("process", "title", "Washed")
    assert ev == Evidence(attribute="process", source="title", text="Washed")
    assert hash(ev) == hash(Evidence(attribute="process", source="title", text="Washed"))


def test_fast_built_results_are_contract_valid() -> None:
    raw = shopify(
        title="Attikan Estate Natural",
        body="<p>Medium roast. Notes of chocolate.</p>",
        options=[("Size", ["250g"]), ("Grind", ["Espresso"])],
        variants=[shopify_variant(5, "250g", "Espresso")],
    )
    res = normalize_product(raw, "shopify", "INR")
    dumped = res.model_dump()
    assert NormalizeResult.model_validate(dumped) == res
    assert list(dumped["product"]) == list(NormalizedProduct.model_fields)
    assert list(dumped["product"]["variants"][0]) == list(NormalizedVariant.model_fields)


def test_results_do_not_depend_on_the_memo_caches() -> None:
    raw = shopify(
        title="Kenya Kiambu AA (250g)",
        body="<p>Washed. Notes of blackcurrant and jam, grown at 1,700 masl.</p><script>x</script>",
        options=[("Size", ["250g", "1kg"]), ("Grind", ["Whole Beans"])],
        variants=[shopify_variant(1, "250g", "Whole Beans"), shopify_variant(2, "1kg", "Whole Beans")],
    )
    first = normalize_product(raw, "shopify", "INR").model_dump(mode="json")
    warm = normalize_product(raw, "shopify", "INR").model_dump(mode="json")
    clear_caches()
    cold = normalize_product(raw, "shopify", "INR").model_dump(mode="json")
    assert first == warm == cold
