"""The incident store can fail too: alerts are spooled to a local file while it is down and replayed once it is
back; the catalog database failing never silences incident response (separate store). Plus the CLI:
``coffee-scraper watchdog run-once`` / ``status`` in real subprocesses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from coffee_scraper.catalog import db
from coffee_scraper.incidents.watchdog import Firing, Watchdog
from coffee_scraper.observability.metrics import REGISTRY
from tests.incidents.watchdog_support import Clock, PgCluster, incidents_of, make_watchdog, watchdog_settings

ROOT = Path(__file__).resolve().parents[2]
SPOOL_GAUGE = "coffee_scraper_incident_spool_events"


@pytest.fixture
def store_cluster() -> Iterator[PgCluster]:
    try:
        cluster = PgCluster()
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"cannot start a throwaway PostgreSQL cluster: {exc}")
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.mark.pg
def test_alerts_are_spooled_while_the_incident_store_is_down_and_replayed_after(
    store_cluster: PgCluster, tmp_path: Path
) -> None:
    catalog = f"sqlite:///{tmp_path / 'catalog.db'}"
    db.upgrade(catalog, "0001")  # the catalog's schema is behind: DatabaseReadinessFailing (P0) holds
    settings = watchdog_settings(catalog, tmp_path, incidents_database_url=store_cluster.url)
    clock = Clock()
    watchdog = make_watchdog(settings, clock, only=("DatabaseReadinessFailing",), for_zero=True)
    try:
        store_cluster.stop()  # the incident store is down
        evaluation = watchdog.run_once()
        assert isinstance(evaluation.verdict("DatabaseReadinessFailing"), Firing)
        assert evaluation.spooled == 1 and evaluation.ingest_error
        assert REGISTRY.get_sample_value(SPOOL_GAUGE) == 1.0
        lines = settings.watchdog_spool_file.read_text().splitlines()
        assert [json.loads(line)["rule"] for line in lines] == ["DatabaseReadinessFailing"]

        clock.advance(seconds=30)
        assert watchdog.run_once().spooled == 0  # still down; the same activation is not spooled twice
        assert REGISTRY.get_sample_value(SPOOL_GAUGE) == 1.0
        catalog_fixed = watchdog_settings(catalog, tmp_path).database_url
        db.upgrade(catalog_fixed)  # fixed while the store is still down: the resolve is spooled after the firing
        clock.advance(seconds=30)
        assert watchdog.run_once().spooled == 1
        assert REGISTRY.get_sample_value(SPOOL_GAUGE) == 2.0

        store_cluster.start()
        clock.advance(seconds=30)
        back = watchdog.run_once()
        assert back.replayed == 2 and back.spooled == 0
        assert not settings.watchdog_spool_file.exists()
        assert REGISTRY.get_sample_value(SPOOL_GAUGE) == 0.0
        incidents = incidents_of(settings, "DatabaseReadinessFailing")
        assert len(incidents) == 1 and incidents[0].severity == "P0"  # replayed in order: opened, then resolved
        assert incidents[0].resolve_pending_since is not None
        assert watchdog.run_once().replayed == 0
    finally:
        watchdog.close()


@pytest.mark.pg
def test_a_dead_catalog_database_is_recorded_in_the_separate_incident_store(
    store_cluster: PgCluster, tmp_path: Path
) -> None:
    """The catalog on PostgreSQL dies; incidents live in SQLite and keep working."""
    db.upgrade(store_cluster.url)
    settings = watchdog_settings(store_cluster.url, tmp_path)  # incident store: tmp/incidents.db (SQLite)
    clock = Clock()
    watchdog = make_watchdog(settings, clock, only=("DatabaseDown",), for_zero=True)
    try:
        watchdog.run_once()
        store_cluster.stop()
        clock.advance(seconds=30)
        evaluation = watchdog.run_once()
        assert isinstance(evaluation.verdict("DatabaseDown"), Firing) and evaluation.ingested == 1
        assert [i.severity for i in incidents_of(settings, "DatabaseDown")] == ["P0"]
    finally:
        watchdog.close()


def test_restarted_watchdog_resumes_firing_states_and_resolves_them(tmp_path: Path) -> None:
    """State survives a restart (status file): a fix made while it was down still resolves the alert."""
    catalog = f"sqlite:///{tmp_path / 'catalog.db'}"
    db.upgrade(catalog, "0001")
    settings = watchdog_settings(catalog, tmp_path)
    clock = Clock()
    first = make_watchdog(settings, clock, only=("DatabaseReadinessFailing",), for_zero=True)
    try:
        assert isinstance(first.run_once().verdict("DatabaseReadinessFailing"), Firing)
    finally:
        first.close()
    db.upgrade(catalog)  # fixed while no watchdog ran
    clock.advance(seconds=300)
    second = Watchdog(settings, alert_settings=first.alert_settings, now=clock, rules=first.rules)
    try:
        assert second.states["DatabaseReadinessFailing"]["database"].phase == "firing"
        resolved = second.run_once()
        assert [(a.rule, a.firing) for a in resolved.alerts] == [("DatabaseReadinessFailing", False)]
        assert incidents_of(settings, "DatabaseReadinessFailing")[0].resolve_pending_since is not None
    finally:
        second.close()


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from coffee_scraper.cli import main; main()", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_run_once_and_status(tmp_path: Path) -> None:
    catalog = f"sqlite:///{tmp_path / 'catalog.db'}"
    db.upgrade(catalog, "0001")
    env = {
        "COFFEE_SCRAPER_DATABASE_URL": catalog,
        "COFFEE_SCRAPER_INCIDENTS_DATABASE_URL": f"sqlite:///{tmp_path / 'incidents.db'}",
        "COFFEE_SCRAPER_LOG_DIR": str(tmp_path / "logs"),
        "COFFEE_SCRAPER_WATCHDOG_STATE_FILE": str(tmp_path / "state.json"),
        "COFFEE_SCRAPER_WATCHDOG_SPOOL_FILE": str(tmp_path / "spool.jsonl"),
        "COFFEE_SCRAPER_WATCHDOG_DISK_PATHS": json.dumps([str(tmp_path)]),
    }
    missing = run_cli(env, "watchdog", "status")
    assert missing.returncode == 2 and "watchdog run-once" in missing.stderr

    done = run_cli(env, "watchdog", "run-once", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    rows = {(r["rule"], r["component"]): r for r in data["rules"]}
    readiness = rows[("DatabaseReadinessFailing", "database")]
    # for: 2m — one pass only starts the clock: pending, with the measured value and the threshold
    assert readiness["state"] == "pending" and readiness["value"] == 0.0 and readiness["threshold"] == "== 0"
    assert "db upgrade" in readiness["detail"]
    assert rows[("MetricsTargetMissing", "prometheus")]["state"] == "nodata"
    assert "PROMETHEUS_URL" in rows[("MetricsTargetMissing", "prometheus")]["reason"]
    assert {r["rule"] for r in data["rules"]} >= {"DatabaseDown", "RoasterStale", "CPUPressure", "DataLoss"}

    status = run_cli(env, "watchdog", "status")
    assert status.returncode == 0, status.stderr
    assert "DatabaseReadinessFailing" in status.stdout and "pending since" in status.stdout
    as_json = json.loads(run_cli(env, "watchdog", "status", "--json").stdout)
    assert as_json["last_eval"] == data["last_eval"]
