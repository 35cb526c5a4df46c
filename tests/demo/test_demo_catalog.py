"""Tests of the synthetic demo catalogs: determinism, real platform shapes, the traps they carry, mutations.

Serving them over HTTP is tested in test_demo_server.py.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

from coffee_scraper.demo.catalog import (
    make_shopify_catalog,
    make_shopify_products,
    make_woocommerce_catalog,
    make_woocommerce_products,
    mutate_prices,
    remove_products,
)
from coffee_scraper.demo.server import DemoShop

SHOPIFY_KEYS = {
    "id",
    "title",
    "handle",
    "body_html",
    "published_at",
    "created_at",
    "updated_at",
    "vendor",
    "product_type",
    "tags",
    "variants",
    "images",
    "options",
}
VARIANT_KEYS = {
    "id",
    "product_id",
    "title",
    "option1",
    "option2",
    "option3",
    "sku",
    "price",
    "compare_at_price",
    "available",
    "grams",
    "requires_shipping",
    "taxable",
    "featured_image",
    "position",
    "created_at",
    "updated_at",
}
WOO_KEYS = {
    "id",
    "name",
    "slug",
    "parent",
    "type",
    "variation",
    "permalink",
    "sku",
    "short_description",
    "description",
    "on_sale",
    "prices",
    "price_html",
    "average_rating",
    "review_count",
    "images",
    "categories",
    "tags",
    "attributes",
    "variations",
    "has_options",
    "is_purchasable",
    "is_in_stock",
    "is_on_backorder",
    "low_stock_remaining",
    "sold_individually",
    "quantity_limit",
    "add_to_cart",
}
PRICE_KEYS = {
    "currency_code",
    "currency_symbol",
    "currency_minor_unit",
    "price",
    "regular_price",
    "sale_price",
    "price_range",
    "currency_prefix",
    "currency_suffix",
    "currency_decimal_separator",
    "currency_thousand_separator",
}


def _net_grams(label: str) -> int | None:
    m = re.search(r"(\d+)\s*(kg|g|gms)\b", label)
    if not m:
        return None
    return int(m.group(1)) * (1000 if m.group(2) == "kg" else 1)


def test_same_seed_same_catalog_and_other_seed_differs() -> None:
    assert make_shopify_products(30, seed=3) == make_shopify_products(30, seed=3)
    assert make_shopify_products(30, seed=3) != make_shopify_products(30, seed=4)
    assert make_woocommerce_products(30, seed=3) == make_woocommerce_products(30, seed=3)
    assert make_woocommerce_products(30, seed=3) != make_woocommerce_products(30, seed=4)
    assert make_shopify_products(0, seed=1) == []


def test_shopify_products_have_the_real_shape() -> None:
    products = make_shopify_products(60, seed=11, id_base=9_000_000_000_000)
    assert len({p["id"] for p in products}) == 60
    assert len({p["handle"] for p in products}) == 60
    assert all(p["id"] >= 9_000_000_000_000 for p in products)
    variant_ids = [v["id"] for p in products for v in p["variants"]]
    assert len(set(variant_ids)) == len(variant_ids)
    for p in products:
        assert set(p) == SHOPIFY_KEYS
        assert isinstance(p["tags"], list) and all(isinstance(t, str) for t in p["tags"])
        assert 1 <= len(p["options"]) <= 3
        assert p["body_html"].startswith("<p>")
        for v in p["variants"]:
            assert set(v) == VARIANT_KEYS
            assert v["product_id"] == p["id"]
            assert re.fullmatch(r"\d+\.\d\d", v["price"])
            assert v["compare_at_price"] is None or re.fullmatch(r"\d+\.\d\d", v["compare_at_price"])
            values = [v[f"option{i}"] for i in range(1, 4) if v[f"option{i}"] is not None]
            assert v["title"] == " / ".join(values)
            for opt, value in zip(p["options"], values, strict=True):
                assert value in opt["values"]
    assert "currency" not in repr(products)  # like the real products.json


def test_shopify_grams_is_shipping_weight_not_net_weight() -> None:
    products = make_shopify_products(80, seed=5)
    checked = 0
    for p in products:
        for v in p["variants"]:
            net = _net_grams(v["title"])
            if net:
                checked += 1
                assert v["grams"] != net, (p["title"], v["title"], v["grams"])
    assert checked > 100


def test_catalog_mixes_coffee_and_other_items_with_indian_coffee_facts() -> None:
    products, facts = make_shopify_catalog(40, seed=7)
    assert set(facts) == {p["id"] for p in products}
    others = [f for f in facts.values() if not f.is_coffee]
    assert len(others) == 6  # 15 %
    assert {"french_press", "mug", "workshop", "gift_hamper"} <= {f.kind for f in others}
    text = " ".join(p["body_html"] for p in products)
    for word in ("Chikmagalur", "Coorg", "Araku Valley", "Nilgiris", "Washed", "Natural", "Honey"):
        assert word in text or word in " ".join(p["title"] for p in products), word
    tags = {t for p in products for t in p["tags"]}
    assert tags & {"light-roast", "medium-roast", "medium-dark-roast", "dark-roast"}
    coffees = [f for f in facts.values() if f.is_coffee]
    assert any(f.altitude_m for f in coffees) and any(f.altitude_m is None for f in coffees)
    assert {f.process for f in coffees} >= {"washed", "natural", "honey"}
    assert all(f.net_weights_g for f in coffees)


def test_woocommerce_products_have_the_store_api_shape() -> None:
    products, facts = make_woocommerce_catalog(60, seed=2)
    assert [p["id"] for p in products] == sorted((p["id"] for p in products), reverse=True)  # newest first
    assert set(facts) == {p["id"] for p in products}
    kinds = {p["type"] for p in products}
    assert kinds == {"simple", "variable"}
    for p in products:
        assert set(p) == WOO_KEYS
        assert set(p["prices"]) == PRICE_KEYS
        prices = p["prices"]
        assert prices["currency_code"] == "INR" and prices["currency_minor_unit"] == 2
        assert re.fullmatch(r"\d+", prices["price"])  # minor units as a string
        if prices["price_range"] is not None:
            assert int(prices["price_range"]["min_amount"]) < int(prices["price_range"]["max_amount"])
        slugs = {(a["name"], t["slug"]) for a in p["attributes"] for t in a["terms"]}
        for variation in p["variations"]:
            assert set(variation) == {"id", "attributes"}
            for attr in variation["attributes"]:
                assert (attr["name"], attr["value"]) in slugs
        if p["type"] == "variable":
            assert p["variations"] and all(a["has_variations"] for a in p["attributes"])
    assert any("&#8211;" in p["name"] for p in products)
    assert any(p["prices"]["price_range"] for p in products)
    assert any(p["on_sale"] for p in products)


def test_woocommerce_names_decode_to_plain_text() -> None:
    products = make_woocommerce_products(60, seed=2)
    named = [p for p in products if "&#8211;" in p["name"]]
    assert named and all("–" in html.unescape(p["name"]) for p in named)


def test_mutate_prices_changes_a_fraction_and_leaves_the_input_alone() -> None:
    products = make_shopify_products(40, seed=1)
    before = repr(products)
    changed = mutate_prices(products, fraction=0.25, seed=9)
    assert repr(products) == before
    diff = [(a, b) for a, b in zip(products, changed, strict=True) if a != b]
    assert len(diff) == 10
    for old, new in diff:
        assert [v["price"] for v in old["variants"]] != [v["price"] for v in new["variants"]]
        assert new["updated_at"] > old["updated_at"]
    assert mutate_prices(products, fraction=0.25, seed=9) == changed
    assert mutate_prices(products, fraction=0.0, seed=9) == products


def test_mutate_prices_on_woocommerce() -> None:
    products = make_woocommerce_products(20, seed=1)
    changed = mutate_prices(products, fraction=0.1, seed=1)
    diff = [(a, b) for a, b in zip(products, changed, strict=True) if a != b]
    assert len(diff) == 2
    for old, new in diff:
        assert new["prices"]["price"] != old["prices"]["price"]
        assert re.fullmatch(r"\d+", new["prices"]["price"])
    with pytest.raises(ValueError, match="fraction"):
        mutate_prices(products, fraction=1.5, seed=1)


def test_remove_products() -> None:
    products = make_woocommerce_products(10, seed=1)
    gone = {products[0]["id"], products[3]["id"]}
    kept = remove_products(products, gone)
    assert len(kept) == 8 and not gone & {p["id"] for p in kept}
    assert len(products) == 10


@pytest.mark.fixtures
def test_from_dump_loads_real_dumps(shared_fixtures: Path) -> None:
    stores = shared_fixtures / "stores"
    shopify = DemoShop.from_dump("A", stores / "rosette-shopify.json", "shopify")
    assert shopify.platform == "shopify" and shopify.products and "variants" in shopify.products[0]
    woo = DemoShop.from_dump("W", stores / "bababeans-woocommerce.json")
    assert woo.platform == "woocommerce" and "prices" in woo.products[0]
    with pytest.raises(ValueError, match="WooCommerce dump"):
        DemoShop.from_dump("X", stores / "rosette-shopify.json", "woocommerce")
