"""`coffee-scraper normalize`: the public contract (normalized-product.md) on real dumps, via the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PRODUCT_FIELDS = {
    "platform", "platform_product_id", "title", "is_coffee", "name_clean", "roast_level", "process", "species",
    "chicory_pct", "country", "region", "estate", "altitude_m", "varieties", "tasting_notes", "decaf", "variants",
}  # fmt: skip
VARIANT_FIELDS = {
    "platform_variant_id", "title", "weight_g", "pack_count", "grind", "price_minor", "compare_at_minor",
    "currency", "in_stock",
}  # fmt: skip
CLI = [sys.executable, "-m", "coffee_scraper.cli", "normalize"]


@pytest.mark.parametrize(
    ("store", "platform", "extra"),
    [
        ("bluetokai-shopify.json", "shopify", ["--currency", "INR"]),
        ("rosette-shopify.json", "shopify", ["--currency", "INR"]),
        ("bababeans-woocommerce.json", "woocommerce", []),
    ],
)
def test_normalize_writes_one_contract_record_per_product_in_order(
    shared_fixtures: Path, store: str, platform: str, extra: list[str]
) -> None:
    path = shared_fixtures / "stores" / store
    raw = json.loads(path.read_text())
    products = raw["products"] if isinstance(raw, dict) else raw
    done = subprocess.run([*CLI, "--platform", platform, *extra, str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == len(products)
    for line, product in zip(lines, products, strict=True):
        record = json.loads(line)
        assert set(record) == PRODUCT_FIELDS
        assert record["platform_product_id"] == str(product["id"])
        assert [v["platform_variant_id"] for v in record["variants"]] == [
            str(v["id"]) for v in (product.get("variants") or product.get("variations") or [])
        ] or product.get("type") == "simple"
        for variant in record["variants"]:
            assert set(variant) == VARIANT_FIELDS
            assert variant["currency"] == "INR" and isinstance(variant["price_minor"], int)


def test_normalize_reads_stdin_and_needs_currency_for_shopify(tmp_path: Path) -> None:
    body = json.dumps({"products": []})
    missing = subprocess.run([*CLI, "--platform", "shopify", "-"], input=body, capture_output=True, text=True)
    assert missing.returncode == 2 and "--currency" in missing.stderr
    ok = subprocess.run([*CLI, "--platform", "shopify", "--currency", "INR", "-"], input=body, capture_output=True,
                        text=True)  # fmt: skip
    assert ok.returncode == 0 and ok.stdout == ""
    bad = subprocess.run([*CLI, "--platform", "shopify", "--currency", "INR", "-"], input="{not json",
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2 and "not JSON" in bad.stderr and "Traceback" not in bad.stderr
