"""Loose ends of the incident subsystem, end to end on real databases: the post-incident checklists shown with the
incident (CLI, ``--json``, REST), one incident store for every entry point (catalog and incidents in two SQLite
files: CLI, REST API and watchdog all write the store, ``incidents list`` and ``notify`` read it), and drill marking
through the ``drill="true"`` alert label.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from coffee_scraper.catalog import db
from coffee_scraper.cli import app as cli_app
from coffee_scraper.incidents import flows, followup, service
from coffee_scraper.incidents.alert_config import AlertSettings
from coffee_scraper.incidents.models import Incident
from coffee_scraper.incidents.notify import config as notify_config
from coffee_scraper.incidents.notify.models import NotificationOutbox
from coffee_scraper.settings import get_settings
from coffee_scraper.web import create_app
from tests.incidents.core_support import T0, Store, am_alert, am_body, api_settings
from tests.incidents.watchdog_support import Clock, make_watchdog, watchdog_settings
from tests.support import free_port, serve_in_thread

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``coffee-scraper ARGS`` in-process; ``cli.env(...)`` sets COFFEE_SCRAPER_* variables first."""
    monkeypatch.setenv("COFFEE_SCRAPER_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("COFFEE_SCRAPER_ONCALL_FILE", str(tmp_path / "none.toml"))
    monkeypatch.setenv("USER", "tester")
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> Any:
        get_settings.cache_clear()
        result = runner.invoke(cli_app, list(args))
        assert result.exit_code == code, (args, result.exit_code, result.output)
        return result

    def env(**values: str) -> None:
        for key, value in values.items():
            monkeypatch.setenv(f"COFFEE_SCRAPER_{key.upper()}", value)

    run.env = env  # type: ignore[attr-defined]
    notify_config.reset()  # reactions read the notification settings of this test's environment
    yield run
    get_settings.cache_clear()
    notify_config.reset()


# --- 1. the post-incident checklists with the incident --------------------------------------------------------------


def test_show_lists_the_post_incident_checklists_in_cli_json_and_rest(
    cli: Any, sqlite_url: str, tmp_path: Path
) -> None:
    cli.env(database_url=sqlite_url)
    iid = json.loads(cli("incidents", "declare", "-s", "P1", "-t", "Catalog not updating", "--json").stdout)["id"]
    before = json.loads(cli("incidents", "show", iid, "--json").stdout)
    assert before["checklist"] == []
    assert "Post-incident checklists: start at resolution" in cli("incidents", "show", iid).stdout
    cli(
        "incidents", "resolve", iid, "--root-cause", "Expired password", "--resolution", "Rotated it",
        "--prevention", "Alert on auth failures",
    )  # fmt: skip
    store = Store(sqlite_url)
    with db.session_scope(store.factory) as session:  # what serve's recovery loop does at resolution
        incident = session.get(Incident, iid)
        assert incident is not None
        followup.create_checklists(session, incident, now=incident.resolved_at or T0)
    cli("incidents", "check", iid, "immediate.1")

    shown = json.loads(cli("incidents", "show", iid, "--json").stdout)
    rows = shown["checklist"]
    assert len(rows) == 21  # the runbook's four checklists (5 items each) and the prevention as an action item
    assert [r["phase"] for r in rows[::5]] == ["immediate", "documentation", "postmortem", "followup", "action"]
    assert rows[0]["item"] == "immediate.1" and rows[0]["text"] == "Verify system is fully operational"
    assert rows[0]["done_by"] == "cli" and rows[0]["done_at"] is not None
    assert rows[-1] == rows[-1] | {"item": "action.1", "text": "Alert on auth failures", "type": "prevent"}
    text = cli("incidents", "show", iid).stdout
    assert "Post-incident checklists (1/21 done)" in text
    for item in ("Verify system is fully operational", "Schedule post-mortem meeting", "Improve alerting rules"):
        assert item in text

    app = create_app(api_settings(sqlite_url, tmp_path, api_token=TOKEN))
    app.state.incident_clock = lambda: datetime.now(UTC) + timedelta(days=2)  # the immediate items are overdue
    with serve_in_thread(app) as port:
        detail = httpx.get(f"http://127.0.0.1:{port}/api/v1/incidents/{iid}", headers=AUTH, timeout=30).json()
    store.close()
    assert [r["item"] for r in detail["checklist"]] == [r["item"] for r in rows]
    immediate = [r for r in detail["checklist"] if r["phase"] == "immediate"]
    assert [r["overdue"] for r in immediate] == [False, True, True, True, True]  # the first one is done


# --- 6. one incident store everywhere ------------------------------------------------------------------------------


def test_cli_rest_and_watchdog_all_write_the_incident_store_and_list_reads_it(cli: Any, tmp_path: Path) -> None:
    catalog = f"sqlite:///{tmp_path / 'catalog.db'}"
    store_url = f"sqlite:///{tmp_path / 'incidents.db'}"
    hook = f"http://127.0.0.1:{free_port()}/hook"  # nobody listens: messages stay in the outbox
    db.upgrade(catalog)  # both databases have the whole schema; only the store may hold incidents
    cli.env(database_url=catalog, incidents_database_url=store_url, webhook_url=hook)

    by_cli = json.loads(cli("incidents", "declare", "-s", "P2", "-t", "declared on the CLI", "--json").stdout)["id"]

    settings = api_settings(catalog, tmp_path, api_token=TOKEN, incidents_database_url=store_url, webhook_url=hook)
    with serve_in_thread(create_app(settings)) as port, httpx.Client(timeout=30) as client:
        base = f"http://127.0.0.1:{port}"
        declared = client.post(
            f"{base}/api/v1/incidents", json={"title": "declared over REST", "severity": "P3"}, headers=AUTH
        )
        assert declared.status_code == 201, declared.text
        by_rest = declared.json()["id"]
        received = client.post(
            f"{base}/api/v1/alerts/alertmanager", json=am_body(am_alert("RoasterStale", severity="P3")), headers=AUTH
        )
        assert received.status_code == 200, received.text
        listed = client.get(f"{base}/api/v1/incidents", headers=AUTH).json()
    by_alert = next(i["id"] for i in listed["incidents"] if i["rule"] == "RoasterStale")

    wd_settings = watchdog_settings(catalog, tmp_path, incidents_database_url=store_url)
    watchdog = make_watchdog(
        wd_settings,
        Clock(datetime.now(UTC)),
        alert_settings=AlertSettings(_env_file=None, disk_warning_ratio=0.0, disk_critical_ratio=1.0),  # type: ignore[call-arg]
        only=("DiskUsageWarning",),
        for_zero=True,
    )
    try:
        evaluation = watchdog.run_once()
    finally:
        watchdog.close()
    assert evaluation.ingested == 1 and evaluation.spooled == 0, evaluation.ingest_error

    rows = json.loads(cli("incidents", "list", "--json").stdout)
    by_watchdog = next(r["id"] for r in rows if r["rule"] == "DiskUsageWarning")
    assert {by_cli, by_rest, by_alert, by_watchdog} <= {r["id"] for r in rows} and len(rows) == 4
    assert {r["source"] for r in rows} == {"manual", "alertmanager", "watchdog"}
    # the notify commands read the outbox of the incident store (not the catalog's)
    outbox = json.loads(cli("notify", "outbox", "--json").stdout)
    assert {r["incident"] for r in outbox} == {by_cli, by_rest, by_alert, by_watchdog}
    assert json.loads(cli("notify", "status", "--json").stdout)["channels"]["webhook"]["undelivered"] == len(outbox)
    for url, expected in ((store_url, 4), (catalog, 0)):
        engine = db.make_engine(url)
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(Incident)) == expected, url
            assert conn.scalar(select(func.count()).select_from(NotificationOutbox)) == (len(outbox) if expected else 0)
        engine.dispose()


# --- 7. drills through the alert label -----------------------------------------------------------------------------


def test_a_drill_labelled_alert_opens_a_drill_incident_grouped_apart_from_real_ones(db_url: str) -> None:
    store = Store(db_url)
    try:
        drill = store.am(am_body(am_alert("DiskUsageCritical", severity="P0", component="/data", drill="true")), T0)
        real = store.am(am_body(am_alert("DiskUsageCritical", severity="P0", component="/data")), T0)
        again = store.am(
            am_body(am_alert("DiskUsageCritical", severity="P0", component="/data", drill="true", instance="b")), T0
        )
        (drill_id,), (real_id,) = drill.incident_ids, real.incident_ids
        assert drill_id != real_id and again.incident_ids == [drill_id]  # each joins its own kind only
        assert again.outcomes[0].result == "grouped"
        drill_incident = next(i for i in store.incidents() if i.id == drill_id)
        real_incident = next(i for i in store.incidents() if i.id == real_id)
        assert drill_incident.is_drill and drill_incident.title.startswith("DRILL: ")
        assert not real_incident.is_drill and not real_incident.title.startswith("DRILL")
        with store.factory() as session:
            assert service.open_counts(session)["P0"] == 1  # drills are left out of the counts
        # a manual declaration is the other path to a drill
        declared = store.tx(
            lambda s: flows.declare(s, title="practice", severity="P2", actor="a", now=T0, is_drill=True).id
        )
        assert next(i for i in store.incidents() if i.id == declared).is_drill
    finally:
        store.close()


def test_db_upgrade_migrates_a_separate_incident_store_too(cli: Any, tmp_path: Path) -> None:
    catalog, store_url = f"sqlite:///{tmp_path / 'catalog.db'}", f"sqlite:///{tmp_path / 'incidents.db'}"
    cli.env(database_url=catalog, incidents_database_url=store_url)
    out = cli("db", "upgrade").stdout
    assert "catalog.db is at revision" in out and "incidents.db is at revision" in out
    for url in (catalog, store_url):
        engine = db.make_engine(url)
        assert db.migrations_current(engine), url
        engine.dispose()
