"""Dashboard page render times with a seeded catalog: 5,000 coffees (50 roasters × 100, 3 variants each, price
history), 1,000 runs, served by uvicorn on 127.0.0.1 and fetched by a logged-in httpx client.

Each page is fetched 3 times to warm up, then ``--requests`` times; the table shows median and p95 wall time
per request (server render + loopback HTTP). Target: every page under 300 ms.
`python -m bench.pages [--coffees 5000 --requests 20 --postgres]`.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import re
import statistics
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert, select

from bench._common import pg_database
from coffee_scraper.accounts import service as accounts
from coffee_scraper.catalog import db
from coffee_scraper.catalog.models import Coffee, Price, QuarantinedProduct, RawArtifact, Roaster, ScrapeRun, Variant
from coffee_scraper.settings import Settings
from coffee_scraper.web import create_app
from tests.support import serve_in_thread

ROASTS = ["light", "light_medium", "medium", "medium_dark", "dark"]
PROCESSES = ["washed", "natural", "honey", "anaerobic", "monsooned", None]
REGIONS = ["Chikmagalur", "Coorg", "Araku Valley", "Nilgiris", "Wayanad", "Baba Budangiri"]
WEIGHTS = [(250, 1), (500, 1), (1000, 1), (250, 2)]


def seed(url: str, coffees: int, roasters: int = 50, runs_per_roaster: int = 20, seed_value: int = 7) -> None:
    """Bulk Core inserts: roasters, coffees, variants, prices (3 observations per variant), runs, one run's pages."""
    rng = random.Random(seed_value)
    engine = db.make_engine(url)
    now = datetime.now(UTC)
    per_roaster = max(1, coffees // roasters)
    with engine.begin() as conn:
        conn.execute(
            insert(Roaster),
            [
                {
                    "name": f"Roaster {i:03d}",
                    "base_url": f"https://roaster-{i:03d}.example",
                    "platform": "shopify" if i % 3 else "woocommerce",
                    "currency": "INR",
                    "active": i % 17 != 0,
                    "paused_reason": None if i % 17 else "moving shop",
                    "circuit_state": "open" if i % 23 == 0 else "closed",
                    "consecutive_failures": 0,
                    "consecutive_failed_runs": 1 if i % 23 == 0 else 0,
                    "fetch_state": {},
                    "robots_allowed": True,
                    "robots_status": 200,
                    "robots_fetched_at": now,
                    "last_run_at": now - timedelta(hours=i % 48),
                    "last_success_at": now - timedelta(hours=i % 48),
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(roasters)
            ],
        )
        roaster_ids = list(conn.scalars(select(Roaster.id).order_by(Roaster.id)))
        run_rows = []
        for rid in roaster_ids:
            for j in range(runs_per_roaster):
                started = now - timedelta(days=j * 1.5, hours=rng.random() * 5)
                status = rng.choices(["ok", "partial", "fail"], weights=[85, 10, 5])[0]
                run_rows.append(
                    {
                        "roaster_id": rid,
                        "mode": "full" if j % 4 == 0 else "price",
                        "status": status,
                        "platform": "shopify",
                        "started_at": started,
                        "finished_at": started + timedelta(seconds=rng.uniform(5, 120)),
                        "pages_fetched": 1,
                        "products_seen": per_roaster,
                        "products_quarantined": 1 if status == "partial" else 0,
                        "error_summary": None if status == "ok" else "http_error: 503 from the shop (+2 more)",
                        "errors": [] if status == "ok" else [{"kind": "http_error", "message": "503", "hint": ""}] * 3,
                    }
                )
        conn.execute(insert(ScrapeRun), run_rows)
        first_run = conn.scalar(select(ScrapeRun.id).order_by(ScrapeRun.id))
        conn.execute(
            insert(RawArtifact),
            [
                {
                    "run_id": first_run,
                    "roaster_id": roaster_ids[0],
                    "kind": "products",
                    "page": p,
                    "url": f"https://roaster-000.example/products.json?limit=250&page={p}",
                    "status": 200,
                    "headers": {},
                    "body_gz": b"",
                    "sha256": "0" * 64,
                    "size_bytes": 90_000,
                    "elapsed_ms": 120.0,
                    "from_cache": False,
                    "fetched_at": now,
                }
                for p in range(1, 21)
            ],
        )
        conn.execute(
            insert(QuarantinedProduct),
            [
                {
                    "run_id": first_run,
                    "roaster_id": roaster_ids[0],
                    "platform_product_id": str(q),
                    "reason": "product has no variants",
                    "raw": {"id": q, "title": f"Broken {q}"},
                    "created_at": now,
                }
                for q in range(10)
            ],
        )
        coffee_rows = []
        for rid in roaster_ids:
            for k in range(per_roaster):
                name = f"{rng.choice(REGIONS)} Estate {k} {rng.choice(['AA', 'PB', 'Reserve', 'Lot'])}"
                coffee_rows.append(
                    {
                        "roaster_id": rid,
                        "platform": "shopify",
                        "platform_product_id": f"{rid}-{k}",
                        "title": name,
                        "is_coffee": True,
                        "name_clean": name,
                        "roast_level": rng.choice(ROASTS),
                        "process": rng.choice(PROCESSES),
                        "species": "arabica",
                        "country": "IN",
                        "region": rng.choice(REGIONS),
                        "varieties": ["SLN 9"],
                        "tasting_notes": ["chocolate", "citrus"],
                        "decaf": False,
                        "evidence": [
                            {"attribute": "roast_level", "source": "title", "text": "medium roast"},
                            {"attribute": "process", "source": "body_html", "text": "washed"},
                        ],
                        "review_flags": [],
                        "content_hash": f"{rid}-{k}",
                        "status": "active",
                        "first_seen_at": now - timedelta(days=60),
                        "last_seen_at": now,
                        "updated_at": now,
                    }
                )
        conn.execute(insert(Coffee), coffee_rows)
        coffee_ids = list(conn.scalars(select(Coffee.id).order_by(Coffee.id)))
        variant_rows = []
        for cid in coffee_ids:
            base = rng.randint(300, 1500) * 100
            for position, (grams, packs) in enumerate(rng.sample(WEIGHTS, 3)):
                variant_rows.append(
                    {
                        "coffee_id": cid,
                        "platform_variant_id": f"{cid}-{position}",
                        "position": position,
                        "title": f"{grams} g" + (f" × {packs}" if packs > 1 else ""),
                        "weight_g": grams,
                        "pack_count": packs,
                        "grind": "whole_bean",
                        "currency": "INR",
                        "price_minor": base * grams * packs // 250,
                        "in_stock": rng.random() > 0.15,
                        "status": "active",
                        "first_seen_at": now - timedelta(days=60),
                        "last_seen_at": now,
                    }
                )
        conn.execute(insert(Variant), variant_rows)
        variants = list(conn.execute(select(Variant.id, Variant.price_minor)))
        price_rows = []
        for vid, price in variants:
            for step in range(3):
                price_rows.append(
                    {
                        "variant_id": vid,
                        "observed_at": now - timedelta(days=60 - step * 25),
                        "currency": "INR",
                        "price_minor": int(price * (0.9 + 0.05 * step)),
                        "in_stock": True,
                    }
                )
        for chunk in range(0, len(price_rows), 20_000):
            conn.execute(insert(Price), price_rows[chunk : chunk + 20_000])
    with db.session_scope(db.session_factory(engine)) as session:
        accounts.create_user(session, "bench", "bench-password-1", "admin", now=now)
    engine.dispose()


@contextlib.contextmanager
def database(postgres: bool) -> Iterator[str | None]:
    if postgres:
        with pg_database() as url:
            yield url
        return
    with tempfile.TemporaryDirectory(prefix="coffee-bench-pages-") as tmp:
        yield f"sqlite:///{Path(tmp) / 'catalog.db'}"


def login(base: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30, headers={"accept": "text/html"})
    form = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token
    answer = client.post("/login", data={"username": "bench", "password": "bench-password-1",
                                          "csrf_token": token.group(1)})  # fmt: skip
    assert answer.status_code == 303, answer.text[:300]
    return client


def measure(client: httpx.Client, path: str, n: int, headers: dict[str, str] | None = None) -> tuple[float, float, int]:
    for _ in range(3):
        client.get(path, headers=headers)
    times = []
    size = 0
    for _ in range(n):
        started = time.perf_counter()
        response = client.get(path, headers=headers)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code, response.text[:300])
        size = len(response.content)
    times.sort()
    return statistics.median(times), times[max(0, int(len(times) * 0.95) - 1)], size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coffees", type=int, default=5000)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL on 127.0.0.1:5432 instead of SQLite")
    args = parser.parse_args()
    with database(args.postgres) as url:
        if url is None:
            raise SystemExit("no PostgreSQL answers on 127.0.0.1:5432")
        db.upgrade(url)
        started = time.perf_counter()
        seed(url, args.coffees)
        print(f"seeded {args.coffees} coffees in {time.perf_counter() - started:.1f} s")
        with tempfile.TemporaryDirectory(prefix="coffee-bench-logs-") as logs:
            settings = Settings(database_url=url, log_dir=Path(logs), scheduler_mode="off")
            with serve_in_thread(create_app(settings)) as port:
                client = login(f"http://127.0.0.1:{port}")
                ids: dict[str, Any] = client.get("/api/v1/coffees", params={"limit": 1, "offset": 2500}).json()
                coffee_id = ids["items"][0]["id"]
                run_id = client.get("/api/v1/runs", params={"limit": 1, "offset": 999}).json()[0]["id"]
                pages = [
                    ("overview", "/", None),
                    ("catalog, first page", "/catalog", None),
                    ("catalog, search", "/catalog?q=estate+1", None),
                    ("catalog, filters + per-250 g sort",
                     "/catalog?roast=medium&process=washed&max250=900&sort=price_250", None),
                    ("catalog, page 50", "/catalog?page=50", None),
                    ("catalog, htmx fragment", "/catalog?roast=light", {"hx-request": "true"}),
                    ("coffee page (chart)", f"/catalog/{coffee_id}", None),
                    ("scraping (50 roasters)", "/scraping", None),
                    ("roaster page", "/scraping/roasters/1", None),
                    ("run page (20 pages, 10 quarantined)", f"/scraping/runs/{run_id}", None),
                    ("account", "/account", None),
                    ("users (admin)", "/admin/users", None),
                    ("API: coffees, 50", "/api/v1/coffees", None),
                    ("API: roasters", "/api/v1/roasters", None),
                ]  # fmt: skip
                print(f"| page | median ms | p95 ms | KB |  ({'PostgreSQL' if args.postgres else 'SQLite'})")
                print("|---|---|---|---|")
                for name, path, headers in pages:
                    median, p95, size = measure(client, path, args.requests, headers)
                    print(f"| {name} | {median:.0f} | {p95:.0f} | {size / 1024:.0f} |")
                client.close()


if __name__ == "__main__":
    main()
