"""Drills: every scenario as a full drill on SQLite and PostgreSQL (a real fault, the real watchdog code, the real
incident flows, notifications delivered to a local Slack peer by the real outbox), and the Done-when run:
`coffee-scraper drill db-outage` against a running `serve` over HTTP.

Drills run with ``fast`` (the scenario rules' ``for`` at zero, rate windows of seconds) so a drill takes seconds;
the faults themselves are real: refused connections, failing writes, a shop answering 503/429, held memory, a
closed Slack port.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from typer.testing import CliRunner

from coffee_scraper.catalog import db
from coffee_scraper.catalog.models import Roaster
from coffee_scraper.incidents import drills
from coffee_scraper.incidents.models import Incident, IncidentEvent
from coffee_scraper.incidents.notify import config as notify_config
from coffee_scraper.incidents.ops_models import DrillRun, Postmortem
from coffee_scraper.incidents.runner import IncidentRunner
from coffee_scraper.settings import Settings, get_settings
from coffee_scraper.web import create_app
from tests.incidents.notify.peers import SlackPeer
from tests.incidents.recovery_support import TOKEN, IncidentStore, recovery_settings
from tests.support import serve_in_thread

ROSTER = (
    '[people.ana]\nname = "Ana"\nslack = "@ana"\n[roles]\noncall_primary = "ana"\nsenior_engineer = "ana"\n'
    'engineering_manager = "ana"\n'
)
STEPS_PASSING = (
    "fault",
    "detection",
    "classification",
    "notification",
    "escalation",
    "diagnostics",
    "recovery",
    "resolution",
    "checklists",
    "postmortem",
    "cleanup",
)


@pytest.fixture(autouse=True)
def _isolated() -> Iterator[None]:
    yield
    notify_config.reset()
    drills.clear_marking()


@pytest.fixture
def slack() -> Iterator[SlackPeer]:
    peer = SlackPeer()
    with serve_in_thread(peer.app) as port:
        peer.url = f"http://127.0.0.1:{port}{peer.path}"  # type: ignore[attr-defined]
        yield peer


def drill_settings(catalog_url: str, tmp: Path, slack: SlackPeer, **extra: Any) -> Settings:
    (tmp / "oncall.toml").write_text(ROSTER)
    incidents = f"sqlite:///{tmp / 'incidents.db'}"
    db.upgrade(catalog_url)
    db.upgrade(incidents)
    return recovery_settings(
        catalog_url,
        tmp,
        incidents_database_url=incidents,
        slack_webhook_url=slack.url,  # type: ignore[attr-defined]
        watchdog_disk_paths=[str(tmp)],
        **extra,
    )


def run_drill(scenario: str, settings: Settings, **options: Any) -> dict[str, Any]:
    store = settings.model_copy(update={"database_url": settings.incidents_database_url})
    runner = IncidentRunner(store, heartbeat=False)
    try:
        opts = drills.DrillOptions(fast=True, timeout_s=60, **options)
        return drills.Drill(scenario, settings, options=opts, drive=lambda: runner.run_once()).run()
    finally:
        runner.outbox.close()


def incidents_of(settings: Settings) -> list[Incident]:
    store = IncidentStore(str(settings.incidents_database_url))
    try:
        with store.session() as session:
            return list(session.scalars(select(Incident).order_by(Incident.id)))
    finally:
        store.close()


@pytest.mark.parametrize("scenario", list(drills.SCENARIOS))
def test_full_drill_per_scenario(scenario: str, db_url: str, tmp_path: Path, slack: SlackPeer) -> None:
    settings = drill_settings(db_url, tmp_path, slack)
    card = run_drill(scenario, settings)
    steps = {s["name"]: s for s in card["steps"]}
    assert card["status"] == "passed", [(s["name"], s["status"], s["detail"]) for s in card["steps"]]
    for name in STEPS_PASSING:
        assert steps[name]["status"] == "pass", (name, steps[name])
    assert steps["detection"]["elapsed_s"] <= steps["detection"]["target_s"]
    assert steps["classification"]["detail"].startswith(drills.SCENARIOS[scenario].severity)
    # drill-marked everywhere: the incident, its title, the messages; the stand-ins, not Ana, were named
    incident = next(i for i in incidents_of(settings) if i.id == card["incident_id"])
    assert incident.is_drill and incident.title.startswith("DRILL: ") and incident.status == "resolved"
    assert incident.rule == drills.SCENARIOS[scenario].rules[0]
    texts = [m["text"] for m in slack.messages if card["incident_id"] in m["text"]]
    assert texts and all("🧪 This is a drill." in t for t in texts)
    assert not any("@ana" in t for t in slack.texts())
    store = IncidentStore(str(settings.incidents_database_url))
    with store.session() as session:
        run = session.scalars(select(DrillRun)).one()
        assert run.status == "passed" and run.incident_id == incident.id and run.fault_reverted_at is not None
        assert run.scorecard["steps"] == card["steps"]
        scorecards = [
            e
            for e in session.scalars(select(IncidentEvent).where(IncidentEvent.incident_id == incident.id))
            if (e.data or {}).get("type") == "drill_scorecard"
        ]
        assert len(scorecards) == 1 and scorecards[0].message.startswith(f"drill {run.id} ({scenario}) passed")
        if incident.severity in ("P0", "P1"):
            assert session.get(Postmortem, incident.id).markdown  # type: ignore[union-attr]
    store.close()
    # the fault is gone: the catalog answers and takes writes, the drill roaster is removed, Slack is the real one
    engine = db.make_engine(db_url)
    with db.session_scope(db.session_factory(engine)) as session:
        session.execute(text("UPDATE roasters SET paused_reason = NULL WHERE id = -1"))
        assert session.scalars(select(Roaster).where(Roaster.name.like("drill-%"))).all() == []
    engine.dispose()
    assert notify_config.current().settings.slack_webhook_url.get_secret_value() == slack.url  # type: ignore[union-attr,attr-defined]
    assert notify_config.current().roster.who("engineering_manager", incident.opened_at).key == "ana"  # type: ignore[union-attr]


def test_paging_real_people_only_when_asked(sqlite_url: str, tmp_path: Path, slack: SlackPeer) -> None:
    settings = drill_settings(sqlite_url, tmp_path, slack)
    card = run_drill("disk", settings, page=True)
    assert card["status"] == "passed"
    opening = next(m["text"] for m in slack.messages if m["text"].startswith("🚨 INCIDENT"))
    assert "@ana" in opening and "@drill-" not in opening


def test_marking_covers_the_drill_rules_only_and_ends(sqlite_url: str, tmp_path: Path, slack: SlackPeer) -> None:
    """During a drill's cool-down the process's own watchdog labels alerts of the scenario's rules drill="true"
    (their incidents are drills); other rules' alerts are real; once the marking ends, new alerts are real."""
    from dataclasses import replace

    from coffee_scraper.incidents.alert_config import AlertSettings, load_alert_config
    from coffee_scraper.incidents.watchdog import Watchdog

    settings = drill_settings(sqlite_url, tmp_path, slack)
    run_drill("disk", settings, cooldown_s=3600)
    thresholds = {"disk_warning_ratio": 0.0, "disk_critical_ratio": 1.0, "memory_pressure_ratio": 0.0,
                  "memory_high_ratio": 1.0, "memory_exhaustion_ratio": 1.0}  # fmt: skip
    alert_settings = AlertSettings(_env_file=None, **thresholds)  # type: ignore[call-arg]
    config = load_alert_config(alert_settings)
    rules = [replace(config.rule(r), for_="0s") for r in ("DiskUsageWarning", "MemoryPressure")]

    def watchdog_pass(path: Path) -> None:
        path.mkdir(exist_ok=True)
        s = settings.model_copy(
            update={
                "watchdog_disk_paths": [str(path)],
                "watchdog_state_file": tmp_path / f"state-{path.name}.json",
                "watchdog_spool_file": tmp_path / f"spool-{path.name}.jsonl",
            }
        )
        watchdog = Watchdog(s, alert_settings=alert_settings, rules=rules, load_state=False)
        try:
            evaluation = watchdog.run_once()
            assert evaluation.ingested == 2 and not evaluation.ingest_error, evaluation.ingest_error
        finally:
            watchdog.close()

    def opened(rule: str) -> list[Incident]:
        return [i for i in incidents_of(settings) if i.rule == rule and i.status != "resolved"]

    watchdog_pass(tmp_path / "during")  # in the cool-down: DiskUsageWarning is the drill's collateral rule
    (collateral,) = opened("DiskUsageWarning")
    (unrelated,) = opened("MemoryPressure")
    assert collateral.is_drill and collateral.title.startswith("DRILL: ")
    assert not unrelated.is_drill
    drills.clear_marking()
    watchdog_pass(tmp_path / "after")  # another disk: a new alert, after the marking
    later = [i for i in opened("DiskUsageWarning") if i.id != collateral.id]
    assert len(later) == 1 and later[0].is_drill is False
    assert [i.id for i in opened("MemoryPressure")] == [unrelated.id]  # still the same real one


def test_unknown_scenario_is_refused() -> None:
    with pytest.raises(drills.DrillError, match="choose from db-outage"):
        drills.Drill("meteor", Settings(_env_file=None))  # type: ignore[call-arg]


# --- Done when: `coffee-scraper drill db-outage` against a running serve -----------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def test_cli_drill_db_outage_against_a_running_serve(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, slack: SlackPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from coffee_scraper.cli import app as cli_app

    catalog = str(request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url"))
    settings = drill_settings(
        catalog, tmp_path, slack, incident_runner_enabled=True, incident_runner_interval_s=0.2, recovery_interval_s=0.5
    )
    with serve_in_thread(create_app(settings)) as port:
        server = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        assert httpx.post(f"{server}/api/v1/drills", json={"scenario": "meteor"}, headers=headers).status_code == 404
        assert httpx.post(f"{server}/api/v1/drills", json={"scenario": "disk"}).status_code == 401
        monkeypatch.setenv("COFFEE_SCRAPER_API_TOKEN", TOKEN)
        monkeypatch.setenv("COFFEE_SCRAPER_DATABASE_URL", catalog)
        monkeypatch.setenv("COFFEE_SCRAPER_LOG_DIR", str(tmp_path / "logs"))
        get_settings.cache_clear()
        try:
            result = CliRunner().invoke(
                cli_app, ["drill", "db-outage", "--fast", "--server", server, "--timeout", "60"]
            )
        finally:
            get_settings.cache_clear()
        assert result.exit_code == 0, result.output
        for step in (
            "detection",
            "classification",
            "notification",
            "escalation",
            "remediation",
            "resolution",
            "checklists",
            "postmortem",
        ):
            assert f"{step}: pass" in result.output
        assert "drill 1 db-outage: passed" in result.output
        runs = httpx.get(f"{server}/api/v1/drills", headers=headers).json()
        assert runs[0]["status"] == "passed" and runs[0]["scenario"] == "db-outage"
        steps = {s["name"]: s for s in runs[0]["scorecard"]["steps"]}
        assert "pool(s) reset; database answers SELECT 1" in steps["remediation"]["detail"]  # the app's pools
        ready = httpx.get(f"{server}/health/ready")
        assert ready.status_code == 200  # the app recovered: its pools reconnect to the catalog
    assert any(m["text"].startswith("✅ RESOLVED") for m in slack.messages)


def test_cli_lists_scenarios() -> None:
    from coffee_scraper.cli import app as cli_app

    result = CliRunner().invoke(cli_app, ["drill", "--json"])
    assert result.exit_code == 0
    assert [r["scenario"] for r in __import__("json").loads(result.stdout)] == list(drills.SCENARIOS)
