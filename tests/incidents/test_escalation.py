"""Escalation and reminders with an injected clock: the runbook's policy per severity, levels L2 at 30 min, L3 at
60 min, L4 at 2 h, stop on resolution, survive restarts without lost or doubled steps, exactly once across
concurrent sweepers on PostgreSQL, 15-minute status-update reminders for P0/P1, P3 held to business hours."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from coffee_scraper.catalog import db
from coffee_scraper.incidents import escalation, flows
from coffee_scraper.incidents.notify import config as notify_config
from coffee_scraper.incidents.runner import IncidentRunner
from tests.incidents.notify import support as S
from tests.incidents.notify.peers import SlackPeer, SmtpPeer
from tests.support import serve_in_thread


@pytest.fixture(autouse=True)
def _fresh_notify_config() -> Any:
    yield
    notify_config.reset()


@pytest.fixture
def smtp() -> Any:
    peer = SmtpPeer()
    peer.start()
    yield peer
    peer.stop()


def make(url: str, clock: S.Clock, **extra: Any) -> tuple[IncidentRunner, Any]:
    factory = S.migrated(url)
    runner = IncidentRunner(S.settings(url, **extra), factory, now=clock, roster=S.roster(), heartbeat=False)
    return runner, factory


def escalations(factory: Any, iid: str) -> list[int]:
    return [e.data["level"] for e in S.timeline(factory, iid, "escalated")]


def emailed(factory: Any, iid: str, kind: str) -> list[str]:
    return sorted(r.target for r in S.outbox(factory, channel="email", incident_id=iid, kind=kind))


def test_p0_pages_engineering_manager_and_on_call_at_once(sqlite_url: str, smtp: SmtpPeer) -> None:
    clock = S.Clock()
    runner, factory = make(sqlite_url, clock, smtp_host="127.0.0.1", smtp_port=smtp.port)
    p0 = S.declare(factory, clock(), "P0")
    p1 = S.declare(factory, clock(), "P1")
    p2 = S.declare(factory, clock(), "P2")
    runner.run_once()
    runner.stop()
    assert emailed(factory, p0, "opened") == ["alice@example.com", "carol@example.com"]  # on-call + manager
    assert emailed(factory, p1, "opened") == ["alice@example.com", "bob@example.com"]  # on-call + senior
    assert emailed(factory, p2, "opened") == ["alice@example.com"]  # on-call
    assert len(smtp.messages) == 5
    inc = S.incident(factory, p0)
    assert inc.escalation_level == 1 and inc.next_escalation_at == S.T0 + timedelta(minutes=30)


def test_levels_at_30_60_and_120_minutes_with_the_levels_people(sqlite_url: str, smtp: SmtpPeer) -> None:
    clock = S.Clock()
    runner, factory = make(sqlite_url, clock, smtp_host="127.0.0.1", smtp_port=smtp.port)
    iid = S.declare(factory, clock(), "P1")
    steps = []
    for minute in (29, 30, 59, 60, 119, 120, 180, 300):
        clock.t = S.T0 + timedelta(minutes=minute, seconds=0)
        result = runner.run_once()
        steps.append((minute, [s.level for s in result.escalations]))
    runner.stop()
    assert steps == [(29, []), (30, [2]), (59, []), (60, [3]), (119, []), (120, [4]), (180, []), (300, [])]
    events = S.timeline(factory, iid, "escalated")
    assert [(e.data["level"], e.data["role"], e.data["people"]) for e in events] == [
        (2, "Senior Engineer", ["bob"]),
        (3, "Engineering Manager", ["carol"]),
        (4, "CTO/Leadership", ["dave"]),
    ]
    assert [e.at for e in events] == [S.T0 + timedelta(minutes=m) for m in (30, 60, 120)]
    assert "bob@example.com" in emailed(factory, iid, "escalated")
    assert "dave@example.com" in emailed(factory, iid, "escalated")
    inc = S.incident(factory, iid)
    assert inc.escalation_level == 4 and inc.next_escalation_at is None


def test_resolved_incidents_stop_escalating_and_reminding(sqlite_url: str) -> None:
    clock = S.Clock()
    runner, factory = make(sqlite_url, clock)
    iid = S.declare(factory, clock(), "P0")
    clock.advance(minutes=31)
    runner.run_once()
    with flows.write_lock(factory.kw["bind"]), db.session_scope(factory) as session:
        flows.resolve(
            session, iid, root_cause="x", resolution="y", prevention="z", actor="alice", now=clock.advance(minutes=14)
        )
    inc = S.incident(factory, iid)
    assert inc.next_escalation_at is None and inc.next_reminder_at is None
    for _ in range(4):
        clock.advance(minutes=40)
        runner.run_once()
    runner.stop()
    assert escalations(factory, iid) == [2]
    # the 15-minute reminder was overdue at the first pass (31 min): one reminder, no burst; none after resolving
    assert [e.at for e in S.timeline(factory, iid, "reminder_due")] == [S.T0 + timedelta(minutes=31)]


def test_restart_mid_escalation_loses_and_doubles_nothing(sqlite_url: str) -> None:
    clock = S.Clock()
    first, factory = make(sqlite_url, clock)
    iid = S.declare(factory, clock(), "P1")
    clock.advance(minutes=30)
    first.run_once()
    first.stop()  # the process goes away after L2
    assert escalations(factory, iid) == [2]
    # a new process (own engine, own runner) comes back 2 h 5 min after opening: L3 and L4 were missed
    clock.t = S.T0 + timedelta(minutes=125)
    second = IncidentRunner(
        S.settings(sqlite_url),
        db.session_factory(db.make_engine(sqlite_url)),
        now=clock,
        roster=S.roster(),
        heartbeat=False,
    )
    result = second.run_once()
    assert [s.level for s in result.escalations] == [3, 4]
    again = IncidentRunner(
        S.settings(sqlite_url),
        db.session_factory(db.make_engine(sqlite_url)),
        now=clock,
        roster=S.roster(),
        heartbeat=False,
    )
    assert again.run_once().escalations == []
    second.stop()
    again.stop()
    assert escalations(factory, iid) == [2, 3, 4]


@pytest.mark.pg
def test_concurrent_sweepers_on_postgresql_escalate_exactly_once(pg_url: str) -> None:
    clock = S.Clock()
    runner, factory = make(pg_url, clock)
    ids = [S.declare(factory, clock(), "P1", title=f"incident {i}") for i in range(5)]
    runner.stop()
    at = S.T0 + timedelta(minutes=61)  # two levels due for each incident
    cfg = notify_config.configure(S.settings(pg_url), S.roster())
    barrier = threading.Barrier(4)
    results: list[list[escalation.Step]] = []
    errors: list[BaseException] = []

    def sweep() -> None:
        engine = db.make_engine(pg_url)
        try:
            barrier.wait()
            results.append(escalation.sweep_escalations(db.session_factory(engine), cfg, at))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    done = sorted((s.incident_id, s.level) for r in results for s in r)
    assert done == sorted((i, lv) for i in ids for lv in (2, 3))
    for iid in ids:
        assert escalations(factory, iid) == [2, 3]
        assert S.incident(factory, iid).escalation_level == 3


def test_reminders_every_15_minutes_for_p0_p1_pushed_by_updates(sqlite_url: str) -> None:
    clock = S.Clock()
    runner, factory = make(sqlite_url, clock)
    p1 = S.declare(factory, clock(), "P1", owner="bob")
    p2 = S.declare(factory, clock(), "P2")
    times = []
    for minute in range(1, 61):
        clock.t = S.T0 + timedelta(minutes=minute)
        if minute == 20:  # a status update pushes the next reminder to 20 + 15 = 35
            with flows.write_lock(factory.kw["bind"]), db.session_scope(factory) as session:
                flows.update(session, p1, actor="bob", now=clock(), actions_taken="Restarted the worker")
        result = runner.run_once()
        times += [minute for s in result.reminders if s.incident_id == p1]
    runner.stop()
    assert times == [15, 35, 50]
    assert S.timeline(factory, p2, "reminder_due") == []
    assert S.incident(factory, p2).next_reminder_at is None
    (first,) = [e for e in S.timeline(factory, p1, "reminder_due")][:1]
    assert first.data["owner"] == "bob"
    assert S.incident(factory, p1).next_reminder_at == S.T0 + timedelta(minutes=65)


def test_reminder_goes_to_the_owner_else_on_call(sqlite_url: str) -> None:
    peer = SlackPeer()
    with serve_in_thread(peer.app) as port:
        clock = S.Clock()
        runner, factory = make(
            sqlite_url,
            clock,
            slack_webhook_url=f"http://127.0.0.1:{port}{peer.path}",
            smtp_host="127.0.0.1",
            smtp_port=1,
        )
        owned = S.declare(factory, clock(), "P0", owner="bob")
        free = S.declare(factory, clock(), "P0", owner="@zoe")
        nobody = S.declare(factory, clock(), "P1")
        clock.advance(minutes=15)
        runner.run_once()
        runner.stop()
    reminders = {
        m["text"].splitlines()[0].split(" ")[4]: m["text"] for m in peer.messages if m["text"].startswith("⏰")
    }
    assert "Notified: @bob" in reminders[owned]
    assert "Notified: @zoe" in reminders[free]
    assert "Notified: <@U0ALICE01>" in reminders[nobody]  # no owner: the primary on-call
    assert emailed(factory, owned, "reminder_due") == ["bob@example.com"]
    assert emailed(factory, free, "reminder_due") == []
    assert emailed(factory, nobody, "reminder_due") == ["alice@example.com"]


def test_p3_is_held_until_business_hours_in_each_time_zone(sqlite_url: str, smtp: SmtpPeer) -> None:
    saturday = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
    clock = S.Clock(saturday)
    peer = SlackPeer()
    with serve_in_thread(peer.app) as port:
        runner, factory = make(
            sqlite_url,
            clock,
            slack_webhook_url=f"http://127.0.0.1:{port}{peer.path}",
            smtp_host="127.0.0.1",
            smtp_port=smtp.port,
            business_timezone="Europe/Berlin",
        )
        iid = S.declare(factory, clock(), "P3", title="Docs outdated")
        runner.run_once()
        assert peer.messages == [] and smtp.messages == []
        rows = {r.channel: r for r in S.outbox(factory, incident_id=iid)}
        assert rows["slack"].next_attempt_at == datetime(2026, 11, 30, 8, 0, tzinfo=UTC)  # Mon 09:00 Berlin
        assert rows["email"].next_attempt_at == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # Mon 09:00 UTC (alice)
        assert S.incident(factory, iid).next_escalation_at is None  # P3 does not climb the levels
        clock.t = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
        runner.run_once()
        assert len(peer.messages) == 1 and smtp.messages == []
        clock.t = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
        runner.run_once()
        runner.stop()
    assert len(smtp.messages) == 1
    assert escalations(factory, iid) == []


def test_raising_p3_releases_held_messages_and_starts_the_clock(sqlite_url: str) -> None:
    saturday = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
    clock = S.Clock(saturday)
    peer = SlackPeer()
    with serve_in_thread(peer.app) as port:
        runner, factory = make(sqlite_url, clock, slack_webhook_url=f"http://127.0.0.1:{port}{peer.path}")
        iid = S.declare(factory, clock(), "P3")
        runner.run_once()
        assert peer.messages == []
        with flows.write_lock(factory.kw["bind"]), db.session_scope(factory) as session:
            flows.change_severity(
                session, iid, severity="P1", reason="customers affected", actor="alice", now=clock.advance(minutes=5)
            )
        runner.run_once()
        runner.stop()
    heads = [m["text"].splitlines()[0] for m in peer.messages]
    assert heads == ["🚨 INCIDENT: P3 - Catalog not updating", f"📊 Status Update: {iid}"]
    inc = S.incident(factory, iid)
    assert inc.next_escalation_at == saturday + timedelta(minutes=30)
    assert inc.next_reminder_at == saturday + timedelta(minutes=20)
