"""Remediation actions, each with a dry run and a real run on real things: temp files and a process using one,
rotated logs, raw pages on SQLite and PostgreSQL, a shop's circuit honoured by the real fetcher, the scraping
queue, a connection pool, systemd's command line; every run audited, on the timeline with an incident.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from coffee_scraper.catalog import db, service
from coffee_scraper.catalog.models import Coffee, QuarantinedProduct, RawArtifact, Roaster, ScrapeRun
from coffee_scraper.demo.catalog import make_shopify_products
from coffee_scraper.demo.server import DemoServer, DemoShop
from coffee_scraper.incidents import remediation as rm
from coffee_scraper.incidents.ops_models import RemediationRun
from coffee_scraper.jobs import service as jobs
from coffee_scraper.observability.metrics import REGISTRY
from coffee_scraper.pipeline.run import run_many
from coffee_scraper.settings import get_settings
from coffee_scraper.web import create_app
from tests.incidents.recovery_support import T0, TOKEN, Clock, IncidentStore, recovery_settings
from tests.support import fast_settings, free_port, serve_in_thread

OLD = time.time() - 3 * 3600


@pytest.fixture
def store(db_url: str) -> IncidentStore:
    s = IncidentStore(db_url)
    yield s  # type: ignore[misc]
    s.close()


def run(store: IncidentStore, settings: object, action: str, **kw: object) -> rm.RemediationRecord:
    return rm.remediate(action, settings=settings, catalog_factory=store.factory, incidents_factory=store.factory, **kw)  # type: ignore[arg-type]


def audit_rows(store: IncidentStore) -> list[RemediationRun]:
    with store.session() as session:
        return list(session.scalars(select(RemediationRun).order_by(RemediationRun.id)))


# --- clean-temp ---------------------------------------------------------------------------------------------------


def test_clean_temp_dry_run_then_real_run_keeps_young_and_in_use_entries(tmp_path: Path, sqlite_url: str) -> None:
    store = IncidentStore(sqlite_url)
    s = recovery_settings(sqlite_url, tmp_path)
    temp = tmp_path / "tmp"
    (temp / "coffee-scraper-old.json").write_text("x" * 1000)
    old_dir = temp / "coffee-scraper-run-7"
    (old_dir / "sub").mkdir(parents=True)
    (old_dir / "sub" / "page.json").write_text("y" * 5000)
    (temp / "coffee-scraper-fresh").write_text("new")
    busy = temp / "coffee-scraper-busy"
    busy.mkdir()
    (temp / "other-tool-cache").write_text("not ours")
    for p in (
        temp / "coffee-scraper-old.json",
        old_dir / "sub" / "page.json",
        old_dir / "sub",
        old_dir,
        busy,
        temp / "other-tool-cache",
    ):
        os.utime(p, (OLD, OLD))
    # a real process working inside one of them (like a throwaway PostgreSQL cluster would)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd=busy)
    try:
        plan = run(store, s, "clean-temp", dry_run=True)
        assert plan.status == "planned"
        assert {Path(r["path"]).name for r in plan.details["remove"]} == {
            "coffee-scraper-old.json",
            "coffee-scraper-run-7",
        }
        kept = {Path(k["path"]).name: k["why"] for k in plan.details["kept"]}
        assert kept["coffee-scraper-fresh"].startswith("modified within")
        assert (
            kept["coffee-scraper-busy"].startswith("in use by") and f"pid {sleeper.pid}" in kept["coffee-scraper-busy"]
        )
        assert (temp / "coffee-scraper-old.json").exists() and old_dir.exists()  # a dry run touches nothing

        done = run(store, s, "clean-temp", actor="alice")
        assert done.status == "ok" and "removed 2" in done.summary
        assert not (temp / "coffee-scraper-old.json").exists() and not old_dir.exists()
        assert busy.exists() and (temp / "coffee-scraper-fresh").exists() and (temp / "other-tool-cache").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    rows = audit_rows(store)
    assert [(r.action, r.dry_run, r.status, r.actor) for r in rows] == [
        ("clean-temp", True, "planned", "cli"),
        ("clean-temp", False, "ok", "alice"),
    ]
    store.close()


# --- rotate-logs ----------------------------------------------------------------------------------------------------


def test_rotate_logs_gzips_old_rotated_logs_and_deletes_expired_archives(tmp_path: Path, sqlite_url: str) -> None:
    store = IncidentStore(sqlite_url)
    s = recovery_settings(sqlite_url, tmp_path, log_compress_after_days=1, log_retention_days=30)
    logs = tmp_path / "logs"
    logs.mkdir()
    live = logs / "app.log"
    live.write_text("live lines\n")
    rotated = logs / "app.log.1"
    content = b'{"event": "old line"}\n' * 2000
    rotated.write_bytes(content)
    two_days = time.time() - 2 * 86400
    os.utime(rotated, (two_days, two_days))
    young = logs / "fetcher.log.1"
    young.write_text("yesterday's evening\n")
    expired = logs / "scheduler.log.20200101T000000.gz"
    expired.write_bytes(gzip.compress(b"ancient"))
    ancient = time.time() - 40 * 86400
    os.utime(expired, (ancient, ancient))

    plan = run(store, s, "rotate-logs", dry_run=True)
    assert plan.status == "planned"
    assert plan.details["compress"] == [str(rotated)] and plan.details["delete"] == [str(expired)]
    assert rotated.exists() and expired.exists()

    done = run(store, s, "rotate-logs")
    assert done.status == "ok"
    archives = sorted(logs.glob("app.log.*.gz"))
    assert len(archives) == 1 and gzip.decompress(archives[0].read_bytes()) == content
    assert abs(archives[0].stat().st_mtime - two_days) < 2  # keeps the log's age for the retention
    assert not rotated.exists() and not expired.exists()
    assert live.read_text() == "live lines\n" and young.exists()  # live logs and young backups are untouched
    store.close()


# --- prune-artifacts (SQLite and PostgreSQL) --------------------------------------------------------------------------


def _artifact(roaster_id: int, run_id: int | None, age_days: float) -> RawArtifact:
    return RawArtifact(
        run_id=run_id,
        roaster_id=roaster_id,
        kind="products",
        page=1,
        url="https://shop/products.json",
        status=200,
        headers={},
        body_gz=gzip.compress(b"{}"),
        sha256="0" * 64,
        size_bytes=2000,
        elapsed_ms=1.0,
        fetched_at=T0 - timedelta(days=age_days),
    )


def test_prune_artifacts_keeps_each_roasters_latest_run_and_never_touches_catalog_rows(
    tmp_path: Path, store: IncidentStore
) -> None:
    s = recovery_settings(store.url, tmp_path, artifact_retention_days=90)
    with db.session_scope(store.factory) as session:
        roaster = service.add_roaster(session, "r1", "https://r1.example")
        old_run = ScrapeRun(roaster_id=roaster.id, mode="full", status="ok", started_at=T0 - timedelta(days=200))
        latest = ScrapeRun(roaster_id=roaster.id, mode="full", status="ok", started_at=T0 - timedelta(days=100))
        session.add_all([old_run, latest])
        session.flush()
        old_pages = [_artifact(roaster.id, old_run.id, 200) for _ in range(3)]
        session.add_all([*old_pages, _artifact(roaster.id, latest.id, 100), _artifact(roaster.id, None, 5)])
        session.flush()
        session.add(
            QuarantinedProduct(
                run_id=old_run.id, roaster_id=roaster.id, artifact_id=old_pages[0].id, reason="no price", raw={}
            )
        )
        session.add(
            Coffee(
                roaster_id=roaster.id,
                platform="shopify",
                platform_product_id="1",
                title="K",
                is_coffee=True,
                name_clean="K",
                content_hash="h",
            )
        )
    clock = Clock()
    plan = run(store, s, "prune-artifacts", dry_run=True, now=clock)
    assert plan.status == "planned" and plan.details["artifacts"] == 3 and plan.details["bytes"] == 6000
    done = run(store, s, "prune-artifacts", now=clock)
    assert done.status == "ok" and "deleted 3 raw pages" in done.summary
    with store.session() as session:
        left = session.scalars(select(RawArtifact.run_id).order_by(RawArtifact.id)).all()
        assert left == [latest.id, None]  # the latest run's page and the young one stay
        quarantined = session.scalars(select(QuarantinedProduct)).one()
        assert quarantined.artifact_id is None  # the reference is cleared, the quarantine row stays
        assert session.scalar(select(func.count()).select_from(Coffee)) == 1


# --- circuits: the real fetcher honours the override ------------------------------------------------------------------


def _circuit_gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value("coffee_scraper_circuit_state", {"roaster": name})


def test_open_circuit_holds_a_shop_and_close_circuit_releases_it(tmp_path: Path, sqlite_url: str) -> None:
    store = IncidentStore(sqlite_url)
    shop = DemoShop("beans", "shopify", make_shopify_products(3, seed=5))
    with DemoServer([shop]) as server:
        s = fast_settings(sqlite_url, breaker_reset_s=300, log_dir=tmp_path / "logs")
        with db.session_scope(store.factory) as session:
            service.add_roaster(session, "beans", server.url("beans"), platform="shopify")
        clock = Clock()
        with pytest.raises(rm.RemediationError, match="no roaster 'nope'"):
            run(store, s, "open-circuit", target="nope", now=clock)
        plan = run(store, s, "open-circuit", target="beans", params={"minutes": 30}, dry_run=True, now=clock)
        assert plan.status == "planned" and "until 2026-11-30 10:30 UTC" in plan.summary
        held = run(store, s, "open-circuit", target="beans", params={"minutes": 30}, now=clock)
        assert held.status == "ok" and _circuit_gauge("beans") == 2.0
        server.clear_requests()
        blocked = asyncio.run(run_many(["beans"], "full", settings=s, factory=store.factory))[0]
        assert blocked.status == "fail"
        assert any(e["kind"] == "circuit_open" for e in blocked.errors), blocked.errors
        assert server.requests("beans") == []  # no request reached the shop while held open

        released = run(store, s, "close-circuit", target="beans", now=clock)
        assert released.status == "ok" and _circuit_gauge("beans") == 0.0
        again = run(store, s, "close-circuit", target="beans", now=clock)
        assert again.status == "skipped"
        ok = asyncio.run(run_many(["beans"], "full", settings=s, factory=store.factory))[0]
        assert ok.status == "ok", ok.errors
        assert server.requests("beans")
    with store.session() as session:
        roaster = session.scalars(select(Roaster)).one()
        assert "circuit_override" not in roaster.fetch_state
    store.close()


# --- the scraping queue ---------------------------------------------------------------------------------------


def test_pause_and_resume_the_scraping_queue(tmp_path: Path, store: IncidentStore) -> None:
    s = recovery_settings(store.url, tmp_path)
    clock = Clock()
    plan = run(store, s, "pause-queue", dry_run=True, now=clock)
    with store.session() as session:
        assert plan.status == "planned" and jobs.queue_paused(session) == (False, None)
    paused = run(store, s, "pause-queue", params={"reason": "database trouble"}, actor="bob", now=clock)
    assert paused.status == "ok"
    with store.session() as session:
        assert jobs.queue_paused(session) == (True, "database trouble")
        assert jobs.queue_state(session).paused_by == "bob"
    assert run(store, s, "pause-queue", now=clock).status == "skipped"
    assert run(store, s, "resume-queue", now=clock).status == "ok"
    with store.session() as session:
        assert jobs.queue_paused(session)[0] is False
    assert run(store, s, "resume-queue", now=clock).status == "skipped"


# --- restart-service (systemd's command line tool stands in for systemd) ---------------------------------------------


def _fake_systemctl(tmp_path: Path, exit_code: int = 0) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "systemctl.calls"
    script = bin_dir / "systemctl"
    script.write_text(
        f'#!/bin/sh\necho "$@" >> {calls}\n'
        + ("echo 'Access denied' >&2\n" if exit_code else "")
        + f"exit {exit_code}\n"
    )
    script.chmod(0o755)
    return calls


def test_restart_service_through_systemd_or_says_how_without_it(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = IncidentStore(sqlite_url)
    none = run(store, recovery_settings(sqlite_url, tmp_path), "restart-service")
    assert none.status == "skipped" and "docker compose restart" in none.summary

    calls = _fake_systemctl(tmp_path)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    s = recovery_settings(sqlite_url, tmp_path, service_manager="systemd", systemd_unit="coffee-scraper-test")
    plan = run(store, s, "restart-service", dry_run=True)
    assert plan.status == "planned" and not calls.exists()
    done = run(store, s, "restart-service")
    assert done.status == "ok"
    assert calls.read_text().split() == ["restart", "--no-block", "coffee-scraper-test"]

    (tmp_path / "bin" / "systemctl").unlink()
    _fake_systemctl(tmp_path, exit_code=1)
    failed = run(store, s, "restart-service")
    assert failed.status == "failed" and "Access denied" in failed.summary
    store.close()


# --- reconnect-db -------------------------------------------------------------------------------------------------


def test_reconnect_db_resets_registered_pools_and_probes(tmp_path: Path, store: IncidentStore) -> None:
    s = recovery_settings(store.url, tmp_path)
    engine = db.make_engine(store.url)
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    pool_before = engine.pool
    rm.register_engine("test-app", engine)
    try:
        plan = run(store, s, "reconnect-db", dry_run=True)
        assert plan.status == "planned" and "test-app" in plan.summary
        assert engine.pool is pool_before
        done = run(store, s, "reconnect-db")
        assert done.status == "ok" and "pool(s) reset" in done.summary
        assert engine.pool is not pool_before  # disposed: the next connection is a fresh one
    finally:
        rm.unregister_engine("test-app")
        engine.dispose()
    dead = s.model_copy(update={"database_url": f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x"})
    failed = run(store, dead, "reconnect-db")
    assert failed.status == "failed" and "still does not answer" in failed.summary


# --- audit trail on the incident's timeline; automatic remediation -------------------------------------------------


def test_a_run_with_an_incident_goes_on_its_timeline_and_unknown_incidents_are_refused(
    tmp_path: Path, store: IncidentStore
) -> None:
    s = recovery_settings(store.url, tmp_path)
    incident = store.declare("Catalog not updating", severity="P2", at=T0)
    record = run(store, s, "pause-queue", incident_id=incident, actor="carol", now=Clock(T0))
    entries = [e for e in store.events(incident, "diagnostic") if e.data.get("type") == "remediation"]
    assert len(entries) == 1
    assert entries[0].actor == "carol" and entries[0].data["action"] == "pause-queue"
    assert entries[0].message.startswith("remediation: pause-queue: ok")
    assert audit_rows(store)[-1].incident_id == incident and record.id == audit_rows(store)[-1].id
    before = len(audit_rows(store))
    with pytest.raises(rm.RemediationError, match="no incident INC-20000101-001"):
        run(store, s, "resume-queue", incident_id="INC-20000101-001")
    assert len(audit_rows(store)) == before  # nothing ran, nothing recorded
    with pytest.raises(rm.RemediationError, match="unknown action"):
        run(store, s, "delete-everything")


def test_automatic_remediation_only_where_the_settings_allow(tmp_path: Path, store: IncidentStore) -> None:
    s = recovery_settings(store.url, tmp_path)
    p0 = store.alert("DatabaseDown", severity="P0", at=T0, category="Database Failure")
    p2 = store.alert("HighValidationErrorRate", severity="P2", at=T0)
    assert p0 and p2
    records = rm.auto_remediate(
        store.get(p0), settings=s, catalog_factory=store.factory, incidents_factory=store.factory, now=Clock(T0)
    )
    assert [(r.action, r.status, r.automatic, r.actor) for r in records] == [("pause-queue", "ok", True, rm.AUTO_ACTOR)]
    assert (
        rm.auto_remediate(store.get(p2), settings=s, catalog_factory=store.factory, incidents_factory=store.factory)
        == []
    )
    off = s.model_copy(update={"auto_pause_queue_on_storage_p0": False})
    assert (
        rm.auto_remediate(store.get(p0), settings=off, catalog_factory=store.factory, incidents_factory=store.factory)
        == []
    )
    with store.session() as session:
        paused, reason = jobs.queue_paused(session)
    assert paused and reason and reason.startswith(p0)


# --- CLI and API -----------------------------------------------------------------------------------------------------


def test_cli_asks_before_destructive_actions_and_lists_actions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from coffee_scraper.cli import app

    monkeypatch.setenv("COFFEE_SCRAPER_DATABASE_URL", f"sqlite:///{tmp_path / 'c.db'}")
    monkeypatch.setenv("COFFEE_SCRAPER_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("COFFEE_SCRAPER_TEMP_DIR", str(tmp_path))
    monkeypatch.setenv("COFFEE_SCRAPER_TEMP_MIN_AGE_S", "0")
    (tmp_path / "coffee-scraper-x").write_text("x")
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        listed = runner.invoke(app, ["remediate"])
        assert listed.exit_code == 0 and "prune-artifacts" in listed.output
        refused = runner.invoke(app, ["remediate", "clean-temp"])
        assert refused.exit_code == 2 and "--yes" in refused.output
        assert (tmp_path / "coffee-scraper-x").exists()
        plan = runner.invoke(app, ["remediate", "clean-temp", "--dry-run"])
        assert plan.exit_code == 0 and "would remove 1" in plan.output
        done = runner.invoke(app, ["remediate", "clean-temp", "--yes", "--json"])
        assert done.exit_code == 0, done.output
        assert not (tmp_path / "coffee-scraper-x").exists()
        unknown = runner.invoke(app, ["remediate", "nope"])
        assert unknown.exit_code == 2 and "choose from" in unknown.output
        no_target = runner.invoke(app, ["remediate", "open-circuit"])
        assert no_target.exit_code == 2 and "needs a ROASTER" in no_target.output
    finally:
        get_settings.cache_clear()


def test_api_remediation_is_a_dry_run_unless_asked_and_needs_the_token(tmp_path: Path, sqlite_url: str) -> None:
    import httpx

    store = IncidentStore(sqlite_url)
    s = recovery_settings(sqlite_url, tmp_path)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with serve_in_thread(create_app(s)) as port:
        base = f"http://127.0.0.1:{port}"
        assert httpx.post(f"{base}/api/v1/remediation/pause-queue", json={}).status_code == 401
        planned = httpx.post(f"{base}/api/v1/remediation/pause-queue", json={}, headers=headers).json()
        assert planned["status"] == "planned" and planned["dry_run"] is True
        real = httpx.post(
            f"{base}/api/v1/remediation/pause-queue", json={"dry_run": False, "reason": "api"}, headers=headers
        ).json()
        assert real["status"] == "ok" and real["actor"] == "api"
        missing = httpx.post(f"{base}/api/v1/remediation/nope", json={}, headers=headers)
        assert missing.status_code == 404 and "choose from" in missing.json()["detail"]
        runs = httpx.get(f"{base}/api/v1/remediation/runs", headers=headers).json()
        assert [r["dry_run"] for r in runs] == [False, True]
        actions = httpx.get(f"{base}/api/v1/remediation/actions", headers=headers).json()
        assert {a["name"] for a in actions} == set(rm.ACTIONS)
    with store.session() as session:
        assert jobs.queue_paused(session) == (True, "api")
    store.close()
