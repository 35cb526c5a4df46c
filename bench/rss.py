"""Peak RSS of a full scrape of one 20,000-product shop (pages streamed and committed one by one).

The demo shop runs in this process; the scrape runs as a child `coffee-scraper scrape` process whose peak
RSS is read with getrusage(RUSAGE_CHILDREN). `python -m bench.rss [--products 20000]`.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from coffee_scraper.catalog import db, service
from coffee_scraper.demo.catalog import make_shopify_products
from coffee_scraper.demo.server import DemoServer, DemoShop


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--products", type=int, default=20000)
    a = p.parse_args()
    shop = DemoShop(name="big", platform="shopify", products=make_shopify_products(a.products, seed=3))
    with tempfile.TemporaryDirectory() as tmp, DemoServer([shop]) as server:
        url = f"sqlite:///{Path(tmp) / 'rss.db'}"
        db.upgrade(url)
        engine = db.make_engine(url)
        with db.session_scope(db.session_factory(engine)) as session:
            service.add_roaster(session, "big", server.url("big"), platform="shopify", currency="INR")
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
        proc = subprocess.run(
            [sys.executable, "-m", "coffee_scraper.cli", "scrape", "--json"],
            env=env,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            print(proc.stdout[-2000:], proc.stderr[-2000:])
            raise SystemExit(proc.returncode)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"products={a.products} wall={wall:.1f}s peak RSS of the scrape process={peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
