"""Real storefront dumps (../shared/fixtures): every product normalizes; a few known facts hold."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from coffee_scraper.normalize import normalize_product

from ._helpers import FIXTURES

STORES = FIXTURES / "stores"
pytestmark = pytest.mark.fixtures


def _load(name: str) -> list[dict[str, Any]]:
    path = STORES / name
    if not path.exists():
        pytest.skip(f"storefront fixture {path} absent (needs ../shared/fixtures beside the repo)")
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return data["products"] if isinstance(data, dict) else data


@pytest.mark.parametrize(
    ("name", "platform"),
    [
        ("bluetokai-shopify.json", "shopify"),
        ("rosette-shopify.json", "shopify"),
        ("bababeans-woocommerce.json", "woocommerce"),
    ],
)
def test_every_fixture_product_normalizes(name: str, platform: str) -> None:
    products = _load(name)
    for raw in products:
        res = normalize_product(raw, platform, "INR")  # type: ignore[arg-type]
        n_raw = max(1, len(raw.get("variations") or [])) if platform == "woocommerce" else len(raw["variants"])
        assert len(res.product.variants) == n_raw
        assert all(v.currency == "INR" for v in res.product.variants)


def test_known_facts_bluetokai() -> None:
    by_title = {p["title"]: p for p in _load("bluetokai-shopify.json")}
    silver = normalize_product(by_title["Silver Oak Cafe Blend 75g"], "shopify", "INR").product
    assert (silver.name_clean, silver.variants[0].weight_g) == ("Silver Oak Cafe Blend", 75)  # grams is 250
    press = normalize_product(by_title["French Press 600 ml"], "shopify", "INR").product
    assert press.is_coffee is False


def test_known_facts_woocommerce() -> None:
    by_id = {p["id"]: p for p in _load("bababeans-woocommerce.json")}
    hustler = normalize_product(by_id[3382], "woocommerce").product
    assert (hustler.roast_level, hustler.species, hustler.region) == ("dark", "blend", "Coorg")
    assert hustler.altitude_m is not None and (hustler.altitude_m.min, hustler.altitude_m.max) == (853, 1097)
    sub = normalize_product(by_id[1957], "woocommerce").product
    assert len(sub.variants) == 294 and sub.variants[0].pack_count == 24
