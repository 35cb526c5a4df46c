"""Post-incident follow-through on real incidents (opened by the real ingestion, resolved by the real flows):
checklists with due times and owners on an injected clock, automatic checks from real diagnostics, reminders,
postmortem requirement and draft contents, GitHub issues for action items, the weekly report, the recovery loop,
and the CLI/API around them.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from coffee_scraper.catalog import db
from coffee_scraper.incidents import followup as fu
from coffee_scraper.incidents import remediation as rm
from coffee_scraper.incidents.notify import config as notify_config
from coffee_scraper.incidents.notify.models import NotificationOutbox
from coffee_scraper.incidents.ops_models import ChecklistItem, Postmortem
from coffee_scraper.settings import get_settings
from coffee_scraper.web import create_app
from tests.incidents.notify.peers import GitHubPeer
from tests.incidents.recovery_support import TOKEN, Clock, IncidentStore, recovery_settings
from tests.support import serve_in_thread

ROSTER = """timezone = "UTC"
[people.ana]
name = "Ana"
slack = "@ana"
email = "ana@example.org"
[people.max]
name = "Max"
slack = "@max"
email = "max@example.org"
[roles]
oncall_primary = "ana"
engineering_manager = "max"
"""


@pytest.fixture
def store(db_url: str) -> IncidentStore:
    s = IncidentStore(db_url)
    yield s  # type: ignore[misc]
    s.close()


@pytest.fixture(autouse=True)
def _fresh_notify_config() -> object:
    yield None
    notify_config.reset()


def resolved_p0(store: IncidentStore, clock: Clock) -> str:
    """A P0 from the real ingestion: acknowledged after 5 min, resolved after 40 min."""
    incident = store.alert("DatabaseDown", severity="P0", at=clock(), component="catalog-db")
    assert incident
    store.ack(incident, clock.advance(minutes=5))
    store.resolve(incident, clock.advance(minutes=35))
    return incident


def items(store: IncidentStore, incident_id: str) -> list[ChecklistItem]:
    with store.session() as session:
        return fu.checklist(session, incident_id)


# --- checklists and timers ------------------------------------------------------------------------------------


def test_resolution_creates_the_four_checklists_with_due_times_and_owners(tmp_path: Path, store: IncidentStore) -> None:
    (tmp_path / "oncall.toml").write_text(ROSTER)
    s = recovery_settings(store.url, tmp_path)
    clock = Clock()
    incident = resolved_p0(store, clock)
    resolved_at = clock()
    loop = fu.RecoveryLoop(s, incidents_factory=store.factory, now=clock)
    loop._on_resolve(fu.LoopPass())
    rows = items(store, incident)
    by_phase: dict[str, list[ChecklistItem]] = {}
    for r in rows:
        by_phase.setdefault(r.phase, []).append(r)
    assert [len(by_phase[p]) for p in ("immediate", "documentation", "postmortem", "followup")] == [5, 5, 5, 5]
    assert {r.due_at - resolved_at for r in by_phase["immediate"]} == {timedelta(hours=1)}
    assert {r.due_at - resolved_at for r in by_phase["documentation"]} == {timedelta(hours=24)}
    assert {r.due_at - resolved_at for r in by_phase["postmortem"]} == {timedelta(days=7)}
    assert {r.due_at - resolved_at for r in by_phase["followup"]} == {timedelta(days=30)}
    assert by_phase["immediate"][0].text == "Verify system is fully operational"
    assert (
        by_phase["postmortem"][0].text == "Schedule post-mortem meeting" and by_phase["postmortem"][0].owner == "@max"
    )
    assert by_phase["immediate"][3].owner == "alice"  # the incident's owner (who acknowledged it)
    assert [(a.text, a.item_type) for a in by_phase["action"]] == [("alert on connection count", "prevent")]
    # root cause and resolution are in the record: checked at once
    docs = {r.text: r for r in by_phase["documentation"]}
    assert docs["Identify root cause"].done_by == "system" and docs["Document resolution steps"].done_by == "system"
    # idempotent: a second pass adds nothing
    loop._on_resolve(fu.LoopPass())
    assert len(items(store, incident)) == len(rows)
    with store.session() as session:
        pm = session.get(Postmortem, incident)
        assert pm is not None and pm.required and pm.reasons == ["severity P0"] and pm.markdown
    record_checked = [i for i in items(store, incident) if i.text == "Record timeline of events"]
    assert record_checked[0].done_at is not None  # the draft with the timeline exists


def test_overdue_items_are_reminded_on_the_timeline_and_to_slack_with_an_injected_clock(
    tmp_path: Path, store: IncidentStore
) -> None:
    (tmp_path / "oncall.toml").write_text(ROSTER)
    s = recovery_settings(store.url, tmp_path, slack_webhook_url="http://127.0.0.1:9/services/T/B/X")
    notify_config.configure(s)
    clock = Clock()
    incident = resolved_p0(store, clock)
    with db.session_scope(store.factory) as session:
        fu.create_checklists(session, store.get(incident), now=clock(), roster=None)
    hour = timedelta(hours=1)

    def remind() -> list[ChecklistItem]:
        with db.session_scope(store.factory) as session:
            return fu.remind_overdue(session, now=clock(), interval=hour)

    clock.advance(minutes=59)
    assert remind() == []  # nothing is due yet
    clock.advance(minutes=2)
    first = remind()
    open_immediate = [i for i in items(store, incident) if i.phase == "immediate" and i.done_at is None]
    assert {i.id for i in first} == {i.id for i in open_immediate} and len(first) == 5
    clock.advance(minutes=30)
    assert remind() == []  # reminded less than an hour ago
    with db.session_scope(store.factory) as session:
        fu.check_item(session, incident, "immediate.4", actor="ana", now=clock(), note="status page updated")
    clock.advance(minutes=31)
    again = remind()
    assert len(again) == 4 and all(i.reminders == 2 for i in again)
    comments = [e for e in store.events(incident, "comment") if e.data.get("type") == "checklist_reminder"]
    assert len(comments) == 2 and "5 post-incident item(s) overdue" in comments[0].message
    with store.session() as session:
        slack = [
            r
            for r in session.scalars(select(NotificationOutbox).where(NotificationOutbox.kind == "checklist_reminder"))
        ]
    assert len(slack) >= 2 and all(r.channel in ("slack", "email") for r in slack)
    assert "Post-incident follow-up overdue" in next(r for r in slack if r.channel == "slack").payload["text"]
    with store.session() as session:
        overdue = fu.overdue_items(session, clock(), incident_id=incident)
    assert "Update status page if applicable" not in {i.text for i in overdue}


def test_auto_checks_from_real_diagnostics_need_a_running_service(tmp_path: Path, sqlite_url: str) -> None:
    store = IncidentStore(sqlite_url)
    s = recovery_settings(sqlite_url, tmp_path)
    clock = Clock()
    incident = resolved_p0(store, clock)
    loop = fu.RecoveryLoop(s, incidents_factory=store.factory, catalog_factory=store.factory, now=clock)
    loop.run_once()  # nothing serves: "operational" cannot be confirmed
    state = {i.text: i.done_at for i in items(store, incident)}
    assert state["Verify system is fully operational"] is None
    with serve_in_thread(create_app(s)) as port:
        live = s.model_copy(update={"diagnostics_service_url": f"http://127.0.0.1:{port}"})
        loop = fu.RecoveryLoop(live, incidents_factory=store.factory, catalog_factory=store.factory, now=clock)
        clock.advance(minutes=10)
        loop.run_once()
    state = {i.text: i for i in items(store, incident)}
    assert state["Verify system is fully operational"].done_by == "system"
    assert state["Check all services are healthy"].done_at is not None
    assert "diagnostics:" in (state["Verify system is fully operational"].note or "")
    assert state["Monitor for recurrence"].done_at is None  # needs an hour without re-firing
    clock.advance(hours=1)
    loop.run_once()
    assert {i.text: i for i in items(store, incident)}["Monitor for recurrence"].done_at is not None
    diags = [e for e in store.events(incident, "diagnostic") if e.data.get("type") == "diagnostics"]
    assert diags and diags[-1].data["checks"]
    store.close()


def test_recurrence_keeps_monitor_for_recurrence_open(tmp_path: Path, store: IncidentStore) -> None:
    clock = Clock()
    incident = resolved_p0(store, clock)
    with db.session_scope(store.factory) as session:
        fu.create_checklists(session, store.get(incident), now=clock())
    clock.advance(minutes=20)
    again = store.alert("DatabaseDown", severity="P0", at=clock(), component="catalog-db")
    clock.advance(hours=1)
    with db.session_scope(store.factory) as session:
        fu.apply_auto_checks(session, store.get(incident), now=clock())
    assert {i.text: i.done_at for i in items(store, incident)}["Monitor for recurrence"] is None
    assert again is not None


# --- postmortems -------------------------------------------------------------------------------------------------


def test_postmortem_requirement_follows_the_criteria(store: IncidentStore) -> None:
    clock = Clock()
    p0 = resolved_p0(store, clock)
    quick = store.alert("HighValidationErrorRate", severity="P2", at=clock.advance(hours=1))
    assert quick
    store.ack(quick, clock.advance(minutes=10))
    store.resolve(quick, clock.advance(minutes=20))
    slow = store.alert("PriceReviewSpike", severity="P2", at=clock.advance(hours=1))
    assert slow
    store.ack(slow, clock.advance(minutes=10))
    store.resolve(slow, clock.advance(hours=5))
    human = store.declare("Customers report stale prices", severity="P3", at=clock.advance(hours=1))
    store.resolve(human, clock.advance(minutes=30))
    with db.session_scope(store.factory) as session:
        got = {
            i: fu.ensure_postmortem(session, session.get(fu.Incident, i), now=clock()) for i in (p0, quick, slow, human)
        }
        assert got[p0].required and got[p0].reasons == ["severity P0"]
        assert not got[quick].required and got[quick].reasons == []
        assert got[slow].required and got[slow].reasons[0].startswith("resolved after 5.2 h (target: within 4 h)")
        assert got[human].required and "detected by a human, not by the system's alerts" in got[human].reasons
        assert got[human].detected_by == "human"
        got[quick].data_loss = True
        assert fu.ensure_postmortem(session, session.get(fu.Incident, quick), now=clock()).reasons == ["data loss"]


def test_postmortem_draft_is_built_from_the_recorded_incident(tmp_path: Path, store: IncidentStore) -> None:
    s = recovery_settings(store.url, tmp_path)
    clock = Clock()
    incident = store.alert("DatabaseDown", severity="P0", at=clock(), component="catalog-db")
    assert incident
    rm.remediate(
        "pause-queue",
        settings=s,
        catalog_factory=store.factory,
        incidents_factory=store.factory,
        incident_id=incident,
        actor="system (auto-remediation)",
        automatic=True,
        now=clock,
    )
    store.ack(incident, clock.advance(minutes=4))
    store.resolve(
        incident,
        clock.advance(minutes=36),
        root_cause="max_connections reached by a leaking worker",
        resolution="restarted the worker and PostgreSQL",
        prevention="cap the pool size per worker",
    )
    with db.session_scope(store.factory) as session:
        fu.create_checklists(session, store.get(incident), now=clock())
        fu.add_action_item(
            session,
            store.get(incident),
            "Alert on pg_stat_activity count",
            item_type="mitigate",
            owner="@ana",
            now=clock(),
        )
        md = fu.draft_postmortem(session, incident, now=clock(), catalog=session, authors="Ana")
    assert md.startswith(f"# Postmortem: {incident} — DatabaseDown summary")
    for heading in (
        "## Summary",
        "## Impact",
        "## Timeline (UTC)",
        "## Root cause",
        "## Trigger",
        "## Detection",
        "## Resolution",
        "## Action items",
        "## Lessons learned",
    ):
        assert heading in md
    assert "- **Authors**: Ana" in md and "- **Status**: draft" in md and "severity P0" in md
    assert "- Duration: 40m 00s (2026-11-30 10:00:00 UTC → 2026-11-30 10:40:00 UTC)" in md
    assert (
        "was resolved 2026-11-30 10:40:00 UTC, after 40m 00s. It was detected by the system (alertmanager) and "
        "acknowledged after 4m 00s." in md
    )
    assert "| 2026-11-30 10:00:00 | opened |" in md and "| 2026-11-30 10:04:00 | acknowledged | alice |" in md
    assert "| 2026-11-30 10:40:00 | resolved | alice |" in md
    assert "max_connections reached by a leaking worker" in md
    assert "DatabaseDown (alertmanager, first received 2026-11-30 10:00:00 UTC): DatabaseDown: measured condition" in md
    assert "(time to acknowledge 4m 00s)" in md and "— met" in md
    assert "- Remediation pause-queue by system (auto-remediation) at 10:00:00: ok" in md
    assert "| 1 | cap the pool size per worker | prevent | alice | none | open (due 2026-12-30) |" in md
    assert "| 2 | Alert on pg_stat_activity count | mitigate | @ana | none | open (due 2026-12-30) |" in md
    assert "- automatic remediation ran: pause-queue" in md
    assert "- acknowledged within the runbook's response time" in md
    assert "Scrape runs during the incident: 0, failed: 0" in md
    with store.session() as session:
        pm = session.get(Postmortem, incident)
        assert pm is not None and pm.status == "draft" and pm.markdown == md


def test_action_items_become_github_issues(tmp_path: Path, store: IncidentStore) -> None:
    peer = GitHubPeer()
    clock = Clock()
    incident = resolved_p0(store, clock)
    with serve_in_thread(peer.app) as port:
        s = recovery_settings(
            store.url,
            tmp_path,
            github_repo="acme/coffee",
            github_api_url=f"http://127.0.0.1:{port}",
            github_token=GitHubPeer.token,
        )
        with db.session_scope(store.factory) as session:
            fu.add_action_item(session, store.get(incident), "Cap the pool", item_type="prevent", now=clock())
            fu.add_action_item(session, store.get(incident), "Has a ticket", ticket_url="https://t/1", now=clock())
            opened = fu.open_action_item_issues(session, incident, settings=s, now=clock())
            assert [i.text for i in opened] == ["Cap the pool"]
        with db.session_scope(store.factory) as session:
            assert fu.open_action_item_issues(session, incident, settings=s, now=clock()) == []  # not twice
    issue = peer.issues[1]
    assert issue.title == f"{incident} follow-up: Cap the pool" and issue.labels == ["incident-follow-up", "prevent"]
    assert [i.ticket_url for i in items(store, incident) if i.phase == "action"] == [
        "https://github.example/acme/coffee/issues/1",
        "https://t/1",
    ]


# --- report ------------------------------------------------------------------------------------------------------


def test_weekly_report_counts_mtta_mttr_breaches_and_overdue_followups(store: IncidentStore) -> None:
    clock = Clock()
    a = store.alert("DatabaseDown", severity="P0", at=clock())
    assert a
    store.ack(a, clock.advance(minutes=5))
    store.resolve(a, clock.advance(minutes=55))  # MTTA 5 min, MTTR 60 min
    b = store.alert("HighValidationErrorRate", severity="P2", at=clock.advance(days=1))
    assert b
    store.ack(b, clock.advance(hours=3))  # P2 response time is 2 h: breached
    store.resolve(b, clock.advance(hours=1))  # MTTR 4 h
    drill = store.declare("DRILL db", severity="P0", at=clock.advance(hours=1), is_drill=True)
    store.resolve(drill, clock.advance(minutes=10))
    with db.session_scope(store.factory) as session:
        fu.create_checklists(session, store.get(a), now=clock())
    clock.advance(days=2)
    with store.session() as session:
        report = fu.weekly_report(session, end=clock(), days=7)
        with_drills = fu.weekly_report(session, end=clock(), days=7, include_drills=True)
    assert report["incidents"] == 2 and report["drills"] == 1 and with_drills["incidents"] == 3
    assert report["by_severity"] == {"P0": 1, "P1": 0, "P2": 1, "P3": 0}
    assert report["mtta"]["count"] == 2 and report["mtta"]["mean_s"] == (300 + 3 * 3600) / 2
    assert report["mttr"]["median_s"] == (3600 + 4 * 3600) / 2
    assert report["per_severity"]["P0"]["mttr"]["median_s"] == 3600
    assert [x["id"] for x in report["sla_breaches"]] == [b]
    overdue = {o["text"] for o in report["overdue_followups"]}
    assert "Verify system is fully operational" in overdue and "Update runbooks if needed" in overdue
    md = fu.report_markdown(report)
    assert "| P0 | 1 | 5m 00s | 1h 00m |" in md and "Response-time breaches: 1" in md


# --- the recovery loop on open ---------------------------------------------------------------------------------------


def test_loop_diagnoses_new_incidents_and_auto_pauses_on_a_p0_database_incident(
    tmp_path: Path, store: IncidentStore
) -> None:
    from coffee_scraper.jobs import service as jobs

    s = recovery_settings(store.url, tmp_path)
    clock = Clock()
    p0 = store.alert("DatabaseDown", severity="P0", at=clock(), category="Database Failure")
    p3 = store.alert("RoasterStale", severity="P3", at=clock())
    assert p0 and p3
    loop = fu.RecoveryLoop(s, incidents_factory=store.factory, catalog_factory=store.factory, now=clock)
    first = loop.run_once()
    assert sorted(first.diagnosed) == sorted([p0, p3])
    assert first.auto_remediated == [f"{p0}:pause-queue"]
    second = loop.run_once()
    assert second.diagnosed == [] and second.auto_remediated == []  # once per incident
    diag = [e for e in store.events(p0, "diagnostic") if e.data.get("type") == "diagnostics"]
    assert len(diag) == 1 and diag[0].message.startswith("diagnostics: ") and diag[0].actor == "system"
    assert diag[0].data["incident_id"] == p0 and len(diag[0].data["checks"]) == 10
    with store.session() as session:
        assert jobs.queue_paused(session)[0] is True
        note = fu.status_update_note(session, store.get(p0))
    assert note is not None and note.startswith("diagnostics: ")


# --- CLI and API ----------------------------------------------------------------------------------------------------


def test_cli_checklist_check_action_item_postmortem_and_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from coffee_scraper.cli import app

    url = f"sqlite:///{tmp_path / 'c.db'}"
    store = IncidentStore(url)
    clock = Clock()
    incident = resolved_p0(store, clock)
    with db.session_scope(store.factory) as session:
        fu.create_checklists(session, store.get(incident), now=clock())
    store.close()
    monkeypatch.setenv("COFFEE_SCRAPER_DATABASE_URL", url)
    monkeypatch.setenv("COFFEE_SCRAPER_LOG_DIR", str(tmp_path / "logs"))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        listed = runner.invoke(app, ["incidents", "checklist", incident, "--json"])
        assert listed.exit_code == 0, listed.output
        assert [r["item"] for r in json.loads(listed.stdout)][:2] == ["immediate.1", "immediate.2"]
        checked = runner.invoke(app, ["incidents", "check", incident, "immediate.4", "--actor", "ana"])
        assert checked.exit_code == 0 and "Update status page if applicable: done" in checked.output
        by_text = runner.invoke(app, ["incidents", "check", incident, "Notify stakeholders"])
        assert by_text.exit_code == 0, by_text.output
        wrong = runner.invoke(app, ["incidents", "check", incident, "immediate.9"])
        assert wrong.exit_code == 2 and "immediate.1" in wrong.output
        added = runner.invoke(app, ["incidents", "action-item", incident, "Add a pool alert", "--type", "mitigate"])
        assert added.exit_code == 0 and "action.2" in added.output
        bad_type = runner.invoke(app, ["incidents", "action-item", incident, "x", "--type", "blame"])
        assert bad_type.exit_code == 2 and "mitigate, prevent, process, other" in bad_type.output
        out = tmp_path / "pm.md"
        pm = runner.invoke(app, ["incidents", "postmortem", incident, "--out", str(out), "--json"])
        assert pm.exit_code == 0, pm.output
        data = json.loads(pm.stdout)
        assert data["required"] is True and out.read_text() == data["markdown"]
        assert "| 2 | Add a pool alert | mitigate |" in data["markdown"]
        report = runner.invoke(app, ["report", "--json", "--end", "2026-12-01"])
        assert report.exit_code == 0 and json.loads(report.stdout)["by_severity"]["P0"] == 1
        missing = runner.invoke(app, ["incidents", "postmortem", "INC-19990101-001"])
        assert missing.exit_code == 2 and "no incident INC-19990101-001" in missing.output
    finally:
        get_settings.cache_clear()


def test_api_checklist_postmortem_report_and_diagnostics_on_the_timeline(tmp_path: Path, sqlite_url: str) -> None:
    store = IncidentStore(sqlite_url)
    clock = Clock()
    incident = resolved_p0(store, clock)
    with db.session_scope(store.factory) as session:
        fu.create_checklists(session, store.get(incident), now=clock())
    s = recovery_settings(sqlite_url, tmp_path)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    app = create_app(s)
    app.state.incident_clock = clock
    with serve_in_thread(app) as port:
        base = f"http://127.0.0.1:{port}/api/v1"
        rows = httpx.get(f"{base}/incidents/{incident}/checklist", headers=headers).json()
        assert len(rows) == 21 and rows[0]["item"] == "immediate.1"
        assert httpx.post(f"{base}/incidents/{incident}/checklist/immediate.4", json={}).status_code == 401
        done = httpx.post(f"{base}/incidents/{incident}/checklist/immediate.4", json={"note": "ok"}, headers=headers)
        assert done.status_code == 200 and done.json()["done"] is True and done.json()["done_by"] == "api"
        unknown = httpx.post(f"{base}/incidents/{incident}/checklist/zzz.1", json={}, headers=headers)
        assert unknown.status_code == 400
        nope = httpx.get(f"{base}/incidents/INC-19990101-001/checklist", headers=headers)
        assert nope.status_code == 404
        assert httpx.get(f"{base}/incidents/{incident}/postmortem", headers=headers).json()["markdown"] is None
        drafted = httpx.post(f"{base}/incidents/{incident}/postmortem", json={"authors": "Ana"}, headers=headers).json()
        assert drafted["required"] is True and drafted["markdown"].startswith(f"# Postmortem: {incident}")
        diag = httpx.post(f"{base}/incidents/{incident}/diagnostics?check=disk&check=logs", headers=headers)
        assert diag.status_code == 200 and [c["name"] for c in diag.json()["checks"]] == ["disk", "logs"]
        report = httpx.get(f"{base}/reports/incidents?days=7&format=markdown", headers=headers)
        assert report.status_code == 200 and report.text.startswith("# Incident report")
        runbook = httpx.get(f"{base}/runbook", headers=headers)
        assert runbook.status_code == 200 and "## Incident Classification" in runbook.text
    entries = [e for e in store.events(incident, "diagnostic") if e.data.get("type") == "diagnostics"]
    assert entries and entries[-1].actor == "api"
    store.close()
