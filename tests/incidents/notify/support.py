"""Plain helpers for the notification/escalation tests: a settable clock, settings, a roster, a migrated database,
incidents declared through the incidents core, and readers of the outbox and the timeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from coffee_scraper.catalog import db
from coffee_scraper.incidents import flows
from coffee_scraper.incidents.models import Incident, IncidentEvent
from coffee_scraper.incidents.notify.models import NotificationOutbox
from coffee_scraper.incidents.oncall import Roster, parse_roster
from coffee_scraper.settings import Settings
from tests.support import fast_settings

# A Wednesday morning in UTC (inside default business hours 09:00-17:00).
T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)

ROSTER_TOML = """
timezone = "UTC"

[people.alice]
name = "Alice Primary"
slack = "U0ALICE01"
email = "alice@example.com"
timezone = "UTC"

[people.bob]
name = "Bob Senior"
slack = "@bob"
email = "bob@example.com"
timezone = "America/New_York"

[people.carol]
name = "Carol Manager"
slack = "@carol"
email = "carol@example.com"
timezone = "Europe/Berlin"

[people.dave]
name = "Dave CTO"
slack = "@dave"
email = "dave@example.com"

[people.erin]
name = "Erin Backup"
slack = "@erin"
email = "erin@example.com"

[roles]
oncall_primary = "alice"
oncall_secondary = "erin"
senior_engineer = "bob"
engineering_manager = "carol"
cto = "dave"
devops_lead = "erin"
db_admin = "erin"
"""


class Clock:
    """An injectable clock: ``clock()`` is now; ``advance(minutes=…)`` moves it."""

    def __init__(self, start: datetime = T0) -> None:
        self.t = start

    def __call__(self) -> datetime:
        return self.t

    def advance(self, **kw: float) -> datetime:
        self.t += timedelta(**kw)
        return self.t


def roster() -> Roster:
    return parse_roster(ROSTER_TOML, "test-oncall.toml")


def settings(url: str, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "incident_runner_interval_s": 0.05,
        "outbox_backoff_base_s": 5.0,
        "outbox_backoff_cap_s": 60.0,
        "notify_http_timeout_s": 3.0,
        "smtp_timeout_s": 3.0,
        "smtp_starttls": False,
        "reminder_interval_s": 900.0,
    }
    values.update(extra)
    return fast_settings(url, **values)


def migrated(url: str) -> sessionmaker[Session]:
    db.upgrade(url)
    return db.session_factory(db.make_engine(url))


def declare(factory: sessionmaker[Session], now: datetime, severity: str = "P1", title: str = "Catalog not updating",
            **extra: Any) -> str:  # fmt: skip
    with flows.write_lock(factory.kw["bind"]), db.session_scope(factory) as session:
        incident = flows.declare(session, title=title, severity=severity, actor="tester", now=now, **extra)
        return incident.id


def incident(factory: sessionmaker[Session], incident_id: str) -> Incident:
    with db.session_scope(factory) as session:
        found = session.get(Incident, incident_id)
        assert found is not None
        session.expunge(found)
        return found


def outbox(factory: sessionmaker[Session], **where: Any) -> list[NotificationOutbox]:
    with db.session_scope(factory) as session:
        stmt = select(NotificationOutbox).order_by(NotificationOutbox.id)
        for k, v in where.items():
            stmt = stmt.where(getattr(NotificationOutbox, k) == v)
        rows = list(session.scalars(stmt))
        for r in rows:
            session.expunge(r)
        return rows


def timeline(factory: sessionmaker[Session], incident_id: str, kind: str | None = None) -> list[IncidentEvent]:
    with db.session_scope(factory) as session:
        stmt = select(IncidentEvent).where(IncidentEvent.incident_id == incident_id).order_by(IncidentEvent.id)
        if kind:
            stmt = stmt.where(IncidentEvent.kind == kind)
        rows = list(session.scalars(stmt))
        for r in rows:
            session.expunge(r)
        return rows
