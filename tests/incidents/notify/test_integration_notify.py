"""Notification loose ends, against local peers speaking the real protocols: one 📊 message for a status update
that acknowledges, the diagnostics summary in the next status update, the severity label of the GitHub issue
following a severity change, and the per-channel circuit breaker (open after N failures, messages wait and are
never dropped, one half-open probe after the reset time, manual override through ``remediate``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from coffee_scraper.catalog import db
from coffee_scraper.cli import app as cli_app
from coffee_scraper.incidents import flows
from coffee_scraper.incidents.diagnostics import run_diagnostics
from coffee_scraper.incidents.followup import record_diagnostics
from coffee_scraper.incidents.models import Incident
from coffee_scraper.incidents.notify import circuit
from coffee_scraper.incidents.notify.models import NotificationCircuit
from coffee_scraper.incidents.ops_models import RemediationRun
from coffee_scraper.incidents.runner import IncidentRunner
from coffee_scraper.incidents.templates import slack_escape
from coffee_scraper.observability.metrics import REGISTRY
from coffee_scraper.settings import get_settings
from tests.incidents.notify import support as S
from tests.incidents.notify.peers import GitHubPeer, SlackPeer
from tests.support import free_port


def runner_for(url: str, clock: S.Clock, **extra: Any) -> tuple[IncidentRunner, Any]:
    factory = S.migrated(url)
    runner = IncidentRunner(S.settings(url, **extra), factory, now=clock, roster=S.roster(), heartbeat=False)
    return runner, factory


def tx(factory: Any, fn: Any) -> Any:
    with flows.write_lock(factory.kw["bind"]), db.session_scope(factory) as session:
        return fn(session)


def update(factory: Any, incident_id: str, now: datetime, **fields: Any) -> None:
    tx(factory, lambda s: flows.update(s, incident_id, actor="alice", now=now, **fields))


def ours(slack: SlackPeer, incident_id: str) -> list[str]:
    return [m["text"] for m in slack.messages if incident_id in m["text"]]


def gauge(channel: str) -> float | None:
    return REGISTRY.get_sample_value("coffee_scraper_notification_circuit_state", {"channel": channel})


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """Run a ``coffee-scraper`` command in-process with COFFEE_SCRAPER_* variables (settings re-read)."""

    def run(env: dict[str, str], *args: str) -> Any:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("COFFEE_SCRAPER_LOG_DIR", str(tmp_path / "logs"))
        monkeypatch.setenv("COFFEE_SCRAPER_ONCALL_FILE", str(tmp_path / "none.toml"))
        get_settings.cache_clear()
        try:
            return CliRunner().invoke(cli_app, list(args))
        finally:
            get_settings.cache_clear()

    yield run
    get_settings.cache_clear()


# --- one 📊 per status update ------------------------------------------------------------------------------------


def test_a_status_update_that_acknowledges_sends_one_status_update(
    sqlite_url: str, clock: S.Clock, slack: SlackPeer
) -> None:
    runner, factory = runner_for(sqlite_url, clock, slack_webhook_url=slack.url)  # type: ignore[attr-defined]
    iid = S.declare(factory, clock(), "P1")
    runner.run_once()
    update(factory, iid, clock.advance(minutes=2), status="working", actions_taken="Restarted the worker")
    runner.run_once()
    texts = ours(slack, iid)
    assert [t.splitlines()[0] for t in texts] == ["🚨 INCIDENT: P1 - Catalog not updating", f"📊 Status Update: {iid}"]
    assert "- Current Status: Working" in texts[1] and "Acknowledged by @alice" in texts[1]
    (ack,) = S.timeline(factory, iid, "acknowledged")
    assert ack.data["implicit"] is True and ack.actor == "alice"
    assert [r.kind for r in S.outbox(factory, incident_id=iid)] == ["opened", "status_update"]

    # an explicit acknowledgement still tells the channel (runbook: "Acknowledge the incident in Slack channel")
    other = S.declare(factory, clock.advance(minutes=1), "P2", title="Prices stale")
    tx(factory, lambda s: flows.ack(s, other, actor="bob", now=clock.advance(minutes=1)))
    runner.run_once()
    runner.stop()
    texts = ours(slack, other)
    assert [t.splitlines()[0] for t in texts] == ["🚨 INCIDENT: P2 - Prices stale", f"📊 Status Update: {other}"]
    assert "Acknowledged by @bob" in texts[1]
    (ack,) = S.timeline(factory, other, "acknowledged")
    assert "implicit" not in ack.data


# --- diagnostics in the next status update --------------------------------------------------------------------


def test_the_next_status_update_carries_the_diagnostics_summary_once(
    sqlite_url: str, clock: S.Clock, slack: SlackPeer
) -> None:
    runner, factory = runner_for(sqlite_url, clock, slack_webhook_url=slack.url)  # type: ignore[attr-defined]
    iid = S.declare(factory, clock(), "P1")
    runner.run_once()
    # real checks: the service URL has nobody listening (FAIL service), the database answers
    report = run_diagnostics(
        runner.settings, incident_id=iid, only=["service", "database"], service_url=f"http://127.0.0.1:{free_port()}"
    )
    assert report.status == "fail"

    def record(session: Any) -> None:
        incident = session.get(Incident, iid)
        record_diagnostics(session, incident, report, actor="system", now=clock.advance(minutes=1))

    tx(factory, record)
    update(factory, iid, clock.advance(minutes=5), actions_taken="Looked at the diagnostics")
    update(factory, iid, clock.advance(minutes=15), next_steps="Restart the service")
    runner.run_once()
    runner.stop()
    first, second = [t for t in ours(slack, iid) if t.startswith("📊")]
    fields, _, notes = first.partition("\n\n")
    # the runbook's fields stay exactly the template's; the summary goes below them
    assert [line.split(":")[0] for line in fields.splitlines()[1:]] == [
        "- Current Status",
        "- Actions Taken",
        "- Next Steps",
        "- ETA",
        "- Owner",
    ]
    assert slack_escape(report.summary_text()) in notes and "FAIL service" in notes
    assert "diagnostics:" not in second  # reported once: the next update has nothing new


# --- GitHub: the severity label follows the incident ---------------------------------------------------------------


def test_a_severity_change_swaps_the_issue_severity_label(sqlite_url: str, clock: S.Clock, github: GitHubPeer) -> None:
    runner, factory = runner_for(
        sqlite_url,
        clock,
        github_api_url=github.api,  # type: ignore[attr-defined]
        github_repo="acme/coffee",
        github_token=github.token,
    )
    iid = S.declare(factory, clock(), "P2")
    runner.run_once()
    (issue,) = github.issues.values()
    assert issue.labels == ["incident", "P2"]
    issue.labels.append("needs-triage")  # someone's own label stays
    for severity in ("P0", "P1"):
        tx(
            factory,
            lambda s, sev=severity: flows.change_severity(
                s, iid, severity=sev, reason="more shops affected", actor="alice", now=clock.advance(minutes=1)
            ),
        )
        runner.run_once()
        assert issue.labels == ["incident", "needs-triage", severity]
        assert issue.comments[-1].startswith(f"📊 Status Update: {iid}")
    # someone swapped the label by hand already: nothing to remove or add, and no error
    issue.labels[:] = ["incident", "needs-triage", "P2"]
    tx(
        factory,
        lambda s: flows.change_severity(
            s, iid, severity="P2", reason="contained", actor="alice", now=clock.advance(minutes=1)
        ),
    )
    runner.run_once()
    runner.stop()
    assert issue.labels == ["incident", "needs-triage", "P2"]
    deletes = [r["path"] for r in github.requests if r["method"] == "DELETE"]
    assert deletes == ["/api/v3/repos/acme/coffee/issues/1/labels/P2", "/api/v3/repos/acme/coffee/issues/1/labels/P0"]
    rows = S.outbox(factory, channel="github")
    assert {r.status for r in rows} == {"sent"}
    assert [r.payload["action"] for r in rows].count("relabel") == 3


# --- the circuit breaker per channel -------------------------------------------------------------------------------


@pytest.mark.parametrize("pg", [False, pytest.param(True, marks=pytest.mark.pg)])
def test_a_failing_channel_opens_its_circuit_and_a_probe_closes_it_without_losing_a_message(
    request: pytest.FixtureRequest, pg: bool, clock: S.Clock, slack: SlackPeer, cli_env: Any
) -> None:
    url = request.getfixturevalue("pg_url" if pg else "sqlite_url")
    runner, factory = runner_for(
        url,
        clock,
        slack_webhook_url=slack.url,  # type: ignore[attr-defined]
        notify_circuit_failure_threshold=3,
        notify_circuit_reset_s=300,
        outbox_backoff_base_s=1,
        outbox_backoff_cap_s=5,
        outbox_max_attempts=3,  # a probe is never dead-lettered for an outage, even past this
    )
    iid = S.declare(factory, clock(), "P2")
    update(factory, iid, clock(), status="working", actions_taken="Restarted the worker")
    update(factory, iid, clock(), next_steps="Watch the next run")
    slack.down = True
    for _ in range(3):  # the head message fails three times in a row: the circuit opens
        runner.run_once()
        clock.advance(seconds=10)
    assert len(slack.requests) == 3
    with factory() as session:
        row = session.get(NotificationCircuit, "slack")
        assert row is not None and row.state == "open" and row.consecutive_failures == 3
        assert "3 consecutive failed deliveries" in (row.reason or "")
    assert gauge("slack") == 2.0

    runner.run_once()  # open: nothing is tried, nothing is dropped
    clock.advance(seconds=60)
    runner.run_once()
    assert len(slack.requests) == 3
    rows = S.outbox(factory, channel="slack")
    assert [(r.status, r.attempts) for r in rows] == [("failed", 3), ("pending", 0), ("pending", 0)]
    status = cli_env({"COFFEE_SCRAPER_DATABASE_URL": url}, "notify", "status", "--json")
    assert status.exit_code == 0, status.output
    slack_status = json.loads(status.stdout)["channels"]["slack"]
    assert slack_status["circuit"]["state"] == "open" and slack_status["undelivered"] == 3
    text = cli_env({"COFFEE_SCRAPER_DATABASE_URL": url}, "notify", "status")
    assert "open" in text.stdout and "remediate close-circuit --channel" in text.stdout

    clock.advance(seconds=300)  # past the reset time: one half-open probe, which fails again
    runner.run_once()
    assert len(slack.requests) == 4
    rows = S.outbox(factory, channel="slack")
    assert [(r.status, r.attempts) for r in rows] == [("failed", 4), ("pending", 0), ("pending", 0)]
    with factory() as session:
        assert session.get(NotificationCircuit, "slack").state == "open"  # type: ignore[union-attr]

    slack.down = False
    clock.advance(seconds=299)
    runner.run_once()
    assert len(slack.requests) == 4 and slack.messages == []  # the next probe is not due yet
    clock.advance(seconds=2)
    runner.run_once()
    runner.stop()
    rows = S.outbox(factory, channel="slack")
    assert {r.status for r in rows} == {"sent"}  # (also the P2 "Monitoring Issues" signal's own message)
    rows = [r for r in rows if r.incident_id == iid]
    assert ours(slack, iid) == [r.payload["text"] for r in rows]  # each once, in order
    with factory() as session:
        row = session.get(NotificationCircuit, "slack")
        assert row is not None and row.state == "closed" and row.consecutive_failures == 0
    assert gauge("slack") == 0.0


def test_manual_override_holds_and_releases_a_channel(sqlite_url: str, slack: SlackPeer, cli_env: Any) -> None:
    clock = S.Clock(datetime.now(UTC))  # the commands run on the real clock
    runner, factory = runner_for(sqlite_url, clock, slack_webhook_url=slack.url)  # type: ignore[attr-defined]
    env = {"COFFEE_SCRAPER_DATABASE_URL": sqlite_url}
    bad = cli_env(env, "remediate", "open-circuit", "--channel", "pager")
    assert bad.exit_code == 2 and "unknown notification channel 'pager'" in bad.output
    both = cli_env(env, "remediate", "open-circuit", "some-roaster", "--channel", "slack")
    assert both.exit_code == 2 and "not both" in both.output
    held = cli_env(env, "remediate", "open-circuit", "--channel", "slack", "--minutes", "30", "--actor", "ops")
    assert held.exit_code == 0, held.output
    assert "slack notification circuit held open" in held.output
    assert gauge("slack") == 2.0
    iid = S.declare(factory, clock(), "P1")
    runner.run_once()
    assert slack.requests == []  # held open: the message waits although Slack is up
    with factory() as session:
        row = session.get(NotificationCircuit, "slack")
        assert row is not None and row.state == "open" and row.changed_by == "ops"
        assert circuit.states(session, clock())["slack"]["next_probe_in_s"] > 25 * 60
    closed = cli_env(env, "remediate", "close-circuit", "--channel", "slack", "--json")
    assert closed.exit_code == 0, closed.output
    assert json.loads(closed.stdout)["target"] == "channel:slack"
    runner.run_once()
    runner.stop()
    assert [t.splitlines()[0] for t in ours(slack, iid)] == ["🚨 INCIDENT: P1 - Catalog not updating"]
    with factory() as session:
        audit = list(session.scalars(select(RemediationRun).order_by(RemediationRun.id)))
        assert [(a.action, a.target, a.status) for a in audit] == [
            ("open-circuit", "channel:slack", "ok"),
            ("close-circuit", "channel:slack", "ok"),
        ]
    assert gauge("slack") == 0.0
