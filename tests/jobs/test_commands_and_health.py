"""The scheduling CLI (`jobs …`, `roasters add/list` cadences, `worker` refusals) and the readiness heartbeat check.

CLI commands run in-process through Typer's runner against a real SQLite file and a demo shop on 127.0.0.1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from coffee_scraper.catalog import db
from coffee_scraper.catalog.models import ScrapeRun, utcnow
from coffee_scraper.cli import app
from coffee_scraper.demo.catalog import make_shopify_products
from coffee_scraper.demo.server import DemoServer, DemoShop
from coffee_scraper.jobs import service as jobs
from coffee_scraper.jobs.runtime import Identity
from coffee_scraper.settings import Settings, get_settings
from coffee_scraper.web import create_app

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    for key, value in {
        "DATABASE_URL": url,
        "LOG_DIR": str(tmp_path / "logs"),
        "ALLOW_PRIVATE_ADDRESSES": "true",
        "REQUEST_DELAY_S": "0.01",
        "REQUEST_JITTER_S": "0",
    }.items():
        monkeypatch.setenv(f"COFFEE_SCRAPER_{key}", value)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_roaster_cadences_are_validated_listed_and_scheduled(env: str) -> None:
    code, out = cli("roasters", "add", "https://a.example", "--name", "a", "--price-cadence", "every sunday")
    assert code == 2 and "not a valid cron expression" in out and "0 4 * * 0" in out
    code, _ = cli("roasters", "add", "https://a.example", "--name", "a", "--price-cadence", "0 6 * * 1")
    assert code == 0
    code, _ = cli("roasters", "add", "https://b.example", "--name", "b")
    assert code == 0
    code, out = cli("roasters", "list", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["a"]["price_cadence"] == "0 6 * * 1" and rows["b"]["price_cadence"] == "0 4 * * 0"
    assert rows["a"]["full_cadence"] == rows["b"]["full_cadence"] == "0 3 1 * *"
    assert rows["a"]["next_price_at"] and rows["a"]["next_full_at"]  # never ran: its first full run is due now
    code, out = cli("roasters", "list")
    assert code == 0 and "0 6 * * 1" in out and "next price" in out
    code, out = cli("jobs", "list", "--json")
    listing = json.loads(out)
    assert listing["scheduler_mode"] == "embedded" and listing["queue"]["paused"] is False
    assert {(s["roaster"], s["mode"]) for s in listing["schedules"]} == {
        ("a", "price"),
        ("a", "full"),
        ("b", "price"),
        ("b", "full"),
    }
    code, out = cli("jobs", "list")
    assert code == 0 and "no scheduler or worker running" in out and "coffee-scraper serve" in out


def test_pause_resume_and_run_now_without_a_running_scheduler(env: str) -> None:
    shop = DemoShop("roastery", "shopify", make_shopify_products(12, seed=3))
    with DemoServer([shop]) as server:
        assert cli("roasters", "add", server.url("roastery"), "--name", "r", "--platform", "shopify")[0] == 0
        code, out = cli("jobs", "pause", "--reason", "database maintenance")
        assert code == 0 and "paused" in out
        code, out = cli("jobs", "run-now", "r")
        assert code == 2 and "database maintenance" in out and "jobs resume" in out
        assert cli("jobs", "resume")[0] == 0
        code, out = cli("jobs", "pause", "r", "--reason", "shop closed for a month", "--json")
        assert code == 0 and json.loads(out)["changed"] is True
        code, out = cli("jobs", "run-now", "r", "--mode", "price")
        assert code == 2 and "shop closed for a month" in out and "jobs resume r" in out
        code, out = cli("roasters", "list", "--json")
        assert json.loads(out)[0]["paused_reason"] == "shop closed for a month"
        assert cli("jobs", "resume", "r")[0] == 0
        code, out = cli("jobs", "run-now", "r", "--mode", "price")  # no scheduler running: runs right here
        assert code == 0, out
        assert cli("jobs", "run-now", "r", "--mode", "weekly")[0] == 2
    engine = db.make_engine(env)
    with db.session_factory(engine)() as session:
        runs = [(r.mode, r.status) for r in session.scalars(select(ScrapeRun))]
        schedule = jobs.schedule_for(session, 1, "price")
    engine.dispose()
    assert runs == [("price", "ok")]
    assert schedule is not None and schedule.last_status == "ok"


def test_worker_refuses_sqlite_with_the_fix(env: str) -> None:
    code, out = cli("worker")
    assert code == 2 and "PostgreSQL" in out and "coffee-scraper serve" in out


def test_readiness_names_a_stale_worker_until_it_is_forgotten(env: str, tmp_path: Path) -> None:
    db.upgrade(env)
    settings = Settings(database_url=env, log_dir=tmp_path / "logs", scheduler_tick_s=3600)
    with TestClient(create_app(settings)) as client:
        body = client.get("/health/ready").json()
        assert body["status"] == "ok", body
        beats = body["checks"]["heartbeats"]
        assert beats["ok"] is True and any(c.startswith("scheduler ") for c in beats["components"])
        engine = db.make_engine(env)
        with db.session_scope(db.session_factory(engine)) as session:
            jobs.beat(session, Identity("worker", "w-old"), now=utcnow() - timedelta(hours=2))
        engine.dispose()
        answer = client.get("/health/ready")
        assert answer.status_code == 503
        check = answer.json()["checks"]["heartbeats"]
        assert answer.json()["failed"] == ["heartbeats"]
        assert [s["instance"] for s in check["stale"]] == ["w-old"] and "worker w-old" in check["error"]
        code, out = cli("jobs", "forget", "w-old")
        assert code == 0 and "forgot 1" in out
        assert client.get("/health/ready").status_code == 200
    # the scheduler stopped cleanly with the app: its heartbeat is not stale afterwards
    engine = db.make_engine(env)
    with db.session_factory(engine)() as session:
        assert jobs.stale_heartbeats(session, utcnow() + timedelta(days=1), 60) == []
        schedulers = [h for h in jobs.heartbeats(session, include_stopped=True) if h.component == "scheduler"]
        assert len(schedulers) == 1 and schedulers[0].stopped_at is not None
    engine.dispose()
