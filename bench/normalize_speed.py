"""Normalizer speed: products/s, µs/product and variants/s over the fixture catalogs (or the synthetic gold set).

Run: ``python -m bench.normalize_speed [--repeats N] [--rounds N] [--profile]``. Accuracy is bench/accuracy.py.

Method: one warm-up pass (vocabulary load, first fill of the memo caches), then ``--repeats`` timed runs
of ``--rounds`` passes each over every input; the reported figure is the median run (min and max beside
it). Two modes are timed:

* **steady** — memo caches stay warm between passes, as in a long-running scraper that has seen these
  option values and prices before. This is the headline number.
* **cold caches** — every memo cache of the normalizer is cleared before each pass, so a pass costs what
  one never-seen catalogue costs (only repetition *within* a catalogue helps). Shown for honesty: a
  cache keyed on whole inputs would inflate the steady number but not this one.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from coffee_scraper.normalize import clear_caches, normalize_product

REPO_ROOT = Path(__file__).resolve().parents[1]
STORES_DIR = REPO_ROOT.parent / "shared" / "fixtures" / "stores"
SYNTHETIC = REPO_ROOT / "tests" / "gold" / "synthetic.json"
STORES = {
    "bluetokai-shopify.json": ("shopify", "INR"),
    "rosette-shopify.json": ("shopify", "INR"),
    "bababeans-woocommerce.json": ("woocommerce", None),
}

Item = tuple[dict[str, Any], str, str | None]


def load_inputs() -> tuple[list[Item], str]:
    """(raw product, platform, currency) triples and a description of where they came from."""
    items: list[Item] = []
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


def run(items: list[Item], rounds: int, before_pass: Callable[[], None] | None = None) -> float:
    """Seconds spent normalizing every item ``rounds`` times (``before_pass`` runs untimed)."""
    elapsed = 0.0
    for _ in range(rounds):
        if before_pass is not None:
            before_pass()
        start = time.perf_counter()
        for raw, platform, currency in items:
            normalize_product(raw, platform, currency)  # type: ignore[arg-type]
        elapsed += time.perf_counter() - start
    return elapsed


def _report(label: str, runs: list[float], products: int, variants: int) -> None:
    """Median products/s, µs/product and variants/s over timed runs (each run: ``products`` products)."""
    med = statistics.median(runs)
    print(
        f"{label:>12}: {products / med:8,.0f} products/s  {med / products * 1e6:6.1f} µs/product  "
        f"{variants / med:9,.0f} variants/s   (median of {len(runs)} runs; "
        f"products/s range {products / max(runs):,.0f}–{products / min(runs):,.0f})"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.normalize_speed", description=__doc__)
    ap.add_argument("--repeats", type=int, default=7, help="timed runs; the median is reported")
    ap.add_argument("--rounds", type=int, default=10, help="passes over every input in one timed run")
    ap.add_argument("--profile", action="store_true", help="print the top functions (cProfile)")
    args = ap.parse_args(argv)
    items, source = load_inputs()
    variants = sum(len(r.product.variants) for r in (normalize_product(*i) for i in items))  # type: ignore[arg-type]
    clear_caches()
    t0 = time.perf_counter()
    run(items, 1)  # warm-up: vocabulary already loaded above, memo caches filled here
    first = time.perf_counter() - t0
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        run(items, args.rounds)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return 0
    steady = [run(items, args.rounds) for _ in range(args.repeats)]
    cold = [run(items, args.rounds, clear_caches) for _ in range(args.repeats)]
    n_products = len(items) * args.rounds
    n_variants = variants * args.rounds
    print(f"inputs: {len(items)} products ({variants} variants) from {source}")
    print(f"first pass after clearing the memo caches: {first * 1000:.1f} ms")
    print(f"{args.repeats} runs × {args.rounds} passes × {len(items)} products per mode")
    _report("steady", steady, n_products, n_variants)
    _report("cold caches", cold, n_products, n_variants)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
