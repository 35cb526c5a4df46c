"""Normalizer speed: products/s and µs/product over the fixture catalogs (or the synthetic gold set).

Run: ``python -m bench.normalize_speed [--rounds N] [--profile]``. Accuracy is bench/accuracy.py.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import time
from pathlib import Path
from typing import Any

from coffee_scraper.normalize import normalize_product

REPO_ROOT = Path(__file__).resolve().parents[1]
STORES_DIR = REPO_ROOT.parent / "shared" / "fixtures" / "stores"
SYNTHETIC = REPO_ROOT / "tests" / "gold" / "synthetic.json"
STORES = {
    "bluetokai-shopify.json": ("shopify", "INR"),
    "rosette-shopify.json": ("shopify", "INR"),
    "bababeans-woocommerce.json": ("woocommerce", None),
}


def load_inputs() -> tuple[list[tuple[dict[str, Any], str, str | None]], str]:
    """(raw product, platform, currency) triples and a description of where they came from."""
    items: list[tuple[dict[str, Any], str, str | None]] = []
    if STORES_DIR.is_dir():
        for name, (platform, currency) in STORES.items():
            path = STORES_DIR / name
            if not path.exists():
                continue
            data = json.loads(path.read_text(encoding="utf-8"))
            products = data["products"] if isinstance(data, dict) else data
            items.extend((p, platform, currency) for p in products)
        if items:
            return items, f"fixture catalogs in {STORES_DIR}"
    data = json.loads(SYNTHETIC.read_text(encoding="utf-8"))
    items = [(p["raw"], p["platform"], p.get("currency")) for p in data["products"]]
    return items, f"synthetic gold set {SYNTHETIC} (fixtures absent)"


def run(items: list[tuple[dict[str, Any], str, str | None]], rounds: int) -> float:
    start = time.perf_counter()
    for _ in range(rounds):
        for raw, platform, currency in items:
            normalize_product(raw, platform, currency)  # type: ignore[arg-type]
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.normalize_speed", description=__doc__)
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--profile", action="store_true", help="print the top functions (cProfile)")
    args = ap.parse_args(argv)
    items, source = load_inputs()
    variants = sum(len(r.product.variants) for r in (normalize_product(*i) for i in items))  # type: ignore[arg-type]
    t0 = time.perf_counter()
    run(items, 1)  # first pass: vocabulary load and caches
    first = time.perf_counter() - t0
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        run(items, args.rounds)
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
        return 0
    elapsed = run(items, args.rounds)
    n = len(items) * args.rounds
    print(f"inputs: {len(items)} products ({variants} variants) from {source}")
    print(f"first pass (incl. vocabulary load): {first * 1000:.1f} ms")
    print(
        f"{n} normalizations in {elapsed:.3f} s: "
        f"{n / elapsed:,.0f} products/s, {elapsed / n * 1e6:.1f} µs/product"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
