"""Catalog throughput: products/s through validate + normalize + store, on SQLite and PostgreSQL.

Runs the pipeline's page processor on synthetic Shopify pages of 250 products (no HTTP), first run into an
empty catalog (inserts), second run with every price changed (updates + price rows). `python -m bench.throughput`.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from coffee_scraper.catalog import db, service
from coffee_scraper.demo.catalog import make_shopify_products, mutate_prices
from coffee_scraper.pipeline.run import PageProcessor
from coffee_scraper.settings import Settings

from ._common import Timer, pg_database


def one(url: str, n: int) -> tuple[float, float]:
    db.upgrade(url)
    engine = db.make_engine(url)
    factory = db.session_factory(engine)
    settings = Settings(database_url=url)
    with db.session_scope(factory) as session:
        roaster = service.add_roaster(session, "bench", "https://bench.example", platform="shopify", currency="INR")
        rid = roaster.id
    products = make_shopify_products(n, seed=1)
    rates = []
    for attempt in range(2):
        with db.session_scope(factory) as session:
            run = service.start_run(session, service.get_roaster(session, "bench"), "full", service.utcnow())
            run_id = run.id
        proc = PageProcessor(
            factory,
            settings,
            roaster_id=rid,
            run_id=run_id,
            platform="shopify",
            currency="INR",
            mode="full",
            now=service.utcnow,
        )
        with Timer() as t:
            for start in range(0, n, 250):
                proc.process(start // 250 + 1, products[start : start + 250], lambda _s: None)
        rates.append(n / t.seconds)
        products = mutate_prices(products, fraction=1.0, seed=attempt + 2)
    engine.dispose()
    return rates[0], rates[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,20000")
    args = parser.parse_args()
    print("| backend | products | insert run (products/s) | all-prices-changed run (products/s) |")
    print("|---|---|---|---|")
    for n in (int(x) for x in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            ins, upd = one(f"sqlite:///{Path(tmp) / 'b.db'}", n)
            print(f"| SQLite | {n:,} | {ins:,.0f} | {upd:,.0f} |", flush=True)
        with pg_database() as pg:
            if pg is None:
                print(f"| PostgreSQL | {n:,} | (no server on 127.0.0.1:5432) | |")
                continue
            ins, upd = one(pg, n)
            print(f"| PostgreSQL | {n:,} | {ins:,.0f} | {upd:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
