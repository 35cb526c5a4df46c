"""Cost of the Prometheus instrumentation on the catalog's hot path: products/s with the hooks on vs. off.

Runs the pipeline's page processor (as bench/throughput.py does: synthetic Shopify pages of 250 products,
SQLite, no HTTP) into a fresh catalog, alternating two variants: the real hooks (``instrument.storage_operation``
around each page transaction, ``instrument.record_page`` after it) and the same run with both replaced by no-ops
inside this benchmark (the code has no switch to turn metrics off). Median of 5 runs each; also the cost of one
page's hook calls measured directly. `python -m bench.metrics_overhead [--products 5000 --repeats 5]`.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from coffee_scraper.catalog import db, service
from coffee_scraper.demo.catalog import make_shopify_products
from coffee_scraper.observability import instrument
from coffee_scraper.pipeline.run import PageProcessor
from coffee_scraper.settings import Settings

from ._common import Timer

PAGE = 250


@contextlib.contextmanager
def _no_storage_operation(_operation: str) -> Iterator[None]:
    yield


def _no_record_page(_roaster: str, **_counts: Any) -> None:
    return None


@contextlib.contextmanager
def hooks(enabled: bool) -> Iterator[None]:
    """Real instrumentation, or no-op stand-ins for this benchmark only (restored afterwards)."""
    saved = instrument.storage_operation, instrument.record_page
    if not enabled:
        instrument.storage_operation = _no_storage_operation  # type: ignore[assignment]
        instrument.record_page = _no_record_page  # type: ignore[assignment]
    try:
        yield
    finally:
        instrument.storage_operation, instrument.record_page = saved  # type: ignore[assignment]


def one_run(products: list[Any], enabled: bool) -> float:
    """Products/s of one insert run into a fresh SQLite catalog."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'b.db'}"
        db.upgrade(url)
        engine = db.make_engine(url)
        factory = db.session_factory(engine)
        with db.session_scope(factory) as session:
            roaster = service.add_roaster(session, "bench", "https://bench.example", platform="shopify", currency="INR")
            run = service.start_run(session, roaster, "full", service.utcnow())
            rid, run_id = roaster.id, run.id
        proc = PageProcessor(
            factory,
            Settings(database_url=url),
            roaster_id=rid,
            run_id=run_id,
            platform="shopify",
            currency="INR",
            mode="full",
            now=service.utcnow,
        )
        with hooks(enabled), Timer() as t:
            for start in range(0, len(products), PAGE):
                proc.process(start // PAGE + 1, products[start : start + PAGE], lambda _s: None)
        engine.dispose()
    return len(products) / t.seconds


def hook_cost_us(n: int = 20_000) -> float:
    """Microseconds spent in one page's hooks (storage_operation + record_page) on the real registry."""
    started = time.perf_counter()
    for _ in range(n):
        with instrument.storage_operation("page_commit"):
            pass
        instrument.record_page("bench", stored=200, unchanged=40, quarantined=10, invalid=5, reviews=3)
    return (time.perf_counter() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--products", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    products = make_shopify_products(args.products, seed=1)
    one_run(products[:PAGE], True)  # warm-up: imports, vocabularies, SQLite
    rates: dict[bool, list[float]] = {True: [], False: []}
    for i in range(args.repeats):
        for enabled in (True, False) if i % 2 == 0 else (False, True):  # alternate to cancel drift
            rates[enabled].append(one_run(products, enabled))
    on, off = statistics.median(rates[True]), statistics.median(rates[False])
    overhead = (off - on) / off * 100
    per_page_us = hook_cost_us()
    page_s = PAGE / on
    print(f"products: {args.products:,} per run, pages of {PAGE}, SQLite, median of {args.repeats}")
    print(f"hooks on : {on:,.0f} products/s  (runs: {', '.join(f'{r:,.0f}' for r in rates[True])})")
    print(f"hooks off: {off:,.0f} products/s  (runs: {', '.join(f'{r:,.0f}' for r in rates[False])})")
    print(f"overhead (median vs median): {overhead:+.2f} %")
    print(
        f"hook calls per page: {per_page_us:.1f} µs = {per_page_us / 1e6 / page_s * 100:.4f} % of a page's "
        f"{page_s * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
