"""Notification channels against local peers speaking the real protocols (HTTP on 127.0.0.1, SMTP via aiosmtpd):
the runbook's messages arrive, a channel that is down and comes back gets every message exactly once and in
order, Retry-After is honoured, permanent errors and exhausted retries dead-letter with a timeline entry and a
metric, and failing delivery raises the P2 "Monitoring Issues" signal through the incidents core."""

from __future__ import annotations

import email
import hashlib
import hmac
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from email import policy as email_policy
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from coffee_scraper.catalog import db
from coffee_scraper.incidents import flows
from coffee_scraper.incidents.models import Incident, IncidentAlert
from coffee_scraper.incidents.notify.models import NotificationOutbox
from coffee_scraper.incidents.runner import IncidentRunner
from coffee_scraper.observability.metrics import REGISTRY
from tests.incidents.notify import support as S
from tests.incidents.notify.peers import GitHubPeer, SlackPeer, SmtpPeer, WebhookPeer, serve_at
from tests.support import free_port


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def runner_for(url: str, clock: S.Clock, **extra: Any) -> tuple[IncidentRunner, Any]:
    factory = S.migrated(url)
    runner = IncidentRunner(S.settings(url, **extra), factory, now=clock, roster=S.roster(), heartbeat=False)
    return runner, factory


def update(factory: Any, incident_id: str, now: Any, **fields: Any) -> None:
    with flows.write_lock(factory.kw["bind"]), db.session_scope(factory) as session:
        flows.update(session, incident_id, actor="alice", now=now, **fields)


def resolve(factory: Any, incident_id: str, now: Any) -> None:
    with flows.write_lock(factory.kw["bind"]), db.session_scope(factory) as session:
        flows.resolve(
            session,
            incident_id,
            root_cause="Expired DB password",
            resolution="Rotated it",
            prevention="Alert on auth failures",
            actor="alice",
            now=now,
        )


def headline(text: str) -> str:
    return text.splitlines()[0]


def test_slack_gets_the_runbook_incident_message(sqlite_url: str, clock: S.Clock, slack: SlackPeer) -> None:
    runner, factory = runner_for(sqlite_url, clock, slack_webhook_url=slack.url, grafana_url="http://grafana:3000")  # type: ignore[attr-defined]
    before = metric("coffee_scraper_notifications_total", channel="slack", result="ok")
    iid = S.declare(factory, clock(), "P1", impact="Prices stale", owner="@zoe")
    runner.run_once()
    runner.stop()
    assert len(slack.messages) == 1
    payload = slack.messages[0]
    assert payload["channel"] == "#coffee-scraper-alerts"
    assert payload["text"].splitlines()[:7] == [
        "🚨 INCIDENT: P1 - Catalog not updating",
        f"- Incident ID: {iid}",
        "- Severity: P1",
        "- Impact: Prices stale",
        "- Status: Investigating",
        "- Owner: @zoe",
        "- ETA: TBD",
    ]
    assert "Notified: <@U0ALICE01>, @bob" in payload["text"]  # P1: on-call + senior engineer
    assert "<http://grafana:3000|Grafana>" in payload["text"]
    assert payload["blocks"][0]["type"] == "section"
    sent = S.timeline(factory, iid, "notification_sent")
    assert [e.data["channel"] for e in sent] == ["slack"]
    assert metric("coffee_scraper_notifications_total", channel="slack", result="ok") == before + 1


@pytest.mark.parametrize("pg", [False, pytest.param(True, marks=pytest.mark.pg)])
def test_channels_down_then_up_deliver_every_message_once_in_order(
    request: pytest.FixtureRequest,
    pg: bool,
    clock: S.Clock,
    slack: SlackPeer,
    github: GitHubPeer,
    smtp: SmtpPeer,
) -> None:
    url = request.getfixturevalue("pg_url" if pg else "sqlite_url")
    runner, factory = runner_for(
        url,
        clock,
        slack_webhook_url=slack.url,
        github_api_url=github.api,  # type: ignore[attr-defined]
        github_repo="acme/coffee",
        github_token=github.token,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
    )
    slack.down = True  # 500 to everything
    github.fail_next = [(502, "bad gateway", {})] * 2
    smtp.stop()  # port closed: connection refused
    iid = S.declare(factory, clock(), "P1", impact="Prices stale")
    update(factory, iid, clock.advance(minutes=1), status="working", actions_taken="Restarted worker")
    resolve(factory, iid, clock.advance(minutes=1))
    for _ in range(3):
        runner.run_once()
        clock.advance(minutes=2)
    assert slack.messages == [] and smtp.messages == []
    rows = S.outbox(factory)
    heads = {}
    for r in rows:  # only the first message per incident/channel/target was tried; the rest wait behind it
        heads.setdefault((r.channel, r.target), r)
    assert all(r.status == "failed" and r.attempts >= 1 for r in heads.values() if r.channel in ("slack", "email"))
    waiting = [r for r in rows if r not in heads.values() and r.channel in ("slack", "email")]
    assert waiting and all(r.attempts == 0 and r.status == "pending" for r in waiting)
    assert any(e.data["channel"] == "slack" for e in S.timeline(factory, iid, "notification_failed"))

    slack.down = False
    smtp.start()
    clock.advance(minutes=15)  # past every backoff
    for _ in range(3):
        runner.run_once()
        clock.advance(minutes=15)
    runner.run_once()
    runner.stop()

    rows = S.outbox(factory)
    assert {r.status for r in rows} == {"sent"}, [(r.id, r.channel, r.status, r.last_error) for r in rows]
    # (slack was down > 10 min: the P2 "Monitoring Issues" signal opened its own incident meanwhile)
    rows = [r for r in rows if r.incident_id == iid]
    slack_rows = [r for r in rows if r.channel == "slack"]
    ours = [m for m in slack.messages if iid in m["text"]]
    assert [m["text"] for m in ours] == [r.payload["text"] for r in slack_rows]  # each once, in order
    assert headline(ours[0]["text"]).startswith("🚨 INCIDENT")
    assert headline(ours[-1]["text"]) == f"✅ RESOLVED: {iid}"
    (issue,) = [i for i in github.issues.values() if i.title.startswith(iid)]
    assert issue.state == "closed" and issue.labels == ["incident", "P1"]
    assert issue.comments[-1].startswith(f"✅ RESOLVED: {iid}")
    by_rcpt: dict[str, list[str]] = {}
    for env in smtp.messages:
        msg = email.message_from_bytes(env.original_content, policy=email_policy.default)
        if msg["X-Coffee-Scraper-Incident"] == iid:
            by_rcpt.setdefault(env.rcpt_tos[0], []).append(str(msg["Subject"]))
    assert by_rcpt["alice@example.com"][0].startswith("🚨 INCIDENT: P1")
    assert by_rcpt["alice@example.com"][-1] == f"✅ RESOLVED: {iid}"
    assert sorted(by_rcpt) == ["alice@example.com", "bob@example.com"]
    assert len(by_rcpt["alice@example.com"]) == len([r for r in rows if r.target == "alice@example.com"])


def test_retry_after_is_honoured(sqlite_url: str, clock: S.Clock, slack: SlackPeer) -> None:
    runner, factory = runner_for(sqlite_url, clock, slack_webhook_url=slack.url)  # type: ignore[attr-defined]
    slack.fail_next = [(429, "rate_limited", {"Retry-After": "120"})]
    S.declare(factory, clock(), "P2")
    t0 = clock()
    runner.run_once()
    (row,) = S.outbox(factory, channel="slack")
    assert row.status == "failed" and row.next_attempt_at == t0 + timedelta(seconds=120)
    assert "HTTP 429" in (row.last_error or "")
    clock.advance(seconds=119)
    runner.run_once()
    assert slack.messages == []
    clock.advance(seconds=1)
    runner.run_once()
    runner.stop()
    assert len(slack.messages) == 1
    assert S.outbox(factory, channel="slack")[0].attempts == 2


def test_port_closed_then_up_delivers_once(sqlite_url: str, clock: S.Clock) -> None:
    peer = SlackPeer()
    port = free_port()
    runner, factory = runner_for(sqlite_url, clock, slack_webhook_url=f"http://127.0.0.1:{port}{peer.path}")
    iid = S.declare(factory, clock(), "P1")
    runner.run_once()
    (failed,) = S.timeline(factory, iid, "notification_failed")
    assert "ConnectError" in failed.message and failed.data["final"] is False
    with serve_at(peer.app, port):
        clock.advance(minutes=5)
        runner.run_once()
        runner.run_once()
    runner.stop()
    assert len(peer.messages) == 1
    assert peer.messages[0]["text"].startswith("🚨 INCIDENT: P1")


def test_github_issue_lifecycle_on_an_enterprise_base_url(sqlite_url: str, clock: S.Clock, github: GitHubPeer) -> None:
    runner, factory = runner_for(
        sqlite_url,
        clock,
        github_api_url=github.api,
        github_repo="acme/coffee",  # type: ignore[attr-defined]
        github_token=github.token,
    )
    iid = S.declare(factory, clock(), "P0", impact="Nothing scraped")
    runner.run_once()
    assert list(github.issues) == [1]
    issue = github.issues[1]
    assert issue.title == f"{iid} - P0 - Catalog not updating"
    assert issue.labels == ["incident", "P0"]
    assert issue.body.startswith(f"🚨 INCIDENT: P0 - Catalog not updating\n- Incident ID: {iid}\n")
    update(factory, iid, clock.advance(minutes=5), actions_taken="Failed over the database")
    runner.run_once()
    assert any(c.startswith(f"📊 Status Update: {iid}") and "Failed over the database" in c for c in issue.comments)
    resolve(factory, iid, clock.advance(minutes=5))
    runner.run_once()
    runner.stop()
    assert issue.state == "closed"
    assert issue.comments[-1].startswith(f"✅ RESOLVED: {iid}\n- Root Cause: Expired DB password")
    assert all(r["path"].startswith("/api/v3/repos/acme/coffee/issues") for r in github.requests)
    assert all(r["headers"]["authorization"] == f"Bearer {github.token}" for r in github.requests)
    assert all(r["headers"]["x-github-api-version"] == "2022-11-28" for r in github.requests)
    refs = [r.external_ref for r in S.outbox(factory, channel="github")]
    assert refs[0] == "https://github.example/acme/coffee/issues/1"


def test_github_lost_201_does_not_open_a_second_issue(sqlite_url: str, clock: S.Clock, github: GitHubPeer) -> None:
    runner, factory = runner_for(
        sqlite_url,
        clock,
        github_api_url=github.api,
        github_repo="acme/coffee",  # type: ignore[attr-defined]
        github_token=github.token,
    )
    github.create_then_fail = 1  # GitHub created the issue but the answer was lost (502)
    iid = S.declare(factory, clock(), "P1")
    runner.run_once()
    assert len(github.issues) == 1
    clock.advance(minutes=5)
    update(factory, iid, clock(), eta="in 1 h")
    runner.run_once()
    runner.run_once()
    runner.stop()
    assert len(github.issues) == 1
    assert github.issues[1].comments and github.issues[1].comments[0].startswith("📊 Status Update")
    assert [r.status for r in S.outbox(factory, channel="github")] == ["sent"] * len(
        S.outbox(factory, channel="github")
    )


def test_bad_github_token_dead_letters_with_timeline_and_metric(
    sqlite_url: str, clock: S.Clock, github: GitHubPeer
) -> None:
    secret = "ghp_wrong_token_should_never_be_logged"
    runner, factory = runner_for(
        sqlite_url,
        clock,
        github_api_url=github.api,
        github_repo="acme/coffee",  # type: ignore[attr-defined]
        github_token=secret,
    )
    dead_before = metric("coffee_scraper_notifications_dead_total", channel="github")
    errors_before = metric("coffee_scraper_notifications_total", channel="github", result="error")
    iid = S.declare(factory, clock(), "P1")
    runner.run_once()
    runner.stop()
    (row,) = S.outbox(factory, channel="github")
    assert row.status == "dead" and row.attempts == 1
    assert "HTTP 401" in (row.last_error or "") and "GITHUB_TOKEN" in (row.last_error or "")
    assert secret not in (row.last_error or "")
    (failed,) = S.timeline(factory, iid, "notification_failed")
    assert failed.data["final"] is True and failed.data["channel"] == "github"
    assert secret not in failed.message
    assert metric("coffee_scraper_notifications_dead_total", channel="github") == dead_before + 1
    assert metric("coffee_scraper_notifications_total", channel="github", result="error") == errors_before + 1


def test_dead_letter_after_max_attempts(sqlite_url: str, clock: S.Clock, slack: SlackPeer) -> None:
    runner, factory = runner_for(sqlite_url, clock, slack_webhook_url=slack.url, outbox_max_attempts=3)  # type: ignore[attr-defined]
    slack.down = True
    iid = S.declare(factory, clock(), "P2")
    for _ in range(4):
        runner.run_once()
        clock.advance(minutes=10)
    runner.stop()
    (row,) = S.outbox(factory, channel="slack", incident_id=iid, kind="opened")
    assert row.status == "dead" and row.attempts == 3
    failed = [e for e in S.timeline(factory, iid, "notification_failed") if e.data["outbox_id"] == row.id]
    assert [e.data["final"] for e in failed] == [False, True]  # first failure, then the give-up
    assert "gave up after 3 attempts" in failed[-1].message


def test_email_recipients_follow_policy_with_threading_headers(sqlite_url: str, clock: S.Clock, smtp: SmtpPeer) -> None:
    runner, factory = runner_for(
        sqlite_url,
        clock,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_from="incidents@coffee.example",
        smtp_to="ops@coffee.example",
    )
    iid = S.declare(factory, clock(), "P0", impact="Database down")
    runner.run_once()
    runner.stop()
    assert sorted(m.rcpt_tos[0] for m in smtp.messages) == [
        "alice@example.com",
        "carol@example.com",
        "ops@coffee.example",
    ]
    msg = email.message_from_bytes(smtp.messages[0].original_content, policy=email_policy.default)
    assert msg["Subject"] == "🚨 INCIDENT: P0 - Catalog not updating"
    assert msg["From"] == "incidents@coffee.example"
    assert msg["In-Reply-To"] == f"<incident-{iid}@coffee.example>"
    body = msg.get_content().replace("\r\n", "\n")  # SMTP's line ends
    assert body.startswith(
        f"🚨 INCIDENT: P0 - Catalog not updating\n- Incident ID: {iid}\n- Severity: P0\n- Impact: Database down\n"
    )
    rows = S.outbox(factory, channel="email")
    assert {r.external_ref for r in rows} == {
        str(email.message_from_bytes(m.original_content)["Message-ID"]) for m in smtp.messages
    }


def test_webhook_every_lifecycle_event_signed_with_stable_idempotency_key(
    sqlite_url: str, clock: S.Clock, hook: WebhookPeer, tmp_path: Path
) -> None:
    template = tmp_path / "hook.j2"
    template.write_text(
        '{"kind": {{ event.kind | json }}, "id": {{ incident.id | json }}, "title": {{ incident.title | json }}}'
    )
    runner, factory = runner_for(
        sqlite_url,
        clock,
        webhook_url=hook.url,
        webhook_template=template,  # type: ignore[attr-defined]
        webhook_secret="s3cret",
    )
    hook.fail_next = [(503, "busy", {})]
    iid = S.declare(factory, clock(), "P2", title='Quote " in title')
    with flows.write_lock(factory.kw["bind"]), db.session_scope(factory) as session:
        flows.comment(session, iid, body="looking", actor="alice", now=clock.advance(minutes=1))
    runner.run_once()
    clock.advance(minutes=5)
    runner.run_once()
    runner.stop()
    bodies = [json.loads(r["body"]) for r in hook.received]
    assert [b["kind"] for b in bodies] == ["opened", "comment"]
    assert bodies[0] == {"kind": "opened", "id": iid, "title": 'Quote " in title'}
    for r in hook.received:
        expected = "sha256=" + hmac.new(b"s3cret", r["body"], hashlib.sha256).hexdigest()
        assert r["headers"]["x-coffee-scraper-signature"] == expected
    keys = [r["headers"]["idempotency-key"] for r in hook.requests]
    assert keys[0] == keys[1]  # the retry of the first event carries the same key
    assert all(r.kind not in ("notification_sent", "notification_failed") for r in S.outbox(factory, channel="webhook"))


def test_broken_webhook_template_dead_letters_without_breaking_the_incident(
    sqlite_url: str, clock: S.Clock, hook: WebhookPeer, tmp_path: Path
) -> None:
    template = tmp_path / "hook.j2"
    template.write_text("{{ incident.no_such_field }}")
    runner, factory = runner_for(sqlite_url, clock, webhook_url=hook.url, webhook_template=template)  # type: ignore[attr-defined]
    iid = S.declare(factory, clock(), "P2")
    runner.run_once()
    runner.stop()
    assert S.incident(factory, iid).status == "investigating"
    (row,) = S.outbox(factory, channel="webhook")
    assert row.status == "dead" and str(template) in (row.last_error or "")
    assert hook.received == []


def test_unconfigured_channels_are_off(sqlite_url: str, clock: S.Clock, slack: SlackPeer) -> None:
    runner, factory = runner_for(sqlite_url, clock, slack_webhook_url=slack.url)  # type: ignore[attr-defined]
    S.declare(factory, clock(), "P0")
    runner.run_once()
    runner.stop()
    assert {r.channel for r in S.outbox(factory)} == {"slack"}


def test_a_claim_lost_in_a_crash_is_delivered_once_after_the_lease(
    sqlite_url: str, clock: S.Clock, slack: SlackPeer
) -> None:
    runner, factory = runner_for(sqlite_url, clock, slack_webhook_url=slack.url)  # type: ignore[attr-defined]
    S.declare(factory, clock(), "P1")
    claimed = runner.outbox.claim(10)  # a process claimed the row and died before sending
    assert len(claimed) == 1
    runner.run_once()
    assert slack.messages == []  # the lease still holds
    clock.advance(seconds=runner.outbox.lease().total_seconds() + 1)
    restarted = IncidentRunner(runner.settings, factory, now=clock, roster=S.roster(), heartbeat=False)
    restarted.run_once()
    restarted.run_once()
    runner.stop()
    restarted.stop()
    assert len(slack.messages) == 1
    assert S.outbox(factory, channel="slack")[0].attempts == 2


def test_failing_delivery_raises_and_clears_the_p2_monitoring_signal(
    sqlite_url: str, clock: S.Clock, slack: SlackPeer
) -> None:
    runner, factory = runner_for(
        sqlite_url,
        clock,
        slack_webhook_url=slack.url,
        outbox_backoff_base_s=60,  # type: ignore[attr-defined]
        outbox_backoff_cap_s=120,
    )
    slack.down = True
    S.declare(factory, clock(), "P1")
    runner.run_once(force_health=True)
    with db.session_scope(factory) as session:
        assert (
            session.scalar(select(IncidentAlert).where(IncidentAlert.alertname == "AlertNotificationFailures")) is None
        )
    for _ in range(6):  # failing for more than the rule's `for` (10 min)
        clock.advance(minutes=2, seconds=30)
        result = runner.run_once(force_health=True)
    assert result.health is not None and result.health.firing
    assert "slack: every attempt failed since" in result.health.reason
    with db.session_scope(factory) as session:
        alert = session.scalar(select(IncidentAlert).where(IncidentAlert.alertname == "AlertNotificationFailures"))
        assert alert is not None and alert.status == "firing" and alert.source == "watchdog"
        incident = session.get(Incident, alert.incident_id)
        assert incident is not None and incident.severity == "P2" and incident.category == "Monitoring Issues"
        signal_id = incident.id
    slack.down = False
    clock.advance(minutes=3)
    runner.run_once(force_health=True)
    clock.advance(minutes=31)  # the failures leave the 30 min window
    result = runner.run_once(force_health=True)
    runner.stop()
    assert result.health is not None and not result.health.firing
    with db.session_scope(factory) as session:
        alert = session.scalar(select(IncidentAlert).where(IncidentAlert.alertname == "AlertNotificationFailures"))
        assert alert is not None and alert.status == "resolved"
    # the signal's own incident was announced on Slack once the channel came back
    assert any(signal_id in m["text"] for m in slack.messages)
    assert all(r.status == "sent" for r in S.outbox(factory, channel="slack"))
    assert not [r for r in S.outbox(factory) if r.status == "dead"]


def test_outbox_rows_commit_with_the_event_or_not_at_all(sqlite_url: str, clock: S.Clock, slack: SlackPeer) -> None:
    runner, factory = runner_for(sqlite_url, clock, slack_webhook_url=slack.url)  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError), flows.write_lock(factory.kw["bind"]), db.session_scope(factory) as session:
        flows.declare(session, title="rolled back", severity="P0", actor="t", now=clock())
        raise RuntimeError("crash before commit")
    with db.session_scope(factory) as session:
        assert session.scalar(select(NotificationOutbox.id)) is None
    runner.stop()


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    root = Path(__file__).resolve().parents[3]
    full = {k: v for k, v in os.environ.items() if not k.startswith("COFFEE_SCRAPER_")} | env
    return subprocess.run(
        [sys.executable, "-c", "from coffee_scraper.cli import main; main()", *args],
        cwd=root,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_notify_commands_status_outbox_retry_and_test(sqlite_url: str, tmp_path: Path, slack: SlackPeer) -> None:
    clock = S.Clock(datetime.now(UTC))  # the commands run on the real clock
    runner, factory = runner_for(sqlite_url, clock, slack_webhook_url=slack.url)  # type: ignore[attr-defined]
    slack.fail_next = [(400, "invalid_payload", {})]  # permanent: dead at once
    S.declare(factory, clock(), "P1")
    runner.run_once()
    runner.stop()
    env = {
        "COFFEE_SCRAPER_DATABASE_URL": sqlite_url,
        "COFFEE_SCRAPER_SLACK_WEBHOOK_URL": slack.url,  # type: ignore[attr-defined]
        "COFFEE_SCRAPER_LOG_DIR": str(tmp_path),
        "COFFEE_SCRAPER_ONCALL_FILE": str(tmp_path / "none.toml"),
    }
    status = _cli("notify", "status", "--json", env=env)
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["channels"]["slack"]["on"] is True and data["channels"]["slack"]["outbox"] == {"dead": 1}
    assert data["channels"]["email"]["on"] is False
    dead = json.loads(_cli("notify", "outbox", "--status", "dead", "--json", env=env).stdout)
    assert len(dead) == 1 and "invalid_payload" in dead[0]["last_error"]
    assert _cli("notify", "retry", env=env).returncode == 2  # says what to pass
    assert _cli("notify", "retry", str(dead[0]["id"]), env=env).returncode == 0
    assert _cli("notify", "run-once", env=env).returncode == 0
    assert len(slack.messages) == 1 and slack.messages[0]["text"].startswith("🚨 INCIDENT: P1")
    test = _cli("notify", "test", "--json", env=env)
    assert test.returncode == 0, test.stderr
    assert json.loads(test.stdout) == {"slack": "ok (#coffee-scraper-alerts)"}
    assert slack.messages[-1]["text"].startswith("📊 coffee-scraper test message")


def test_runner_beats_and_stops_cleanly(sqlite_url: str, clock: S.Clock) -> None:
    from coffee_scraper.jobs.models import Heartbeat

    factory = S.migrated(sqlite_url)
    runner = IncidentRunner(S.settings(sqlite_url), factory, now=clock, roster=S.roster())
    runner.run_once()
    with db.session_scope(factory) as session:
        (beat,) = session.scalars(select(Heartbeat).where(Heartbeat.component == "incidents")).all()
        assert beat.last_beat_at == clock() and beat.stopped_at is None
    assert metric("coffee_scraper_heartbeat_timestamp_seconds", component="incidents") == clock().timestamp()
    runner.stop()
    with db.session_scope(factory) as session:
        (beat,) = session.scalars(select(Heartbeat).where(Heartbeat.component == "incidents")).all()
        assert beat.stopped_at is not None


def test_serve_lifespan_runs_the_loop_and_delivers_at_once(sqlite_url: str, tmp_path: Path, slack: SlackPeer) -> None:
    """The web app's lifespan starts the real runner thread; an incident opened in this process is on Slack
    without any explicit runner call."""
    import time

    from coffee_scraper.settings import Settings
    from coffee_scraper.web import create_app
    from tests.support import serve_in_thread

    factory = S.migrated(sqlite_url)
    settings = Settings(
        _env_file=None,
        database_url=sqlite_url,
        log_dir=tmp_path,
        slack_webhook_url=slack.url,  # type: ignore[call-arg, attr-defined]
        oncall_file=tmp_path / "none.toml",
        incident_runner_interval_s=30.0,
        watchdog_enabled=False,
        scheduler_mode="off",
        recovery_interval_s=0,
        incident_sweep_interval_s=0,
    )
    with serve_in_thread(create_app(settings)):
        time.sleep(0.5)  # the runner's first pass is over; the next one is 30 s away unless woken
        iid = S.declare(factory, datetime.now(UTC), "P1")
        deadline = time.monotonic() + 20
        while not slack.messages and time.monotonic() < deadline:
            time.sleep(0.02)
    assert slack.messages and f"- Incident ID: {iid}" in slack.messages[0]["text"]
