"""Variant weight, pack count, grind, price and stock; platform adapters and the public API."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from coffee_scraper.normalize import content_hash, normalize_product
from coffee_scraper.normalize.cli_support import iter_dump, normalize_dump_to_jsonl
from coffee_scraper.normalize.money import decimal_to_minor, rescale_minor
from coffee_scraper.normalize.variants import grind_of, parse_weight

from ._helpers import norm, shopify, shopify_variant


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("250g", (250, None)),
        ("1kg", (1000, None)),
        ("1 Kg", (1000, None)),
        ("100gms", (100, None)),
        ("8 oz", (227, None)),
        ("2 lb", (907, None)),
        ("2 x 250g", (250, 2)),
        ("200g x 4", (200, 4)),
        ("Pack of 10 Sachets (10g each)", (10, 10)),
        ("(Pack of 2)", (None, 2)),
        ("600ml", (None, None)),
        ("Bangalore - 27th September", (None, None)),
        ("8-pack", (None, 8)),
    ],
)
def test_parse_weight(text: str, expected: tuple[int | None, int | None]) -> None:
    assert parse_weight(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Whole Bean", "whole"),
        ("Whole beans", "whole"),
        ("Channi", "channi"),
        ("Coffee Filter", "south_indian_filter"),
        ("South Indian Filter", "south_indian_filter"),
        ("Moka Pot", "moka_pot"),
        ("Mokapot", "moka_pot"),
        ("mocha-pot", "moka_pot"),
        ("Inverted Aeropress / Pourover", "aeropress"),
        ("Cold Brew / Channi / French Press", "cold_brew"),
        ("French Press/ Cold Brew/ Channi", "french_press"),
        ("Home Espresso", "espresso"),
        ("Commercial Espresso", "espresso"),
        ("Picopresso", "espresso"),
        ("Chemex", "pour_over"),
        ("Drip Machine", "drip"),
        ("Turkish", "turkish"),
        ("aero-press", "aeropress"),
        ("Syphon", "other"),
        ("Filter", "filter"),
        ("Omni", "omni"),
        ("Something odd", "other"),
    ],
)
def test_grind_names(value: str, expected: str) -> None:
    assert grind_of(value) == expected


def test_shopify_variants_weight_grind_price_and_grams_ignored() -> None:
    raw = shopify(
        options=[
            ("Size", ["200", "1 kg"]),
            ("Grind size", ["Whole Beans", "Cold Brew / Channi / French Press"]),
        ],
        variants=[
            shopify_variant(1, "200", "Whole Beans", price="650.00", compare="700.00"),
            shopify_variant(2, "1 kg", "Cold Brew / Channi / French Press", price="2800.50", compare="2800.50"),
        ],
    )
    v1, v2 = norm(raw).product.variants
    assert (v1.weight_g, v1.grind, v1.price_minor, v1.compare_at_minor, v1.currency) == (
        200,
        "whole",
        65000,
        70000,
        "INR",
    )
    assert (v2.weight_g, v2.grind, v2.price_minor, v2.compare_at_minor) == (1000, "cold_brew", 280050, None)


def test_subscription_installments_are_pack_count() -> None:
    raw = shopify(
        title="Estate Subscription",
        product_type="Subscription",
        options=[("Installments", ["3", "6"]), ("Size", ["250g"])],
        variants=[shopify_variant(1, "3", "250g"), shopify_variant(2, "6", "250g")],
    )
    assert [(v.pack_count, v.weight_g) for v in norm(raw).product.variants] == [(3, 250), (6, 250)]


def test_shopify_needs_currency() -> None:
    with pytest.raises(ValueError, match="currency"):
        normalize_product(shopify(), "shopify", None)


def _woo(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": 7,
        "name": "ARAKU &#8211; VALLEY",
        "type": "variable",
        "short_description": "",
        "description": "<p>Region : Araku</p>",
        "categories": [{"name": "SINGLE ESTATE COFFEES"}],
        "tags": [],
        "is_in_stock": True,
        "prices": {
            "currency_code": "INR",
            "currency_minor_unit": 0,
            "price": "290",
            "regular_price": "300",
            "price_range": None,
        },
        "attributes": [
            {
                "name": "Grind Size",
                "has_variations": True,
                "terms": [
                    {"id": 1, "name": "Aero press", "slug": "aero-press"},
                    {"id": 2, "name": "Mocha pot", "slug": "mocha-pot"},
                ],
            }
        ],
        "variations": [
            {"id": 71, "attributes": [{"name": "Grind Size", "value": "aero-press"}]},
            {"id": 72, "attributes": [{"name": "Grind Size", "value": "extra-coarse"}]},
        ],
    }
    base.update(over)
    return base


def test_woocommerce_variations_minor_unit_rescale_and_slug_titles() -> None:
    p = norm(_woo(), "woocommerce", None).product
    assert p.title == "ARAKU – VALLEY"
    assert [(v.platform_variant_id, v.title, v.grind, v.price_minor, v.compare_at_minor) for v in p.variants] == [
        ("71", "Aero press", "aeropress", 29000, 30000),
        ("72", "extra-coarse", "other", 29000, 30000),
    ]


def test_woocommerce_simple_product_and_zero_price() -> None:
    raw = _woo(
        type="simple",
        variations=[],
        attributes=[],
        prices={"currency_code": "KWD", "currency_minor_unit": 3, "price": "0", "regular_price": "0"},
    )
    (v,) = norm(raw, "woocommerce", None).product.variants
    assert (v.platform_variant_id, v.title, v.price_minor, v.compare_at_minor, v.currency) == (
        "7",
        "Default Title",
        0,
        None,
        "KWD",
    )


@pytest.mark.parametrize(
    ("amount", "mu", "cur", "expected"),
    [
        ("29000", 2, "INR", 29000),
        ("290", 0, "INR", 29000),
        ("1800", 0, "JPY", 1800),
        ("4500", 3, "KWD", 4500),
        ("45", 1, "KWD", 4500),
        ("1490", 2, "EUR", 1490),
    ],
)
def test_rescale_minor(amount: str, mu: int, cur: str, expected: int) -> None:
    assert rescale_minor(amount, mu, cur) == expected


def test_decimal_prices_are_exact() -> None:
    assert decimal_to_minor("0.29", "INR") == 29
    assert decimal_to_minor("1234567.89", "INR") == 123456789
    assert decimal_to_minor("12.5", "KWD") == 12500
    assert decimal_to_minor("not a price", "INR") is None
    assert Decimal("19.99") * 100 == decimal_to_minor("19.99", "USD")


def test_content_hash_is_stable_and_order_independent() -> None:
    a = {"id": 1, "title": "x", "tags": ["a", "b"]}
    b = {"tags": ["a", "b"], "title": "x", "id": 1}
    assert content_hash(a) == content_hash(b)
    assert content_hash(a) != content_hash({**a, "title": "y"})
    assert len(content_hash(a)) == 64


def test_cli_support_jsonl_in_input_order() -> None:
    dump = {"products": [shopify(title="A"), {**shopify(title="B"), "id": 2}, "junk"]}
    assert [json.loads(line)["title"] for line in normalize_dump_to_jsonl(dump, "shopify", "INR")] == [
        "A",
        "B",
    ]
    assert len(list(iter_dump([_woo()], "woocommerce"))) == 1
    with pytest.raises(ValueError):
        list(normalize_dump_to_jsonl(dump, "shopify", None))
    with pytest.raises(ValueError):
        list(iter_dump(42, "shopify"))
