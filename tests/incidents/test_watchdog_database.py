"""Database rules of the watchdog under real database failures (PostgreSQL stopped, schema behind, backends killed,
writes refused) — the alert fires after its ``for``, the incident opens in the separate incident store, and when
the condition clears the alert resolves and the incident goes to resolve-pending.

Clock: an injected clock drives the windows and ``for`` durations; the failures themselves are real.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from coffee_scraper.catalog import db, service
from coffee_scraper.demo.catalog import make_shopify_products
from coffee_scraper.demo.server import DemoServer, DemoShop
from coffee_scraper.incidents.watchdog import Clear, Firing, Pending
from coffee_scraper.observability import instrument
from coffee_scraper.observability.metrics import REGISTRY
from coffee_scraper.pipeline.run import run_many
from tests.incidents.watchdog_support import (
    Clock,
    PgCluster,
    drive,
    incidents_of,
    make_watchdog,
    watchdog_settings,
)

pytestmark = [pytest.mark.pg]


@pytest.fixture
def pg_cluster() -> Iterator[PgCluster]:
    """A PostgreSQL cluster of this test only, so the test can stop it (the shared one must stay up)."""
    try:
        cluster = PgCluster()
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"cannot start a throwaway PostgreSQL cluster: {exc}")
    try:
        yield cluster
    finally:
        cluster.close()


def test_stopped_postgresql_opens_p0_database_down_and_recovery_resolves_it(
    pg_cluster: PgCluster, tmp_path: Path
) -> None:
    db.upgrade(pg_cluster.url)
    settings = watchdog_settings(pg_cluster.url, tmp_path)
    clock = Clock()
    watchdog = make_watchdog(settings, clock)
    try:
        healthy = watchdog.run_once()
        assert isinstance(healthy.verdict("DatabaseDown"), Clear)
        assert healthy.measurements.database is not None and healthy.measurements.database.ok

        pg_cluster.stop()  # the real outage
        clock.advance(seconds=30)
        first = watchdog.run_once()
        down = first.verdict("DatabaseDown")
        assert isinstance(down, Pending), down  # for: 2m
        assert first.measurements.database is not None and not first.measurements.database.ok
        assert incidents_of(settings, "DatabaseDown") == []

        evaluations = drive(watchdog, clock, seconds=120)
        fired = evaluations[-1].verdict("DatabaseDown")
        assert isinstance(fired, Firing) and fired.value == 1.0
        # one cause, one page: the readiness and connection rules are held back while DatabaseDown holds
        assert evaluations[-1].results["DatabaseReadinessFailing"]["database"][1].verdict == "inhibited"
        assert "DatabaseConnectionIssues" not in dict(evaluations[-1].firing())
        incidents = incidents_of(settings, "DatabaseDown")
        assert len(incidents) == 1
        incident = incidents[0]
        assert incident.severity == "P0" and incident.status == "investigating" and incident.source == "watchdog"
        assert incident.resolve_pending_since is None

        pg_cluster.start()  # recovery
        clock.advance(seconds=30)
        recovered = watchdog.run_once()
        cleared = recovered.verdict("DatabaseDown")
        assert isinstance(cleared, Clear) and cleared.resolved
        after = incidents_of(settings, "DatabaseDown")
        assert len(after) == 1 and after[0].resolve_pending_since is not None
        # the clean outage never looked like intermittent connection trouble, not even right after recovery
        later = drive(watchdog, clock, seconds=600)
        assert all("DatabaseConnectionIssues" not in dict(e.firing()) for e in later)
    finally:
        watchdog.close()


def test_schema_behind_the_code_fires_database_readiness_failing(pg_url: str, tmp_path: Path) -> None:
    db.upgrade(pg_url, "0001")  # a real database whose schema is older than the code (a deploy without migrate)
    settings = watchdog_settings(pg_url, tmp_path)
    clock = Clock()
    watchdog = make_watchdog(settings, clock, only=("DatabaseDown", "DatabaseReadinessFailing"))
    try:
        evaluations = drive(watchdog, clock, seconds=150)
        assert isinstance(evaluations[0].verdict("DatabaseReadinessFailing"), Pending)
        fired = evaluations[-1].verdict("DatabaseReadinessFailing")
        assert isinstance(fired, Firing), fired
        assert "db upgrade" in fired.detail
        assert isinstance(evaluations[-1].verdict("DatabaseDown"), Clear)  # the database itself answers
        assert [i.severity for i in incidents_of(settings, "DatabaseReadinessFailing")] == ["P0"]

        db.upgrade(pg_url)  # the fix
        clock.advance(seconds=30)
        fixed = watchdog.run_once().verdict("DatabaseReadinessFailing")
        assert isinstance(fixed, Clear) and fixed.resolved
        assert incidents_of(settings, "DatabaseReadinessFailing")[0].resolve_pending_since is not None
    finally:
        watchdog.close()


STORAGE = "coffee_scraper_storage_operations_total"


def storage_errors() -> float:
    return sum(
        REGISTRY.get_sample_value("coffee_scraper_storage_operations_total", {"operation": op, "result": "error"})
        or 0.0
        for op in instrument.STORAGE_OPERATION_NAMES
    )


def _add_shop(factory: object, server: DemoServer, name: str) -> None:
    with db.session_scope(factory) as session:  # type: ignore[arg-type]
        service.add_roaster(session, name, server.url(name), platform="shopify", currency="INR")


def test_killed_backends_fire_database_connection_issues_p1(pg_url: str, tmp_path: Path) -> None:
    """Intermittent connection failures: backends terminated (pg_terminate_backend) in a loop during scrapes."""
    db.upgrade(pg_url)
    settings = watchdog_settings(pg_url, tmp_path, shopify_page_limit=5)
    engine = db.make_engine(pg_url)
    factory = db.session_factory(engine)
    clock = Clock()
    watchdog = make_watchdog(settings, clock, only=("DatabaseDown", "DatabaseConnectionIssues"))
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    database = make_url(pg_url).database
    name = f"flaky-{uuid.uuid4().hex[:6]}"
    stop = threading.Event()

    def terminator() -> None:
        with admin.connect() as conn:
            while not stop.is_set():
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :d AND pid <> pg_backend_pid() AND state <> 'idle'"
                    ),
                    {"d": database},
                )
                stop.wait(0.005)

    try:
        with DemoServer([DemoShop(name, "shopify", make_shopify_products(60, seed=3))]) as server:
            _add_shop(factory, server, name)
            watchdog.run_once()  # baseline sample
            killer = threading.Thread(target=terminator, daemon=True)
            killer.start()
            try:
                baseline = storage_errors()
                for _ in range(40):  # bounded: scrape until at least 3 storage operations were cut off
                    asyncio.run(run_many([name], "full", settings=settings, factory=factory))
                    if storage_errors() - baseline >= 3:
                        break
            finally:
                stop.set()
                killer.join(5)
            assert storage_errors() - baseline >= 3, "terminating backends never broke a storage operation"
            # the database answers again: later runs succeed
            asyncio.run(run_many([name], "full", settings=settings, factory=factory))
            clock.advance(seconds=30)
            evaluations = drive(watchdog, clock, seconds=330)
        first = evaluations[0].verdict("DatabaseConnectionIssues")
        assert isinstance(first, Pending), first
        fired = evaluations[-1].verdict("DatabaseConnectionIssues")
        assert isinstance(fired, Firing), fired
        assert isinstance(evaluations[-1].verdict("DatabaseDown"), Clear)
        assert [i.severity for i in incidents_of(settings, "DatabaseConnectionIssues")] == ["P1"]
    finally:
        watchdog.close()
        engine.dispose()
        admin.dispose()


REFUSE_BROKEN_RUNS = """
CREATE FUNCTION refuse_broken_runs() RETURNS trigger AS $$
BEGIN
  IF (SELECT name FROM roasters WHERE id = NEW.roaster_id) LIKE 'broken-%' THEN
    RAISE EXCEPTION 'disk quota exceeded for tablespace of roaster %', NEW.roaster_id;
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER refuse_broken_runs BEFORE INSERT ON scrape_runs FOR EACH ROW EXECUTE FUNCTION refuse_broken_runs();
"""


def test_most_storage_writes_refused_fire_high_rpc_error_rate_p0(pg_url: str, tmp_path: Path) -> None:
    """A PostgreSQL trigger refuses the run rows of most roasters (as a full tablespace would): more than half of
    all calls fail while the database itself still answers (so it is not DatabaseDown)."""
    db.upgrade(pg_url)
    settings = watchdog_settings(pg_url, tmp_path)
    engine = db.make_engine(pg_url)
    factory = db.session_factory(engine)
    clock = Clock()
    watchdog = make_watchdog(settings, clock, only=("DatabaseDown", "HighRPCErrorRate", "HighErrorRate"))
    healthy = "healthy"
    broken = [f"broken-{i}" for i in range(8)]
    shops = [DemoShop(healthy, "shopify", make_shopify_products(5, seed=11))]
    shops += [DemoShop(name, "shopify", make_shopify_products(5, seed=12 + i)) for i, name in enumerate(broken)]
    try:
        with DemoServer(shops) as server:
            for name in server.shop_names:
                _add_shop(factory, server, name)
            with engine.begin() as conn:
                conn.execute(text(REFUSE_BROKEN_RUNS))
            watchdog.run_once()
            evaluations = []
            for _ in range(11):  # every 30 s for 5.5 minutes: each roaster's run, most refused by the database
                reports = asyncio.run(run_many(server.shop_names, "full", settings=settings, factory=factory))
                assert sum(r.status == "fail" for r in reports) == len(broken)
                clock.advance(seconds=30)
                evaluations.append(watchdog.run_once())
        first = evaluations[0].verdict("HighRPCErrorRate")
        assert isinstance(first, Pending) and first.value is not None and first.value > 0.5, first
        assert isinstance(evaluations[0].verdict("DatabaseDown"), Clear)  # the database still answers
        fired = evaluations[-1].verdict("HighRPCErrorRate")
        assert isinstance(fired, Firing), fired
        assert isinstance(evaluations[-1].verdict("HighErrorRate"), Clear)  # above 50% it is P0, not P1
        assert [i.severity for i in incidents_of(settings, "HighRPCErrorRate")] == ["P0"]
    finally:
        watchdog.close()
        engine.dispose()
