"""Crawl wall time for many demo shops against the ideal politeness bound.

50 demo Shopify shops × 3 pages at 50 ms latency and 0.25 s delay (defaults). The bound is
max over shops of requests × (latency + delay); we report it for the 3 catalog pages and for all requests
(robots.txt included). `python -m bench.crawl [--shops 50 --pages 3 --latency 0.05 --delay 0.25]`.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from coffee_scraper.catalog import db, service
from coffee_scraper.demo.catalog import make_shopify_products
from coffee_scraper.demo.server import DemoServer, DemoShop
from coffee_scraper.pipeline.run import run_many
from coffee_scraper.settings import Settings

from ._common import pg_database


def serve(shops: list[DemoShop], conn: Connection) -> None:
    """Child process: serve the shops (own interpreter lock), report URLs, then request counts on demand."""
    with DemoServer(shops) as server:
        conn.send({s.name: server.url(s.name) for s in shops})
        conn.recv()  # "count"
        conn.send(max(len(server.requests(s.name)) for s in shops))
        conn.recv()  # "stop"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--shops", type=int, default=50)
    p.add_argument("--pages", type=int, default=3)
    p.add_argument("--per-page", type=int, default=20)
    p.add_argument("--latency", type=float, default=0.05)
    p.add_argument("--delay", type=float, default=0.25)
    p.add_argument("--postgres", action="store_true", help="store into a fresh PostgreSQL database (127.0.0.1:5432)")
    a = p.parse_args()
    per_shop = a.per_page * (a.pages - 1) + a.per_page // 2  # last page short → exactly `pages` catalog pages
    shops = [
        DemoShop(
            name=f"s{i}",
            platform="shopify",
            products=make_shopify_products(per_shop, seed=i, id_base=i * 10**6),
            latency_s=a.latency,
        )
        for i in range(a.shops)
    ]
    parent, child = mp.Pipe()
    server = mp.get_context("fork").Process(target=serve, args=(shops, child), daemon=True)
    server.start()
    urls: dict[str, Any] = parent.recv()
    with tempfile.TemporaryDirectory() as tmp, pg_database() as pg:
        url = pg if a.postgres and pg else f"sqlite:///{Path(tmp) / 'crawl.db'}"
        settings = Settings(
            database_url=url,
            allow_private_addresses=True,
            request_delay_s=a.delay,
            request_jitter_s=0.0,
            shopify_page_limit=a.per_page,
            global_concurrency=a.shops,
        )
        db.upgrade(url)
        engine = db.make_engine(url)
        factory = db.session_factory(engine)
        with db.session_scope(factory) as session:
            for s in shops:
                service.add_roaster(session, s.name, urls[s.name], platform="shopify", currency="INR")
        t0 = time.perf_counter()
        reports = asyncio.run(run_many([s.name for s in shops], "full", settings=settings, factory=factory))
        wall = time.perf_counter() - t0
        parent.send("count")
        requests = parent.recv()
        parent.send("stop")
        server.join(5)
        engine.dispose()
    ok = sum(r.status == "ok" for r in reports)
    pages_bound = a.pages * (a.latency + a.delay)
    req_bound = requests * (a.latency + a.delay)
    print(f"database={url.split(':', 1)[0]}")
    print(f"shops={a.shops} ok={ok} pages/shop={a.pages} requests/shop={requests} wall={wall:.2f}s")
    print(f"bound (catalog pages) = {pages_bound:.2f}s → ratio {wall / pages_bound:.2f}×")
    print(f"bound (all requests incl. robots.txt) = {req_bound:.2f}s → ratio {wall / req_bound:.2f}×")


if __name__ == "__main__":
    main()
