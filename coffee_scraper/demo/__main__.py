"""``python -m coffee_scraper.demo [COUNT] [PRODUCTS]``: serve demo shops in the foreground until Ctrl-C.

Not the ``coffee-scraper demo`` command (that lives in ``cli.py``); this runs the shops in their own process,
so a benchmark's client does not share the server's interpreter lock.
"""

from __future__ import annotations

import sys
import time

from coffee_scraper.demo.server import DemoServer, demo_shops


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        count = int(args[0]) if args else 3
        per_shop = int(args[1]) if len(args) > 1 else 40
    except ValueError:
        print(
            "usage: python -m coffee_scraper.demo [COUNT] [PRODUCTS_PER_SHOP]  (both integers)",
            file=sys.stderr,
        )
        return 2
    shops = demo_shops(count, products_per_shop=per_shop)
    with DemoServer(shops) as server:
        for shop in shops:
            print(f"{shop.platform:<12} {server.url(shop.name)}  {shop.name}", flush=True)
        print(f"{len(shops)} shops up in {server.startup_seconds * 1000:.0f} ms; Ctrl-C to stop", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
