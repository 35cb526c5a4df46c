"""Peak RSS of a full scrape of one 20,000-product shop (pages streamed and committed one by one).

The demo shop runs in its own process (its catalog is built there); the scrape runs as a child
`coffee-scraper scrape` process whose own peak RSS is read with os.wait4. (Measuring with RUSAGE_CHILDREN
from a parent that holds the catalog would count the parent's memory, copied into the child before exec.)
`python -m bench.rss [--products 20000]`.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

from coffee_scraper.catalog import db, service
from coffee_scraper.demo.catalog import make_shopify_products
from coffee_scraper.demo.server import DemoServer, DemoShop


def serve(count: int, conn: Connection) -> None:
    with DemoServer([DemoShop(name="big", platform="shopify", products=make_shopify_products(count, seed=3))]) as s:
        conn.send(s.url("big"))
        conn.recv()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--products", type=int, default=20000)
    a = p.parse_args()
    parent, child = mp.Pipe()
    server = mp.get_context("fork").Process(target=serve, args=(a.products, child), daemon=True)
    server.start()
    shop_url = parent.recv()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'rss.db'}"
        db.upgrade(url)
        engine = db.make_engine(url)
        with db.session_scope(db.session_factory(engine)) as session:
            service.add_roaster(session, "big", shop_url, platform="shopify", currency="INR")
        engine.dispose()
        env = {
            **os.environ,
            "COFFEE_SCRAPER_DATABASE_URL": url,
            "COFFEE_SCRAPER_ALLOW_PRIVATE_ADDRESSES": "true",
            "COFFEE_SCRAPER_REQUEST_DELAY_S": "0",
            "COFFEE_SCRAPER_REQUEST_JITTER_S": "0",
            "COFFEE_SCRAPER_LOG_DIR": str(Path(tmp) / "logs"),
        }
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "coffee_scraper.cli", "scrape", "--json"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    parent.send("stop")
    server.join(5)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"scrape failed with status {status}")
    print(f"products={a.products} wall={wall:.1f}s peak RSS of the scrape process={usage.ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
