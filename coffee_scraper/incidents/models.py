"""SQLAlchemy 2 tables of incident response: incidents, their alerts, the append-only timeline, silences.

Lives here: table definitions and the small vocabularies of their string columns (statuses, event kinds, sources).
Does not live here: queries (``incidents/service.py``), lifecycle changes (``incidents/flows.py``), the timeline
writer (``incidents/events.py``), notification tables (the notifications work's own models).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from coffee_scraper.catalog.models import Base

SEVERITIES = ("P0", "P1", "P2", "P3")
STATUSES = ("investigating", "working", "resolved")
OPEN_STATUSES = ("investigating", "working")
SOURCES = ("watchdog", "prometheus", "alertmanager", "pagerduty", "manual", "drill")
ALERT_STATUSES = ("firing", "resolved")
EVENT_KINDS = (
    "opened",
    "alert_firing",
    "alert_resolved",
    "acknowledged",
    "status_update",
    "severity_changed",
    "owner_changed",
    "escalated",
    "reminder_due",
    "notification_sent",
    "notification_failed",
    "diagnostic",
    "comment",
    "resolve_pending",
    "resolved",
    "reopened",
    "response_breached",
)


class Incident(Base):
    """One incident, ``INC-YYYYMMDD-###``; ``status`` follows the runbook: investigating → working → resolved."""

    __tablename__ = "incidents"
    __table_args__ = (
        Index("ix_incidents_status_rule_component", "status", "rule", "component"),
        Index("ix_incidents_opened_at", "opened_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    severity: Mapped[str] = mapped_column(String(2))
    status: Mapped[str] = mapped_column(String(20), default="investigating")
    resolve_pending_since: Mapped[datetime | None] = mapped_column(default=None)
    # the grouping key: the rule (alertname) and component of the alerts that opened it
    category: Mapped[str | None] = mapped_column(String(200), default=None)
    rule: Mapped[str | None] = mapped_column(String(200), default=None)
    component: Mapped[str | None] = mapped_column(String(200), default=None)
    source: Mapped[str] = mapped_column(String(20))
    is_drill: Mapped[bool] = mapped_column(Boolean, default=False)
    impact: Mapped[str | None] = mapped_column(Text, default=None)
    owner: Mapped[str | None] = mapped_column(String(200), default=None)
    eta: Mapped[str | None] = mapped_column(Text, default=None)
    actions_taken: Mapped[str | None] = mapped_column(Text, default=None)
    next_steps: Mapped[str | None] = mapped_column(Text, default=None)
    root_cause: Mapped[str | None] = mapped_column(Text, default=None)
    resolution: Mapped[str | None] = mapped_column(Text, default=None)
    prevention: Mapped[str | None] = mapped_column(Text, default=None)
    opened_at: Mapped[datetime]
    acknowledged_at: Mapped[datetime | None] = mapped_column(default=None)
    acknowledged_by: Mapped[str | None] = mapped_column(String(200), default=None)
    working_at: Mapped[datetime | None] = mapped_column(default=None)
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)
    last_status_update_at: Mapped[datetime | None] = mapped_column(default=None)
    last_alert_at: Mapped[datetime | None] = mapped_column(default=None)  # rolling grouping window
    response_due_at: Mapped[datetime]
    response_breached_at: Mapped[datetime | None] = mapped_column(default=None)
    escalation_level: Mapped[int] = mapped_column(Integer, default=1)
    next_escalation_at: Mapped[datetime | None] = mapped_column(default=None)
    next_reminder_at: Mapped[datetime | None] = mapped_column(default=None)
    severity_reason: Mapped[str | None] = mapped_column(Text, default=None)
    version: Mapped[int] = mapped_column(Integer, default=0)

    @property
    def is_open(self) -> bool:
        return self.status != "resolved"

    def __repr__(self) -> str:
        return f"<Incident {self.id} {self.severity} {self.status}>"


class IncidentDayCounter(Base):
    """Last incident sequence number used per UTC day (``YYYYMMDD``); bumped atomically by ``ids.next_id``."""

    __tablename__ = "incident_day_counters"

    day: Mapped[str] = mapped_column(String(8), primary_key=True)
    last_seq: Mapped[int] = mapped_column(Integer)


class IncidentAlert(Base):
    """One alert identity (``source`` + ``fingerprint``); repeats update it, a re-fire reuses it."""

    __tablename__ = "incident_alerts"
    __table_args__ = (
        UniqueConstraint("source", "fingerprint"),
        Index("ix_incident_alerts_status_ends_at", "status", "ends_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    incident_id: Mapped[str | None] = mapped_column(ForeignKey("incidents.id"), index=True, default=None)
    source: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(10))
    severity: Mapped[str] = mapped_column(String(2))
    alertname: Mapped[str | None] = mapped_column(String(200), default=None)
    title: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text, default=None)
    labels: Mapped[dict[str, Any]]
    annotations: Mapped[dict[str, Any]]
    links: Mapped[list[Any]]
    starts_at: Mapped[datetime | None] = mapped_column(default=None)
    ends_at: Mapped[datetime | None] = mapped_column(default=None)
    first_received_at: Mapped[datetime]
    last_received_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)
    resolved_by: Mapped[str | None] = mapped_column(String(10), default=None)  # sender | expiry | manual
    receive_count: Mapped[int] = mapped_column(Integer, default=1)
    flap_count: Mapped[int] = mapped_column(Integer, default=0)
    silenced_by: Mapped[str | None] = mapped_column(String(40), default=None)  # "silence:3" | "maintenance:2"
    raw: Mapped[dict[str, Any]]

    def __repr__(self) -> str:
        return f"<IncidentAlert {self.id} {self.source}:{self.fingerprint[:12]} {self.status}>"


class IncidentEvent(Base):
    """One timeline entry of an incident. Append-only: never updated or deleted (``events.record`` writes them)."""

    __tablename__ = "incident_events"
    __table_args__ = (Index("ix_incident_events_incident_id_id", "incident_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"))
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(30))
    actor: Mapped[str | None] = mapped_column(String(200), default=None)
    message: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]]

    def __repr__(self) -> str:
        return f"<IncidentEvent {self.id} {self.incident_id} {self.kind}>"


class Silence(Base):
    """Alertmanager-style silence: every matcher must match an alert's labels between ``starts_at`` and ``ends_at``."""

    __tablename__ = "silences"
    __table_args__ = (Index("ix_silences_ends_at", "ends_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    matchers: Mapped[list[Any]]  # [{name, value, is_regex, is_equal}]
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(200))
    comment: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class MaintenanceWindow(Base):
    """Alerts of ``components`` (empty = every component) arriving in the window are stored but open nothing."""

    __tablename__ = "maintenance_windows"
    __table_args__ = (Index("ix_maintenance_windows_ends_at", "ends_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    components: Mapped[list[Any]]
    comment: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(200))
