"""End to end: demo shops on 127.0.0.1 → scrape → SQLite file and PostgreSQL → rows in coffees/variants/prices.

This is the project's first test: a real HTTP server, the real fetcher, normalizer and database.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from coffee_scraper.catalog import db, service
from coffee_scraper.catalog.models import Coffee, Price, QuarantinedProduct, RawArtifact, ScrapeRun, Variant
from coffee_scraper.demo.catalog import make_shopify_products, make_woocommerce_products, mutate_prices
from coffee_scraper.demo.server import DemoServer, DemoShop, Fault
from coffee_scraper.pipeline.run import RunReport, replay_run, run_many
from coffee_scraper.settings import Settings
from tests.support import fast_settings


@pytest.fixture
def factory(db_url: str) -> Iterator[sessionmaker[Session]]:
    db.upgrade(db_url)
    engine = db.make_engine(db_url)
    yield db.session_factory(engine)
    engine.dispose()


def register(factory: sessionmaker[Session], server: DemoServer, *names: str, platform: str = "auto") -> None:
    with db.session_scope(factory) as session:
        for name in names:
            service.add_roaster(session, name, server.url(name), platform=platform, currency="INR")


def scrape(factory: sessionmaker[Session], settings: Settings, *names: str, mode: str = "full") -> list[RunReport]:
    return asyncio.run(run_many(list(names), mode, settings=settings, factory=factory))  # type: ignore[arg-type]


def count(session: Session, model: type) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_scrape_demo_shops_end_to_end(factory: sessionmaker[Session], db_url: str) -> None:
    shop_products = make_shopify_products(60, seed=11)
    woo_products = make_woocommerce_products(45, seed=12)
    shops = [DemoShop("shop", "shopify", shop_products), DemoShop("woo", "woocommerce", woo_products)]
    settings = fast_settings(db_url)
    with DemoServer(shops) as server:
        register(factory, server, "shop", "woo")
        reports = scrape(factory, settings, "shop", "woo")
        assert [r.status for r in reports] == ["ok", "ok"], [r.errors for r in reports]
        assert {r.platform for r in reports} == {"shopify", "woocommerce"}  # auto-detected
        assert reports[0].pages == 3 and reports[1].pages == 3  # 25+25+10 and 20+20+5

        with factory() as session:
            assert count(session, Coffee) == 105
            variants = count(session, Variant)
            expected_variants = sum(len(p["variants"]) for p in shop_products) + sum(
                max(1, len(p["variations"])) for p in woo_products
            )
            assert variants == expected_variants
            assert count(session, Price) == variants  # one observation per variant
            assert count(session, RawArtifact) == 6
            # a real product round trip: price in minor units from the Shopify decimal string
            first = shop_products[0]
            coffee = session.scalars(select(Coffee).where(Coffee.platform_product_id == str(first["id"]))).one()
            v0 = next(v for v in coffee.variants if v.platform_variant_id == str(first["variants"][0]["id"]))
            from decimal import Decimal

            assert v0.price_minor == int(Decimal(first["variants"][0]["price"]) * 100)
            assert v0.currency == "INR"
            assert session.scalar(select(func.count()).where(Coffee.is_coffee.is_(True))) > 50

        # second run: nothing new, nothing duplicated, no new price rows
        again = scrape(factory, settings, "shop", "woo")
        assert [r.status for r in again] == ["ok", "ok"]
        assert sum(r.new for r in again) == 0 and sum(r.price_changes for r in again) == 0
        with factory() as session:
            assert count(session, Coffee) == 105 and count(session, Variant) == variants
            assert count(session, Price) == variants

        # one price changes → exactly one new price row; one product removed → marked missing
        changed = [dict(p) for p in shop_products]
        v = dict(changed[0]["variants"][0])
        v["price"] = f"{Decimal(v['price']) + Decimal('10.00'):.2f}"
        changed[0] = {**changed[0], "variants": [v, *changed[0]["variants"][1:]]}
        removed = changed.pop()
        server.set_products("shop", changed)
        third = scrape(factory, settings, "shop", mode="price")[0]
        assert third.status == "ok", third.errors
        assert third.price_changes == 1 and third.missing == 1
        with factory() as session:
            assert count(session, Price) == variants + 1
            gone = session.scalars(select(Coffee).where(Coffee.platform_product_id == str(removed["id"]))).one()
            assert gone.status == "missing" and gone.missing_since is not None
            assert count(session, Coffee) == 105  # never deleted


def test_second_run_uses_conditional_requests(factory: sessionmaker[Session], sqlite_url: str) -> None:
    """Stored ETags go back as If-None-Match; 304 pages are replayed from the stored body, nothing changes."""
    with DemoServer([DemoShop("s", "shopify", make_shopify_products(60, seed=15))]) as server:
        register(factory, server, "s", platform="shopify")
        settings = fast_settings(sqlite_url)
        scrape(factory, settings, "s")
        server.clear_requests()
        again = scrape(factory, settings, "s")[0]
        pages = [r for r in server.requests("s") if r.path == "/products.json"]
    assert again.status == "ok" and again.unchanged == 60 and again.new == again.updated == 0
    assert pages and all(r.status == 304 and r.headers.get("if-none-match") for r in pages)
    with factory() as session:
        run = session.get(ScrapeRun, again.run_id)
        assert run is not None and run.pages_not_modified == len(pages) == 3


def test_every_price_changed_creates_one_row_each(factory: sessionmaker[Session], sqlite_url: str) -> None:
    products = make_shopify_products(30, seed=5)
    with DemoServer([DemoShop("s", "shopify", products)]) as server:
        register(factory, server, "s", platform="shopify")
        settings = fast_settings(sqlite_url)
        scrape(factory, settings, "s")
        with factory() as session:
            before = count(session, Price)
        server.set_products("s", mutate_prices(products, fraction=1.0, seed=9))
        report = scrape(factory, settings, "s", mode="price")[0]
        with factory() as session:
            assert count(session, Price) - before == report.price_changes > 0


def test_replay_renormalizes_stored_pages_offline(factory: sessionmaker[Session], sqlite_url: str) -> None:
    with DemoServer([DemoShop("s", "shopify", make_shopify_products(30, seed=2))]) as server:
        register(factory, server, "s", platform="shopify")
        settings = fast_settings(sqlite_url)
        run_id = scrape(factory, settings, "s")[0].run_id
    # the server is gone: replay uses only the stored artifacts
    report = replay_run(run_id, settings=settings, factory=factory)
    assert report.status == "ok" and report.pages == 2 and report.products_seen == 30
    assert report.new == 0 and report.updated == 30


def test_real_fixture_catalogs_through_the_demo_server(
    factory: sessionmaker[Session], db_url: str, shared_fixtures: Path
) -> None:
    stores = shared_fixtures / "stores"
    shops = [
        DemoShop.from_dump("bluetokai", stores / "bluetokai-shopify.json", "shopify"),
        DemoShop.from_dump("rosette", stores / "rosette-shopify.json", "shopify"),
        DemoShop.from_dump("bababeans", stores / "bababeans-woocommerce.json", "woocommerce"),
    ]
    settings = fast_settings(db_url)
    with DemoServer(shops) as server:
        register(factory, server, "bluetokai", "rosette", "bababeans")
        reports = scrape(factory, settings, "bluetokai", "rosette", "bababeans")
    assert [r.status for r in reports] == ["ok", "ok", "ok"], [r.errors for r in reports]
    with factory() as session:
        assert count(session, Coffee) == 30 + 22 + 10
        # Blue Tokai's French press is not coffee; Rosette's washed Nagaland AA is a washed coffee
        press = session.scalars(select(Coffee).where(Coffee.title == "French Press 600 ml")).one()
        assert press.is_coffee is False
        nagaland = session.scalars(select(Coffee).where(Coffee.title == "Nagaland Tuensang Washed AA")).one()
        assert nagaland.is_coffee and nagaland.process == "washed"
        v = nagaland.variants[0]
        assert (v.weight_g, v.grind, v.currency) == (200, "whole", "INR")
        # WooCommerce minor-unit strings: "29000" with minor unit 2 is ₹290.00
        hustler = session.scalars(select(Coffee).where(Coffee.title == "Hustler")).one()
        assert {x.price_minor for x in hustler.variants} == {29000}


# --- bad input: each gives a clear recorded error and loses nothing else --------------------------------


def _good_and_bad(
    factory: sessionmaker[Session], url: str, bad: DemoShop, **settings: Any
) -> tuple[RunReport, RunReport]:
    good = DemoShop("good", "shopify", make_shopify_products(30, seed=4))
    with DemoServer([good, bad]) as server:
        register(factory, server, "good", bad.name, platform=bad.platform)
        reports = scrape(factory, fast_settings(url, **settings), "good", bad.name)
    assert reports[0].status == "ok" and reports[0].new == 30, reports[0].errors
    with factory() as session:
        assert (
            session.scalar(
                select(func.count()).select_from(Coffee).join(Coffee.roaster).where(Coffee.roaster.has(name="good"))
            )
            == 30
        )
        run = session.get(ScrapeRun, reports[1].run_id)
        assert run is not None and run.status == reports[1].status and run.finished_at is not None
        if reports[1].status != "ok":
            assert run.error_summary
    return reports


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (Fault("malformed_json", path_prefix="/products.json", times=-1), "bad_payload"),
        (Fault("html", path_prefix="/products.json", times=-1), None),
        (
            Fault("huge_body", path_prefix="/products.json", times=-1, size_bytes=50 * 1024 * 1024),
            "response_too_large",
        ),
        (Fault("hang", path_prefix="/products.json", times=-1, seconds=5.0), "http_transient"),
        (Fault("password_redirect", path_prefix="/products.json", times=-1), "shop_unavailable"),
        (Fault("status", path_prefix="/products.json", times=-1, status=503), "http_transient"),
    ],
)
def test_bad_shop_fails_clearly_and_loses_nothing(
    factory: sessionmaker[Session], sqlite_url: str, fault: Fault, kind: str | None
) -> None:
    bad = DemoShop("bad", "shopify", make_shopify_products(10, seed=8), faults=[fault])
    _, report = _good_and_bad(factory, sqlite_url, bad, max_response_bytes=1024 * 1024, read_timeout_s=0.5)
    assert report.status == "fail"
    error = report.errors[0]
    assert error["message"]
    if kind:
        assert error["kind"] == kind, report.errors


def test_empty_catalog_is_ok_with_nothing_stored(factory: sessionmaker[Session], sqlite_url: str) -> None:
    _, report = _good_and_bad(factory, sqlite_url, DemoShop("bad", "shopify", []))
    assert report.status == "ok" and report.products_seen == 0


def test_malformed_products_are_quarantined_not_fatal(factory: sessionmaker[Session], sqlite_url: str) -> None:
    products = make_shopify_products(12, seed=6)
    dup = dict(products[1])
    neg = {**products[2], "variants": [{**products[2]["variants"][0], "price": "-5.00"}]}
    blank = {**products[3], "variants": [{**products[3]["variants"][0], "price": ""}]}
    no_title = {**products[4], "title": "  "}
    hostile = [products[0], products[1], dup, neg, blank, no_title, "not an object", *products[5:]]
    _, report = _good_and_bad(factory, sqlite_url, DemoShop("bad", "shopify", hostile))
    assert report.status == "partial"
    assert report.quarantined == 5
    with factory() as session:
        reasons = [q.reason for q in session.scalars(select(QuarantinedProduct))]
        assert any("duplicate product id" in r for r in reasons)
        assert any("negative" in r for r in reasons)
        assert any("title is blank" in r for r in reasons)
        stored = session.scalar(select(func.count()).select_from(Coffee).where(Coffee.roaster.has(name="bad")))
        assert stored == 9  # products 0, 1 and 5..11; 2, 3, 4 were replaced by broken copies


def test_listing_far_short_of_meta_count_is_partial_and_marks_nothing_missing(
    factory: sessionmaker[Session], sqlite_url: str
) -> None:
    products = make_shopify_products(30, seed=13)
    shop = DemoShop("s", "shopify", products)
    with DemoServer([shop]) as server:
        register(factory, server, "s", platform="shopify")
        settings = fast_settings(sqlite_url)
        assert scrape(factory, settings, "s")[0].status == "ok"
        server.set_products("s", products[:10])
        shop.hidden_products = 20  # meta.json still publishes 30
        report = scrape(factory, settings, "s")[0]
    assert report.status == "partial" and report.missing == 0
    assert any(e["kind"] == "catalog_incomplete" for e in report.errors)
    with factory() as session:
        assert session.scalar(select(func.count()).where(Coffee.status == "missing")) == 0


def test_robots_disallowed_shop_is_never_fetched(factory: sessionmaker[Session], sqlite_url: str) -> None:
    bad = DemoShop("bad", "shopify", make_shopify_products(5, seed=1), robots_txt="User-agent: *\nDisallow: /\n")
    good = DemoShop("good", "shopify", make_shopify_products(30, seed=4))
    with DemoServer([good, bad]) as server:
        register(factory, server, "good", "bad", platform="shopify")
        reports = scrape(factory, fast_settings(sqlite_url), "good", "bad")
        paths = [r.path for r in server.requests("bad")]
    assert reports[1].status == "fail" and reports[1].errors[0]["kind"] == "robots_disallowed"
    assert paths == ["/robots.txt"]
    with factory() as session:
        assert service.get_roaster(session, "bad").robots_allowed is False


def test_politeness_one_request_at_a_time_with_delay(factory: sessionmaker[Session], sqlite_url: str) -> None:
    shop = DemoShop(
        "s",
        "shopify",
        make_shopify_products(100, seed=3),
        latency_s=0.02,
        faults=[Fault("retry_after", path_prefix="/products.json", times=1, status=429, retry_after="0.4")],
    )
    with DemoServer([shop]) as server:
        register(factory, server, "s", platform="shopify")
        report = scrape(factory, fast_settings(sqlite_url, request_delay_s=0.1, max_attempts=3), "s")[0]
        records = sorted(server.requests("s"), key=lambda r: r.started)
    assert report.status == "ok", report.errors
    for before, after in itertools.pairwise(records):
        assert after.started >= before.finished, "two requests in flight to one shop"
        gap = after.started - before.finished
        assert gap >= 0.09, f"delay not kept: {gap:.3f}s"
    throttled = next(i for i, r in enumerate(records) if r.status == 429)
    assert records[throttled + 1].started - records[throttled].finished >= 0.39  # Retry-After obeyed


def test_cli_demo_fills_a_database_you_can_query(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "COFFEE_SCRAPER_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}",
        "COFFEE_SCRAPER_LOG_DIR": str(tmp_path / "logs"),
    }
    cli = [sys.executable, "-m", "coffee_scraper.cli"]
    demo = subprocess.run([*cli, "demo", "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert demo.returncode == 0, demo.stderr
    assert all(r["status"] == "ok" for r in json.loads(demo.stdout))
    listed = subprocess.run([*cli, "coffees", "list", "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert len(rows) > 10 and all(r["name"] for r in rows)
    light = subprocess.run(
        [*cli, "coffees", "list", "--roast", "light", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert all(r["roast_level"] == "light" for r in json.loads(light.stdout))
    shown = subprocess.run(
        [*cli, "coffees", "show", str(rows[0]["id"]), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    detail = json.loads(shown.stdout)
    assert detail["variants"] and detail["price_history"]
    assert (tmp_path / "logs" / "app.log").exists()


def test_cli_usage_errors_exit_2_with_advice(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "COFFEE_SCRAPER_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        "COFFEE_SCRAPER_LOG_DIR": str(tmp_path / "logs"),
    }
    cli = [sys.executable, "-m", "coffee_scraper.cli"]
    r = subprocess.run([*cli, "scrape", "--roaster", "nope"], env=env, capture_output=True, text=True)
    assert r.returncode == 2 and "roasters list" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([*cli, "roasters", "add", "not a url"], env=env, capture_output=True, text=True)
    assert r.returncode == 2 and "https://" in r.stderr
    r = subprocess.run(
        [*cli, "roasters", "add", "example-roaster.in", "--json"], env=env, capture_output=True, text=True
    )
    assert r.returncode == 0 and json.loads(r.stdout)["base_url"] == "https://example-roaster.in"
    bad_env = {**env, "COFFEE_SCRAPER_DATABASE_URL": "mysql://x@y/z"}
    r = subprocess.run([*cli, "roasters", "list"], env=bad_env, capture_output=True, text=True)
    assert r.returncode == 2 and "SQLite or PostgreSQL" in r.stderr and "Traceback" not in r.stderr


def test_cli_unreachable_roasters_end_in_a_clear_summary(tmp_path: Path) -> None:
    """What `make run` does with no network: a per-roaster failure summary, exit 1, never a traceback."""
    import os
    import subprocess
    import sys

    roasters = tmp_path / "roasters.toml"
    roasters.write_text('[[roaster]]\nname = "Nowhere"\nurl = "https://coffee-shop.invalid"\ncurrency = "INR"\n')
    env = {
        **os.environ,
        "COFFEE_SCRAPER_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        "COFFEE_SCRAPER_LOG_DIR": str(tmp_path / "logs"),
        "COFFEE_SCRAPER_MAX_ATTEMPTS": "1",
    }
    cli = [sys.executable, "-m", "coffee_scraper.cli"]
    assert subprocess.run([*cli, "roasters", "import", str(roasters)], env=env, capture_output=True).returncode == 0
    r = subprocess.run([*cli, "scrape"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert "Traceback" not in r.stdout + r.stderr
    assert "Nowhere" in r.stdout and "unreachable" in r.stdout and "could not be reached" in r.stdout


def test_crash_mid_run_keeps_committed_pages_and_whole_products(tmp_path: Path) -> None:
    """SIGKILL a scrape between pages: committed pages stay, no half product, the run is marked failed later."""
    import os
    import signal
    import subprocess
    import sys
    import time

    products = make_shopify_products(200, seed=21)
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    with DemoServer([DemoShop("slow", "shopify", products, latency_s=0.4)]) as server:
        db.upgrade(url)
        engine = db.make_engine(url)
        factory = db.session_factory(engine)
        register(factory, server, "slow", platform="shopify")
        env = {
            **os.environ,
            "COFFEE_SCRAPER_DATABASE_URL": url,
            "COFFEE_SCRAPER_ALLOW_PRIVATE_ADDRESSES": "true",
            "COFFEE_SCRAPER_REQUEST_DELAY_S": "0",
            "COFFEE_SCRAPER_SHOPIFY_PAGE_LIMIT": "20",
            "COFFEE_SCRAPER_LOG_DIR": str(tmp_path / "logs"),
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "coffee_scraper.cli", "scrape"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with factory() as session:
                if session.scalar(select(func.count()).select_from(Coffee)) >= 40:
                    break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        with factory() as session:
            stored = session.scalars(select(Coffee)).all()
            assert 40 <= len(stored) < 200 and len(stored) % 20 == 0  # whole pages only
            by_id = {str(p["id"]): p for p in products}
            for coffee in stored:  # never half a product: every variant of a stored product is there
                assert len(coffee.variants) == len(by_id[coffee.platform_product_id]["variants"])
            run = session.scalars(select(ScrapeRun)).one()
            assert run.status == "running"
        # the next run marks the interrupted one failed and completes the catalog
        report = scrape(factory, fast_settings(url, shopify_page_limit=20), "slow")[0]
        assert report.status == "ok"
        with factory() as session:
            statuses = [r.status for r in session.scalars(select(ScrapeRun).order_by(ScrapeRun.id))]
            assert statuses == ["fail", "ok"]
            assert session.scalar(select(func.count()).select_from(Coffee)) == 200
        engine.dispose()


def test_database_gone_is_a_reported_failure_not_a_crash(pg_url: str) -> None:
    """The run's own bookkeeping cannot be written (read-only database): a failed report, no exception."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    db.upgrade(pg_url)
    engine = db.make_engine(pg_url)
    factory = db.session_factory(engine)
    with DemoServer([DemoShop("s", "shopify", make_shopify_products(5, seed=1))]) as server:
        register(factory, server, "s", platform="shopify")
        name = make_url(pg_url).database
        admin = create_engine(make_url(pg_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'))
        admin.dispose()
        engine.dispose()  # new connections pick the setting up
        report = scrape(factory, fast_settings(pg_url), "s")[0]
    assert report.status == "fail"
    assert report.errors[0]["kind"] == "storage" and "read-only" in report.errors[0]["message"]
    engine.dispose()
