"""Property tests (hypothesis): arbitrary JSON never crashes, enums stay in the contract, prices exact."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coffee_scraper.normalize import normalize_product
from coffee_scraper.normalize.models import GRINDS, PROCESSES, ROAST_LEVELS, SPECIES, NormalizedProduct

_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=60)
_json: st.SearchStrategy[Any] = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=25,
)
_words = st.sampled_from(
    [
        "Washed",
        "natural",
        "medium-roast",
        "dark roast",
        "Coorg",
        "S795",
        "250g",
        "2 x 250g",
        "Whole Bean",
        "chicory",
        "80:20",
        "notes of jaggery",
        "&amp;",
        "<b>",
        "</p>",
        "1200 masl",
        "Estate",
        "Arabica",
        "Robusta",
        "decaf",
        "ml",
        "City+",
        "Pack of 10",
        "Gift Box",
        "French Press",
        "cacao",
        "\u00a0",
        "😀",
        "9" * 40,
    ]
)
_texty = st.lists(_words | st.text(max_size=20), max_size=12).map(" ".join)
_value = _json | _texty

_shopify_like = st.fixed_dictionaries(
    {},
    optional={
        "id": _value,
        "title": _value,
        "body_html": _value,
        "tags": st.lists(_value, max_size=5) | _value,
        "product_type": _value,
        "options": st.lists(
            st.fixed_dictionaries({}, optional={"name": _value, "values": st.lists(_value, max_size=3) | _value}),
            max_size=3,
        )
        | _value,
        "variants": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "id": _value,
                    "title": _value,
                    "option1": _value,
                    "option2": _value,
                    "option3": _value,
                    "price": _value | st.decimals(allow_nan=False, allow_infinity=False).map(str),
                    "compare_at_price": _value,
                    "available": _value,
                },
            ),
            max_size=4,
        )
        | _value,
    },
)
_woo_like = st.fixed_dictionaries(
    {},
    optional={
        "id": _value,
        "name": _value,
        "description": _value,
        "short_description": _value,
        "categories": st.lists(st.fixed_dictionaries({}, optional={"name": _value}) | _value, max_size=3) | _value,
        "tags": _value,
        "is_in_stock": _value,
        "prices": st.fixed_dictionaries(
            {},
            optional={
                "currency_code": _value,
                "currency_minor_unit": _value,
                "price": _value,
                "regular_price": _value,
                "price_range": _value,
            },
        )
        | _value,
        "attributes": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "name": _value,
                    "has_variations": _value,
                    "terms": st.lists(st.fixed_dictionaries({}, optional={"name": _value, "slug": _value}), max_size=3),
                },
            ),
            max_size=2,
        )
        | _value,
        "variations": st.lists(st.fixed_dictionaries({}, optional={"id": _value, "attributes": _value}), max_size=3)
        | _value,
    },
)


def _check_contract(product: NormalizedProduct) -> None:
    # round-trip through validation: every value is inside the contract
    again = NormalizedProduct.model_validate(product.model_dump(mode="json"))
    assert again.roast_level in (None, *ROAST_LEVELS)
    assert again.process in (None, *PROCESSES)
    assert again.species in (None, *SPECIES)
    for v in again.variants:
        assert v.grind in (None, *GRINDS)
        assert v.pack_count >= 1
        assert v.price_minor >= 0
    if again.altitude_m is not None:
        assert 300 <= again.altitude_m.min <= again.altitude_m.max <= 3000


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=_shopify_like | _json, currency=st.sampled_from(["INR", "JPY", "KWD", "usd"]))
def test_shopify_never_crashes(raw: Any, currency: str) -> None:
    res = normalize_product(raw, "shopify", currency)
    _check_contract(res.product)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=_woo_like | _json)
def test_woocommerce_never_crashes(raw: Any) -> None:
    res = normalize_product(raw, "woocommerce")
    _check_contract(res.product)


@settings(max_examples=300, deadline=None)
@given(amount=st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False, allow_infinity=False))
def test_price_round_trip_exact(amount: Decimal) -> None:
    text = f"{amount:.2f}"
    raw = {"id": 1, "title": "x", "variants": [{"id": 2, "price": text, "compare_at_price": None}]}
    (v,) = normalize_product(raw, "shopify", "INR").product.variants
    assert v.price_minor == int(Decimal(text) * 100)


@settings(max_examples=100, deadline=None)
@given(minor=st.integers(min_value=0, max_value=10**12), mu=st.integers(min_value=0, max_value=2))
def test_woocommerce_minor_units_rescaled_exactly(minor: int, mu: int) -> None:
    """A shop writing INR with 0, 1 or 2 decimals: the amount in paise is exact."""
    raw = {
        "id": 1,
        "name": "x",
        "prices": {"currency_code": "INR", "currency_minor_unit": mu, "price": str(minor)},
    }
    (v,) = normalize_product(raw, "woocommerce").product.variants
    assert v.price_minor == minor * 10 ** (2 - mu)


def test_huge_strings_degrade() -> None:
    big = "<p>" + "Washed coffee from Coorg. " * 50_000 + "</p>"
    res = normalize_product({"id": 1, "title": "T" * 100_000, "body_html": big, "variants": []}, "shopify", "INR")
    _check_contract(res.product)
