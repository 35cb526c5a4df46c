"""Dashboard page render times with a seeded catalog: 5,000 coffees (50 roasters × 100, 3 variants each, price
history), 1,000 runs, 1,000 incidents (alerts, timelines, notifications), served by uvicorn on 127.0.0.1 and
fetched by a logged-in httpx client.

Each page is fetched 3 times to warm up, then ``--requests`` times; the table shows median and p95 wall time
per request (server render + loopback HTTP). Target: every page under 300 ms.
`python -m bench.pages [--coffees 5000 --incidents 1000 --requests 20 --postgres]`.
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
from coffee_scraper.incidents.models import Incident, IncidentAlert, IncidentEvent
from coffee_scraper.incidents.notify.models import NotificationOutbox
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


def seed_incidents(url: str, count: int, seed_value: int = 8) -> tuple[str, str]:
    """``count`` incidents over the last 20 weeks (5% open), each with 2 alerts and ~10 timeline entries; one with a
    60-entry timeline, 3 alerts, 12 notifications and a diagnostics report. Returns (typical id, big id)."""
    rng = random.Random(seed_value)
    now = datetime.now(UTC)
    engine = db.make_engine(url)
    incidents, alerts, events, per_day = [], [], [], {}
    for n in range(count):
        opened = now - timedelta(hours=2 + rng.random() * 24 * 7 * 20)
        day = opened.strftime("%Y%m%d")
        per_day[day] = per_day.get(day, 0) + 1
        incident_id = f"INC-{day}-{per_day[day]:03d}"
        severity = rng.choices(["P0", "P1", "P2", "P3"], weights=[5, 20, 45, 30])[0]
        is_open = n % 20 == 0
        acked = opened + timedelta(minutes=rng.uniform(1, 40))
        resolved = None if is_open else opened + timedelta(hours=rng.uniform(0.3, 8))
        incidents.append({
            "id": incident_id, "title": f"Roaster {n % 50:03d} fetch errors above 10%", "severity": severity,
            "status": "working" if is_open else "resolved", "source": "watchdog", "is_drill": n % 97 == 0,
            "rule": "HighErrorRate", "component": f"roaster-{n % 50:03d}", "impact": "Prices of one roaster stale",
            "owner": "alice", "eta": "1 h", "actions_taken": "Paused the roaster", "next_steps": "Ask the shop",
            "root_cause": None if is_open else "Shop migrated", "resolution": None if is_open else "Updated the URL",
            "prevention": None if is_open else "Detect redirects", "opened_at": opened, "acknowledged_at": acked,
            "acknowledged_by": "alice", "resolved_at": resolved, "last_alert_at": opened,
            "response_due_at": opened + timedelta(minutes=30), "escalation_level": 1, "version": 10,
        })  # fmt: skip
        for a in range(2):
            alerts.append({
                "fingerprint": f"{n:06d}{a}", "incident_id": incident_id, "source": "watchdog",
                "status": "firing" if is_open else "resolved", "severity": severity, "alertname": "HighErrorRate",
                "title": f"Error rate 23% on roaster-{n % 50:03d}", "description": "Failed fetches share above 10%",
                "labels": {"alertname": "HighErrorRate", "component": f"roaster-{n % 50:03d}", "severity": severity},
                "annotations": {"summary": "Error rate 23%", "runbook_url": "https://runbook.example/high-error-rate"},
                "links": [{"href": "https://grafana.example/d/x", "text": "Grafana"}], "starts_at": opened,
                "first_received_at": opened, "last_received_at": opened, "receive_count": 3, "flap_count": 0, "raw": {},
            })  # fmt: skip
        steps = [
            ("opened", opened),
            ("alert_firing", opened),
            ("alert_firing", opened),
            ("acknowledged", acked),
            ("owner_changed", acked),
            ("notification_sent", opened),
            ("notification_sent", acked),
            ("status_update", acked + timedelta(minutes=5)),
            ("status_update", acked + timedelta(minutes=20)),
        ]
        if resolved is not None:
            steps += [("alert_resolved", resolved), ("resolved", resolved), ("notification_sent", resolved)]
        events += [{"incident_id": incident_id, "at": at, "kind": kind, "actor": "alice",
                    "message": f"{kind}: Current Status: Working\nActions Taken: Paused the roaster", "data": {}}
                   for kind, at in steps]  # fmt: skip
    typical, big = incidents[1]["id"], incidents[0]["id"]
    big_opened = incidents[0]["opened_at"]
    events += [
        {
            "incident_id": big,
            "at": big_opened + timedelta(minutes=i),
            "kind": "comment",
            "actor": "bob",
            "message": f"Note {i}: still investigating the shop's new theme",
            "data": {},
        }
        for i in range(50)
    ]
    checks = [
        {"name": name, "status": "ok", "summary": "fine", "hint": None, "duration_ms": 3.0, "details": {}}
        for name in ("service", "database", "cpu_memory", "disk", "processes", "logs", "roasters")
    ]
    events.append(
        {
            "incident_id": big,
            "at": big_opened,
            "kind": "diagnostic",
            "actor": "system",
            "message": "diagnostics: 7 ok",
            "data": {"type": "diagnostics", "status": "ok", "checks": checks},
        }
    )
    alerts.append({**alerts[0], "fingerprint": "big-third"})
    with engine.begin() as conn:
        conn.execute(insert(Incident), incidents)
        conn.execute(insert(IncidentAlert), alerts)
        for chunk in range(0, len(events), 5000):
            conn.execute(insert(IncidentEvent), events[chunk : chunk + 5000])
        conn.execute(insert(NotificationOutbox), [
            {"incident_id": big, "channel": channel, "target": "#alerts" if channel == "slack" else "ops@example.com",
             "kind": "status_update", "payload": {}, "status": status, "attempts": 1 if status == "sent" else 3,
             "next_attempt_at": big_opened, "created_at": big_opened,
             "sent_at": big_opened if status == "sent" else None,
             "last_error": None if status == "sent" else "HTTP 500 from the peer"}
            for channel in ("slack", "email") for status in ("sent", "sent", "sent", "sent", "failed", "dead")
        ])  # fmt: skip
    engine.dispose()
    return typical, big


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
    parser.add_argument("--incidents", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL on 127.0.0.1:5432 instead of SQLite")
    args = parser.parse_args()
    with database(args.postgres) as url:
        if url is None:
            raise SystemExit("no PostgreSQL answers on 127.0.0.1:5432")
        db.upgrade(url)
        started = time.perf_counter()
        seed(url, args.coffees)
        typical, big = seed_incidents(url, args.incidents)
        print(f"seeded {args.coffees} coffees, {args.incidents} incidents in {time.perf_counter() - started:.1f} s")
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
                    ("incidents, open", "/incidents", None),
                    ("incidents, all, P0 + P1", "/incidents?state=all&severity=P0&severity=P1", None),
                    ("incidents, all, page 10", "/incidents?state=all&page=10", None),
                    ("incident page (typical)", f"/incidents/{typical}", None),
                    ("incident page (60 entries, 12 notifications)", f"/incidents/{big}", None),
                    ("insights (4 charts, 30-day stats)", "/insights", None),
                    ("silences", "/silences", None),
                    ("API: insights", "/api/v1/insights", None),
                ]  # fmt: skip
                print(f"| page | median ms | p95 ms | KB |  ({'PostgreSQL' if args.postgres else 'SQLite'})")
                print("|---|---|---|---|")
                for name, path, headers in pages:
                    median, p95, size = measure(client, path, args.requests, headers)
                    print(f"| {name} | {median:.0f} | {p95:.0f} | {size / 1024:.0f} |")
                client.close()


if __name__ == "__main__":
    main()
