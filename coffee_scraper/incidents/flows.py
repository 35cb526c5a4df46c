"""Incident lifecycle: alerts in → incidents out, and every change a person makes.

Lives here:

* ``ingest(session, events, *, now)`` — the single entry point of the receivers and the watchdog. Idempotent
  (at-least-once senders): one ``IncidentAlert`` row per (source, fingerprint); a repeat only bumps counters;
  an activation is told apart by ``startsAt`` (a firing older than or equal to an activation the sender itself
  resolved is stale and ignored). A new or re-firing alert joins the open incident that already holds it, else
  the open incident of the same rule (alertname) + component with alert activity inside the grouping window,
  else opens a new incident. Silences and maintenance windows mute firing alerts (stored, no incident).
  Flapping alerts (re-firing within the flap window again and again) stop writing timeline entries and their
  resolves hold the incident open until they stayed resolved for the flap window. When every alert of an
  incident is resolved it becomes resolve-pending; ``sweep`` auto-resolves it after the quiet period, and an
  alert firing again meanwhile reopens it. Severity is the highest among its alerts (raised automatically,
  lowered only by a person, with a reason). An alert labelled ``drill="true"`` (``DRILL_LABEL``) is a drill: it
  opens a drill incident (``is_drill``, title "DRILL: ...") and groups only with drill incidents — never the other
  way round; ``declare(is_drill=True)`` is the manual path.
* ``declare``, ``ack``, ``update``, ``resolve``, ``reopen``, ``change_severity``, ``comment``: the runbook's steps.
* ``sweep(session, *, now)`` — the periodic part: expiry of alerts whose ``endsAt`` passed without refresh,
  resolve-pending after flapping holds, auto-resolve, response-deadline breaches (recorded once).

Every change goes through ``events.record`` (timeline + reactions, same transaction). Transactions are the
caller's (``catalog.db.session_scope``); on PostgreSQL ``ingest`` and ``sweep`` take one transaction-scoped
advisory lock so concurrent senders cannot open two incidents for one group; on SQLite the caller serialises
writers of one process with ``write_lock`` (SQLite itself serialises processes).
Does not live here: parsing payloads (``receivers.py``), queries for display (``service.py``), notifications.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, exists, select, text
from sqlalchemy.orm import Session, defer

from coffee_scraper.incidents import ids
from coffee_scraper.incidents.alert_config import SEVERITIES, Severity
from coffee_scraper.incidents.errors import Conflict, IncidentError, NotFound
from coffee_scraper.incidents.events import record
from coffee_scraper.incidents.models import OPEN_STATUSES, Incident, IncidentAlert
from coffee_scraper.incidents.models import SEVERITIES as SEVERITY_NAMES
from coffee_scraper.incidents.receivers import AlertEvent, Limits, cap_raw, clean_text, rule_category
from coffee_scraper.incidents.silences import Mutes
from coffee_scraper.settings import Settings, get_settings

ADVISORY_LOCK_KEY = 0x0C0FFEE1  # pg_advisory_xact_lock key of ingestion and sweep
ACTIVITY_RESOLUTION = timedelta(minutes=1)  # precision of Incident.last_alert_at (fewer writes on repeats)
STARTS_AT_SOURCES = ("prometheus", "alertmanager", "watchdog")  # activations told apart by startsAt
_SQLITE_WRITER = threading.Lock()
DRILL_LABEL = "drill"  # an alert with drill="true" opens (or joins) a drill incident
DRILL_TITLE_PREFIX = "DRILL: "


def is_drill_alert(labels: dict[str, Any]) -> bool:
    """An alert labelled ``drill="true"`` (also 1/yes) belongs to a drill."""
    return str(labels.get(DRILL_LABEL, "")).strip().lower() in ("true", "1", "yes")


@dataclass(frozen=True)
class Policy:
    """The knobs of ingestion and sweep, from settings (``incident_*``)."""

    group_window: timedelta = timedelta(hours=1)
    component_labels: tuple[str, ...] = ("component",)
    flap_threshold: int = 3
    flap_window: timedelta = timedelta(minutes=10)
    auto_resolve: bool = True
    quiet_period: timedelta = timedelta(minutes=10)
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def from_settings(cls, s: Settings) -> Policy:
        return cls(
            group_window=timedelta(seconds=s.incident_group_window_s),
            component_labels=tuple(x.strip() for x in s.incident_component_labels.split(",") if x.strip()),
            flap_threshold=max(1, s.incident_flap_threshold),
            flap_window=timedelta(seconds=s.incident_flap_window_s),
            auto_resolve=s.incident_auto_resolve,
            quiet_period=timedelta(seconds=s.incident_quiet_period_s),
            limits=Limits(
                text_max_chars=s.incident_text_max_chars,
                raw_max_bytes=s.incident_raw_max_bytes,
                resolve_timeout=timedelta(seconds=s.incident_alert_resolve_timeout_s),
            ),
        )


def policy_of(settings: Settings | Policy | None) -> Policy:
    if isinstance(settings, Policy):
        return settings
    return Policy.from_settings(settings or get_settings())


@contextmanager
def write_lock(engine: Engine) -> Iterator[None]:
    """Serialise this process's incident write transactions on SQLite (no-op on PostgreSQL)."""
    if engine.dialect.name == "sqlite":
        with _SQLITE_WRITER:
            yield
    else:
        yield


def _lock(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK_KEY})


# --- results -------------------------------------------------------------------------------------------------

RESULTS = (
    "opened",  # a new alert opened a new incident
    "grouped",  # a new alert joined an open incident
    "refired",  # a resolved alert fired again (new activation)
    "duplicate",  # a repeat of what is stored
    "stale",  # older than what is stored (out of order)
    "resolved",  # a firing alert resolved
    "stored",  # a resolve of an alert never seen firing: kept for ordering, opens nothing
    "silenced",  # muted by a silence or a maintenance window
    "acknowledged",  # PagerDuty acknowledge
    "dropped",  # PagerDuty acknowledge/resolve without an open alert
)


@dataclass
class AlertOutcome:
    dedup_key: str
    result: str
    incident_id: str | None = None
    alert_id: int | None = None
    reply_key: str | None = None


@dataclass
class IngestResult:
    outcomes: list[AlertOutcome] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for o in self.outcomes:
            counts[o.result] = counts.get(o.result, 0) + 1
        return counts

    @property
    def incident_ids(self) -> list[str]:
        return sorted({o.incident_id for o in self.outcomes if o.incident_id})


@dataclass
class SweepResult:
    expired: int = 0
    resolve_pending: int = 0
    auto_resolved: list[str] = field(default_factory=list)
    breached: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "expired_alerts": self.expired,
            "resolve_pending": self.resolve_pending,
            "auto_resolved": self.auto_resolved,
            "response_breached": self.breached,
        }


# --- helpers -------------------------------------------------------------------------------------------------


def rank(severity: str) -> int:
    """0 for P0 (the highest) … 3 for P3."""
    return SEVERITY_NAMES.index(severity)


def response_time(severity: str) -> timedelta:
    return SEVERITIES[Severity(severity)].response_time


def _check_severity(severity: str) -> str:
    value = (severity or "").strip().upper()
    if value not in SEVERITY_NAMES:
        raise IncidentError(f"severity {severity!r} is not one of P0, P1, P2, P3 (the runbook's classification)")
    return value


MAX_NAME = 200  # actor, owner and the other person columns


def _required(value: str | None, what: str, hint: str, max_chars: int | None = None) -> str:
    if value is None or not value.strip():
        raise IncidentError(f"{what} is required: {hint}")
    value = clean_text(value.strip())
    if max_chars is not None and len(value) > max_chars:
        raise IncidentError(f"{what} is longer than {max_chars} characters")
    return value


def _optional(value: str | None, what: str = "the value", max_chars: int | None = None) -> str | None:
    if value is None:
        return None
    value = clean_text(value.strip())
    if max_chars is not None and len(value) > max_chars:
        raise IncidentError(f"{what} is longer than {max_chars} characters")
    return value or None


def _actor(actor: str | None, hint: str) -> str:
    return _required(actor, "an actor", hint, MAX_NAME)


def _ago(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds % 3600 == 0 and seconds >= 3600:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0 and seconds >= 60:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def load_incident(session: Session, incident_id: str, *, for_update: bool = False) -> Incident:
    query = select(Incident).where(Incident.id == incident_id)
    if for_update:
        query = query.with_for_update()
    incident = session.scalars(query).one_or_none()
    if incident is None:
        raise NotFound(f"no incident {incident_id!r}; `coffee-scraper incidents list` shows the IDs")
    return incident


def _reset_due(incident: Incident) -> None:
    """Response deadline follows the severity until someone responded (or it was already breached)."""
    if incident.acknowledged_at is None and incident.response_breached_at is None and incident.is_open:
        incident.response_due_at = incident.opened_at + response_time(incident.severity)


def _note_late_response(session: Session, incident: Incident, now: datetime) -> None:
    """Record the response-deadline breach (once) when the first response comes after the deadline."""
    if incident.response_breached_at is None and incident.acknowledged_at is None and now > incident.response_due_at:
        incident.response_breached_at = incident.response_due_at
        policy = SEVERITIES[Severity(incident.severity)]
        record(
            session,
            incident,
            "response_breached",
            now=now,
            actor="system",
            message=f"{incident.severity} response target ({policy.response_text}) missed: "
            f"no acknowledgement by {incident.response_due_at.isoformat()}",
            data={"due_at": incident.response_due_at.isoformat(), "severity": incident.severity},
        )


def _raise_severity(session: Session, incident: Incident, severity: str, now: datetime, reason: str) -> None:
    if rank(severity) < rank(incident.severity):
        old = incident.severity
        incident.severity = severity
        _reset_due(incident)
        record(
            session,
            incident,
            "severity_changed",
            now=now,
            actor="system",
            message=f"severity raised {old} → {severity}: {reason}",
            data={"from": old, "to": severity, "reason": reason, "automatic": True},
        )


def _new_incident(
    session: Session,
    *,
    now: datetime,
    title: str,
    severity: str,
    source: str,
    actor: str | None,
    message: str,
    data: dict[str, Any],
    rule: str | None = None,
    component: str | None = None,
    category: str | None = None,
    impact: str | None = None,
    owner: str | None = None,
    is_drill: bool = False,
) -> Incident:
    incident = Incident(
        id=ids.next_id(session, now),
        title=clean_text(title, 1024),
        severity=severity,
        status="investigating",
        source=source,
        rule=rule,
        component=component,
        category=category,
        impact=impact,
        owner=owner,
        is_drill=is_drill,
        opened_at=now,
        response_due_at=now + response_time(severity),
        escalation_level=1,
        version=0,
    )
    session.add(incident)
    session.flush()
    record(session, incident, "opened", now=now, actor=actor, message=message, data=data)
    return incident


# --- ingestion -----------------------------------------------------------------------------------------------


class _Ingest:
    """State of one ``ingest``/``sweep`` call: rows and incidents seen, incidents to settle."""

    def __init__(self, session: Session, now: datetime, policy: Policy) -> None:
        self.session = session
        self.now = now
        self.policy = policy
        self.mutes = Mutes(session, now)
        self.rows: dict[tuple[str, str], IncidentAlert] = {}
        self.touched: dict[str, Incident] = {}
        # strong references: the session's identity map is weak, and a re-SELECT per repeat would cost an
        # autoflush plus a round trip for every alert of a batch
        self.incidents: dict[str, Incident] = {}
        self.rules: set[str] = set()
        self.open_groups: dict[tuple[str, str | None, bool], list[Incident]] | None = None

    # -- lookups
    def preload(self, events: Sequence[AlertEvent]) -> None:
        by_source: dict[str, set[str]] = {}
        for ev in events:
            by_source.setdefault(ev.source, set()).add(ev.dedup_key)
            if ev.alertname:
                self.rules.add(ev.alertname)
        for source, keys in by_source.items():
            key_list = sorted(keys)
            for i in range(0, len(key_list), 500):
                chunk = key_list[i : i + 500]
                query = (
                    select(IncidentAlert)
                    .where(IncidentAlert.source == source, IncidentAlert.fingerprint.in_(chunk))
                    .options(defer(IncidentAlert.raw))  # never needed for a repeat
                )
                for row in self.session.scalars(query):
                    self.rows[(source, row.fingerprint)] = row
        wanted = sorted({row.incident_id for row in self.rows.values() if row.incident_id})
        for i in range(0, len(wanted), 500):
            for incident in self.session.scalars(select(Incident).where(Incident.id.in_(wanted[i : i + 500]))):
                self.incidents[incident.id] = incident

    def component_of(self, labels: dict[str, Any]) -> str | None:
        for name in self.policy.component_labels:
            value = labels.get(name)
            if value:
                return clean_text(str(value), 200)
        return None

    def incident(self, incident_id: str | None) -> Incident | None:
        if incident_id is None:
            return None
        found = self.incidents.get(incident_id)
        if found is None:
            found = self.session.get(Incident, incident_id)
            if found is not None:
                self.incidents[incident_id] = found
        return found

    def note_activity(self, incident: Incident) -> None:
        """Alert activity for the rolling grouping window (written at most once a minute per incident)."""
        if incident.last_alert_at is None or self.now - incident.last_alert_at >= ACTIVITY_RESOLUTION:
            incident.last_alert_at = self.now

    def group_incident(self, rule: str, component: str | None, drill: bool = False) -> Incident | None:
        """The open incident of this rule + component (drill or not, as the alert) with alert activity inside the
        grouping window."""
        if self.open_groups is None:
            self.open_groups = {}
            rules = sorted(self.rules | {rule})
            for i in range(0, len(rules), 500):
                query = select(Incident).where(
                    Incident.status.in_(OPEN_STATUSES),
                    Incident.rule.in_(rules[i : i + 500]),
                )
                for incident in self.session.scalars(query):
                    self.incidents.setdefault(incident.id, incident)
                    key = (str(incident.rule), incident.component, bool(incident.is_drill))
                    self.open_groups.setdefault(key, []).append(incident)
        elif rule not in self.rules:  # a rule not seen at preload time (not from this batch's events)
            self.rules.add(rule)
            self.open_groups = None
            return self.group_incident(rule, component, drill)
        since = self.now - self.policy.group_window
        candidates = [
            incident
            for incident in self.open_groups.get((rule, component, drill), [])
            if incident.is_open and incident.last_alert_at is not None and incident.last_alert_at >= since
        ]
        return max(candidates, key=lambda i: (i.opened_at, i.id)) if candidates else None

    def remember_group(self, incident: Incident) -> None:
        if self.open_groups is not None and incident.rule:
            key = (incident.rule, incident.component, bool(incident.is_drill))
            self.open_groups.setdefault(key, []).append(incident)

    # -- alert rows
    def flapping(self, row: IncidentAlert) -> bool:
        return row.flap_count >= self.policy.flap_threshold

    def new_row(self, ev: AlertEvent, status: str) -> IncidentAlert:
        row = IncidentAlert(
            fingerprint=ev.dedup_key,
            source=ev.source,
            status=status,
            severity=ev.severity,
            alertname=ev.alertname,
            title=ev.title,
            description=ev.description,
            labels=dict(ev.labels),
            annotations=dict(ev.annotations),
            links=list(ev.links),
            starts_at=ev.started_at,
            ends_at=ev.ends_at,
            first_received_at=self.now,
            last_received_at=self.now,
            receive_count=1,
            flap_count=0,
            raw=cap_raw(ev.raw, self.policy.limits.raw_max_bytes),
        )
        self.session.add(row)
        self.session.flush()
        self.rows[(ev.source, ev.dedup_key)] = row
        return row

    def touch(self, row: IncidentAlert, ev: AlertEvent) -> None:
        row.last_received_at = self.now
        row.receive_count = (row.receive_count or 0) + 1

    def refresh_content(self, row: IncidentAlert, ev: AlertEvent) -> bool:
        """A firing repeat/re-fire may carry new text, links, expiry or severity; True when the severity changed."""
        if row.title != ev.title:
            row.title = ev.title
        if row.description != ev.description:
            row.description = ev.description
        if row.annotations != ev.annotations:
            row.annotations = dict(ev.annotations)
        if row.links != ev.links:
            row.links = list(ev.links)
        if ev.ends_at is not None and row.ends_at != ev.ends_at:
            row.ends_at = ev.ends_at
        if row.labels != ev.labels:  # e.g. the drill label of a watchdog alert (not part of its fingerprint)
            row.labels = dict(ev.labels)
        if row.severity != ev.severity:
            row.severity = ev.severity
            return True
        return False

    def alert_data(self, row: IncidentAlert, **extra: Any) -> dict[str, Any]:
        return {
            "alert_id": row.id,
            "source": row.source,
            "fingerprint": row.fingerprint,
            "alertname": row.alertname,
            "severity": row.severity,
            "labels": row.labels,
            "starts_at": row.starts_at.isoformat() if row.starts_at else None,
            **extra,
        }

    # -- transitions
    def fire(self, ev: AlertEvent) -> AlertOutcome:
        row = self.rows.get((ev.source, ev.dedup_key))
        if row is None:
            row = self.new_row(ev, "firing")
            return self.route(ev, row, how="new")
        self.touch(row, ev)
        if row.status == "firing":
            if (
                ev.source in STARTS_AT_SOURCES
                and ev.started_at is not None
                and row.starts_at is not None
                and ev.started_at < row.starts_at
            ):
                return self.outcome(ev, row, "stale")
            if ev.started_at is not None and (row.starts_at is None or ev.started_at > row.starts_at):
                row.starts_at = ev.started_at  # a new activation while we still had it firing (missed resolve)
            severity_changed = self.refresh_content(row, ev)
            incident = self.incident(row.incident_id)
            if incident is None or not incident.is_open:
                return self.route(ev, row, how="unmuted" if row.silenced_by else "orphan")
            self.note_activity(incident)
            if severity_changed:  # only a change raises: a person's lowering survives repeats
                _raise_severity(self.session, incident, row.severity, self.now, f"alert {row.alertname or row.title}")
            return self.outcome(ev, row, "duplicate", incident.id)
        # resolved before
        if (
            ev.source in STARTS_AT_SOURCES
            and row.resolved_by == "sender"
            and ev.started_at is not None
            and row.starts_at is not None
            and ev.started_at <= row.starts_at
        ):
            return self.outcome(ev, row, "stale", row.incident_id)
        if (
            row.resolved_by == "sender"
            and row.resolved_at is not None
            and (self.now - row.resolved_at <= self.policy.flap_window)
        ):
            row.flap_count = (row.flap_count or 0) + 1
        else:
            row.flap_count = 0
        row.status = "firing"
        row.resolved_at = None
        row.resolved_by = None
        row.starts_at = ev.started_at or self.now
        row.ends_at = ev.ends_at
        self.refresh_content(row, ev)
        return self.route(ev, row, how="refire")

    def route(self, ev: AlertEvent, row: IncidentAlert, *, how: str) -> AlertOutcome:
        """Place a firing alert: muted, into its own/its group's open incident, or a new incident."""
        component = self.component_of(row.labels)
        muted = self.mutes.muted_by(row.labels, component)
        if muted:
            row.silenced_by = muted
            row.incident_id = None
            return self.outcome(ev, row, "silenced")
        row.silenced_by = None
        rule = row.alertname
        drill = is_drill_alert(ev.labels)
        incident = self.incident(row.incident_id)
        reason = "its incident is still open"
        if incident is None or not incident.is_open:
            incident = self.group_incident(rule, component, drill) if rule else None
            reason = (
                f"same rule {rule!r} and component {component!r} as this open incident "
                f"(activity within {_ago(self.policy.group_window)})"
            )
        result = "refired" if how == "refire" else "grouped"
        if incident is None:
            category = row.labels.get("category") or rule_category(rule)
            why = (
                f"no open incident for rule {rule!r} and component {component!r} with activity within "
                f"{_ago(self.policy.group_window)}"
                if rule
                else "no rule (alertname) to group by"
            )
            impact = row.annotations.get("impact") or row.description
            title = row.title
            if drill and not title.startswith(DRILL_TITLE_PREFIX):
                title = DRILL_TITLE_PREFIX + title
            incident = _new_incident(
                self.session,
                now=self.now,
                title=title,
                severity=row.severity,
                source=row.source,
                actor=row.source,
                message=f"{row.severity} {title} (from {row.source}; {why})",
                data=self.alert_data(row, reason=why),
                rule=rule,
                component=component,
                category=clean_text(category, 200) if category else None,
                impact=clean_text(impact, 4000) if impact else None,
                is_drill=drill,
            )
            self.incidents[incident.id] = incident
            self.remember_group(incident)
            result = "opened" if how != "refire" else "refired"
            reason = why
        row.incident_id = incident.id
        incident.last_alert_at = self.now
        if incident.resolve_pending_since is not None:
            incident.resolve_pending_since = None
            record(
                self.session,
                incident,
                "reopened",
                now=self.now,
                actor=row.source,
                message=f"alert {row.alertname or row.title} fired again during the quiet period",
                data=self.alert_data(row),
            )
        flapping = self.flapping(row)
        if not flapping or row.flap_count == self.policy.flap_threshold:
            message = f"{row.severity} {row.title}"
            if flapping:
                message += (
                    f" — flapping ({row.flap_count} re-fires within {_ago(self.policy.flap_window)} of a resolve); "
                    "further changes of this alert are not recorded until it settles"
                )
            record(
                self.session,
                incident,
                "alert_firing",
                now=self.now,
                actor=row.source,
                message=message,
                data=self.alert_data(row, reason=reason, refire=how == "refire", flapping=flapping),
            )
        _raise_severity(self.session, incident, row.severity, self.now, f"alert {row.alertname or row.title}")
        return self.outcome(ev, row, result, incident.id)

    def resolve(self, ev: AlertEvent) -> AlertOutcome:
        row = self.rows.get((ev.source, ev.dedup_key))
        if row is None:
            if ev.source == "pagerduty":
                return AlertOutcome(ev.dedup_key, "dropped", reply_key=ev.reply_key)
            row = self.new_row(ev, "resolved")
            row.resolved_at = min(ev.ends_at or self.now, self.now)
            row.resolved_by = "sender"
            return self.outcome(ev, row, "stored")
        self.touch(row, ev)
        if row.status == "resolved":
            return self.outcome(ev, row, "dropped" if ev.source == "pagerduty" else "duplicate", row.incident_id)
        if (
            ev.source in STARTS_AT_SOURCES
            and ev.started_at is not None
            and row.starts_at is not None
            and ev.started_at < row.starts_at
        ):
            return self.outcome(ev, row, "stale", row.incident_id)
        self.mark_resolved(row, at=min(ev.ends_at or self.now, self.now), by="sender")
        return self.outcome(ev, row, "resolved", row.incident_id)

    def mark_resolved(self, row: IncidentAlert, *, at: datetime, by: str, why: str = "") -> None:
        row.status = "resolved"
        row.resolved_at = at
        row.resolved_by = by
        incident = self.incident(row.incident_id)
        if incident is None or not incident.is_open:
            return
        if not self.flapping(row):
            record(
                self.session,
                incident,
                "alert_resolved",
                now=self.now,
                actor=row.source if by == "sender" else "system",
                message=f"resolved: {row.title}" + (f" ({why})" if why else ""),
                data=self.alert_data(row, resolved_by=by, resolved_at=at.isoformat()),
            )
        self.touched[incident.id] = incident

    def acknowledge(self, ev: AlertEvent) -> AlertOutcome:
        row = self.rows.get((ev.source, ev.dedup_key))
        if row is None or row.status != "firing":
            if row is not None:
                self.touch(row, ev)
            return AlertOutcome(ev.dedup_key, "dropped", reply_key=ev.reply_key)
        self.touch(row, ev)
        incident = self.incident(row.incident_id)
        if incident is None or not incident.is_open:
            return self.outcome(ev, row, "dropped")
        if incident.acknowledged_at is not None:
            return self.outcome(ev, row, "duplicate", incident.id)
        actor = f"{ev.source}:{ev.source_ref or 'client'}"[:200]
        _acknowledge(self.session, incident, actor=actor, now=self.now, take_owner=False)
        return self.outcome(ev, row, "acknowledged", incident.id)

    def outcome(self, ev: AlertEvent, row: IncidentAlert, result: str, incident_id: str | None = None) -> AlertOutcome:
        return AlertOutcome(ev.dedup_key, result, incident_id or row.incident_id, row.id, ev.reply_key)

    # -- incidents
    def parts_resolved(self, incident: Incident) -> bool:
        """Every alert of the incident resolved, flapping ones for at least the flap window."""
        rows = list(self.session.scalars(select(IncidentAlert).where(IncidentAlert.incident_id == incident.id)))
        if not rows:
            return False
        hold_until = self.now - self.policy.flap_window
        for row in rows:
            if row.status != "resolved":
                return False
            if self.flapping(row) and row.resolved_at is not None and row.resolved_at > hold_until:
                return False
        return True

    def settle(self) -> int:
        """Incidents whose alerts are all resolved become resolve-pending; returns how many did."""
        pending = 0
        for incident in self.touched.values():
            if not incident.is_open or incident.resolve_pending_since is not None:
                continue
            if self.parts_resolved(incident):
                incident.resolve_pending_since = self.now
                quiet = self.policy.quiet_period
                record(
                    self.session,
                    incident,
                    "resolve_pending",
                    now=self.now,
                    actor="system",
                    message="all alerts resolved; "
                    + (
                        f"auto-resolves after {_ago(quiet)} without a new alert (resolve it to confirm sooner)"
                        if self.policy.auto_resolve
                        else "resolve it to confirm (auto-resolve is off)"
                    ),
                    data={"quiet_period_s": quiet.total_seconds(), "auto_resolve": self.policy.auto_resolve},
                )
                pending += 1
        self.touched.clear()
        return pending


def ingest(
    session: Session, events: Sequence[AlertEvent], *, now: datetime, settings: Settings | Policy | None = None
) -> IngestResult:
    """Apply alert events (any source) to alerts and incidents in the caller's transaction; idempotent."""
    if now.tzinfo is None:
        raise ValueError("naive datetime given to ingest(); use an aware UTC datetime")
    result = IngestResult()
    if not events:
        return result
    _lock(session)
    run = _Ingest(session, now, policy_of(settings))
    run.preload(events)
    for ev in events:
        if ev.action == "trigger":
            result.outcomes.append(run.fire(ev))
        elif ev.action == "resolve":
            result.outcomes.append(run.resolve(ev))
        elif ev.action == "acknowledge":
            result.outcomes.append(run.acknowledge(ev))
        else:
            raise ValueError(f"unknown alert action {ev.action!r}")
    run.settle()
    return result


def record_change_event(session: Session, marker: dict[str, Any], *, now: datetime) -> list[str]:
    """A change/deploy marker (PagerDuty change event) on the timeline of every open incident; returns their IDs."""
    open_incidents = session.scalars(select(Incident).where(Incident.status.in_(OPEN_STATUSES))).all()
    for incident in open_incidents:
        record(
            session,
            incident,
            "comment",
            now=now,
            actor=marker.get("source") or "change",
            message=f"change: {marker.get('summary')}",
            data={"change": marker},
        )
    return [i.id for i in open_incidents]


# --- the periodic part -------------------------------------------------------------------------------------


def sweep(session: Session, *, now: datetime, settings: Settings | Policy | None = None) -> SweepResult:
    """Expire unrefreshed alerts, settle and auto-resolve incidents, record response breaches (idempotent)."""
    if now.tzinfo is None:
        raise ValueError("naive datetime given to sweep(); use an aware UTC datetime")
    _lock(session)
    policy = policy_of(settings)
    run = _Ingest(session, now, policy)
    result = SweepResult()
    expired = session.scalars(
        select(IncidentAlert)
        .where(IncidentAlert.status == "firing", IncidentAlert.ends_at.is_not(None), IncidentAlert.ends_at <= now)
        .order_by(IncidentAlert.id)
    ).all()
    for row in expired:
        assert row.ends_at is not None
        run.mark_resolved(row, at=row.ends_at, by="expiry", why="no refresh from the sender before its endsAt")
        result.expired += 1
    # incidents held open only by resolved flapping alerts may now be resolve-pending (plus those touched above)
    held = session.scalars(
        select(Incident).where(
            Incident.status.in_(OPEN_STATUSES),
            Incident.resolve_pending_since.is_(None),
            exists().where(IncidentAlert.incident_id == Incident.id, IncidentAlert.flap_count >= policy.flap_threshold),
            ~exists().where(IncidentAlert.incident_id == Incident.id, IncidentAlert.status == "firing"),
        )
    ).all()
    for incident in held:
        run.touched[incident.id] = incident
    result.resolve_pending = run.settle()
    # response-deadline breaches (before auto-resolve: an unanswered incident stays a breach)
    overdue = session.scalars(
        select(Incident)
        .where(
            Incident.status.in_(OPEN_STATUSES),
            Incident.acknowledged_at.is_(None),
            Incident.response_breached_at.is_(None),
            Incident.response_due_at <= now,
        )
        .order_by(Incident.opened_at)
    ).all()
    for incident in overdue:
        _note_late_response(session, incident, now)
        result.breached.append(incident.id)
    if policy.auto_resolve:
        quiet_since = now - policy.quiet_period
        due = session.scalars(
            select(Incident)
            .where(
                Incident.status.in_(OPEN_STATUSES),
                Incident.resolve_pending_since.is_not(None),
                Incident.resolve_pending_since <= quiet_since,
            )
            .order_by(Incident.opened_at)
        ).all()
        for incident in due:
            _resolve(
                session,
                incident,
                now=now,
                actor="system",
                root_cause=None,
                resolution=f"Auto-resolved: all alerts resolved and no new alert for {_ago(policy.quiet_period)}.",
                prevention=None,
                automatic=True,
            )
            result.auto_resolved.append(incident.id)
    return result


# --- what people do ------------------------------------------------------------------------------------------


def declare(
    session: Session,
    *,
    title: str,
    severity: str,
    impact: str | None = None,
    owner: str | None = None,
    actor: str,
    now: datetime,
    is_drill: bool = False,
    component: str | None = None,
) -> Incident:
    """Declare an incident by hand (runbook step "Create incident ticket"); a drill is marked as such."""
    severity = _check_severity(severity)
    title = _required(title, "a title", "a brief description, e.g. --title 'Catalog not updating'")
    actor = _actor(actor, "who declares it")
    return _new_incident(
        session,
        now=now,
        title=title,
        severity=severity,
        source="drill" if is_drill else "manual",
        actor=actor,
        message=f"{'DRILL: ' if is_drill else ''}{severity} {title} (declared by {actor})",
        data={"severity": severity, "declared_by": actor, "is_drill": is_drill},
        impact=_optional(impact),
        owner=_optional(owner, "the owner", MAX_NAME),
        component=_optional(component, "the component", MAX_NAME),
        is_drill=is_drill,
    )


def _acknowledge(
    session: Session,
    incident: Incident,
    *,
    actor: str,
    now: datetime,
    message: str = "",
    take_owner: bool = True,
    implicit: bool = False,
) -> None:
    """``implicit``: the acknowledgement is part of a status update (``data.implicit``); the reactions send no
    message of its own for it — the status update that follows carries it."""
    _note_late_response(session, incident, now)
    incident.acknowledged_at = now
    incident.acknowledged_by = actor
    data: dict[str, Any] = {"response_s": (now - incident.opened_at).total_seconds()}
    if implicit:
        data["implicit"] = True
    record(
        session,
        incident,
        "acknowledged",
        now=now,
        actor=actor,
        message=message or f"acknowledged by {actor}",
        data=data,
    )
    if incident.owner is None and take_owner:
        incident.owner = actor
        record(
            session,
            incident,
            "owner_changed",
            now=now,
            actor=actor,
            message=f"owner: {actor}",
            data={"from": None, "to": actor},
        )


def ack(session: Session, incident_id: str, *, actor: str, now: datetime, message: str = "") -> tuple[Incident, bool]:
    """Acknowledge (idempotent: a second ack changes nothing); the acknowledger becomes owner if there is none."""
    actor = _actor(actor, "who acknowledges")
    incident = load_incident(session, incident_id, for_update=True)
    if not incident.is_open:
        raise Conflict(f"{incident.id} is resolved; reopen it first (`incidents reopen {incident.id}`)")
    if incident.acknowledged_at is not None:
        return incident, False
    _acknowledge(session, incident, actor=actor, now=now, message=clean_text(message) if message else "")
    return incident, True


UPDATE_FIELDS = {"actions_taken": "Actions Taken", "next_steps": "Next Steps", "eta": "ETA", "impact": "Impact"}


def update(
    session: Session,
    incident_id: str,
    *,
    actor: str,
    now: datetime,
    status: str | None = None,
    actions_taken: str | None = None,
    next_steps: str | None = None,
    eta: str | None = None,
    owner: str | None = None,
    impact: str | None = None,
) -> Incident:
    """A status update (runbook template: status, actions taken, next steps, ETA, owner)."""
    actor = _actor(actor, "who updates")
    incident = load_incident(session, incident_id, for_update=True)
    if not incident.is_open:
        raise Conflict(f"{incident.id} is resolved; reopen it first (`incidents reopen {incident.id}`)")
    if status is not None:
        status = status.strip().lower()
        if status == "resolved":
            raise IncidentError(
                "resolving needs root cause, resolution and prevention: use `incidents resolve` "
                "(POST .../resolve) instead of a status update"
            )
        if status not in OPEN_STATUSES:
            raise IncidentError(f"status {status!r} is not one of investigating, working (or use resolve)")
    changes: dict[str, Any] = {}
    if status is not None and status != incident.status:
        changes["status"] = status
    for name, value in (("actions_taken", actions_taken), ("next_steps", next_steps), ("eta", eta), ("impact", impact)):
        cleaned = _optional(value)
        if cleaned is not None and cleaned != getattr(incident, name):
            changes[name] = cleaned
    new_owner = _optional(owner, "the owner", MAX_NAME)
    owner_changes = new_owner is not None and new_owner != incident.owner
    if not changes and not owner_changes:
        raise IncidentError(
            "nothing to update: give at least one of status, actions, next steps, ETA, owner or impact "
            "that differs from the current value"
        )
    if incident.acknowledged_at is None:
        # implicit when the status update below follows: its 📊 message carries the acknowledgement (one message)
        _acknowledge(
            session,
            incident,
            actor=actor,
            now=now,
            message=f"acknowledged by {actor} (status update)",
            implicit=bool(changes),
        )
    if owner_changes:
        old_owner = incident.owner
        incident.owner = new_owner
        record(
            session,
            incident,
            "owner_changed",
            now=now,
            actor=actor,
            message=f"owner: {new_owner}",
            data={"from": old_owner, "to": new_owner},
        )
    if changes:
        for name, value in changes.items():
            setattr(incident, name, value)
        if changes.get("status") == "working" and incident.working_at is None:
            incident.working_at = now
        incident.last_status_update_at = now
        lines = [f"Current Status: {incident.status.capitalize()}"]
        lines += [f"{label}: {changes[name]}" for name, label in UPDATE_FIELDS.items() if name in changes]
        record(session, incident, "status_update", now=now, actor=actor, message="\n".join(lines), data=changes)
    return incident


def _resolve(
    session: Session,
    incident: Incident,
    *,
    now: datetime,
    actor: str,
    root_cause: str | None,
    resolution: str,
    prevention: str | None,
    automatic: bool = False,
) -> None:
    _note_late_response(session, incident, now)
    incident.status = "resolved"
    incident.resolved_at = now
    incident.resolve_pending_since = None
    incident.last_status_update_at = now
    if root_cause is not None:
        incident.root_cause = root_cause
    incident.resolution = resolution
    if prevention is not None:
        incident.prevention = prevention
    firing = session.scalars(
        select(IncidentAlert).where(IncidentAlert.incident_id == incident.id, IncidentAlert.status == "firing")
    ).all()
    for row in firing:
        row.status = "resolved"
        row.resolved_at = now
        row.resolved_by = "manual"
    duration = now - incident.opened_at
    record(
        session,
        incident,
        "resolved",
        now=now,
        actor=actor,
        message=resolution if automatic else f"resolved by {actor}: {resolution}",
        data={
            "duration_s": duration.total_seconds(),
            "automatic": automatic,
            "alerts_resolved": len(firing),
            "root_cause": incident.root_cause,
            "resolution": resolution,
            "prevention": incident.prevention,
        },
    )


def resolve(
    session: Session,
    incident_id: str,
    *,
    root_cause: str,
    resolution: str,
    prevention: str,
    actor: str,
    now: datetime,
) -> Incident:
    """Resolve with the runbook's resolution notice fields (all three required); firing alerts resolve with it."""
    actor = _actor(actor, "who resolves")
    root_cause = _required(root_cause, "root cause", "a brief description of the cause (--root-cause)")
    resolution = _required(resolution, "resolution", "the solution implemented (--resolution)")
    prevention = _required(prevention, "prevention", "preventive measures taken or planned (--prevention)")
    incident = load_incident(session, incident_id, for_update=True)
    if not incident.is_open:
        raise Conflict(f"{incident.id} is already resolved (at {incident.resolved_at})")
    _resolve(
        session, incident, now=now, actor=actor, root_cause=root_cause, resolution=resolution, prevention=prevention
    )
    return incident


def reopen(session: Session, incident_id: str, *, actor: str, reason: str, now: datetime) -> Incident:
    """Reopen a resolved incident (status back to investigating)."""
    actor = _actor(actor, "who reopens")
    reason = _required(reason, "a reason", "why it is not resolved after all")
    incident = load_incident(session, incident_id, for_update=True)
    if incident.is_open:
        raise Conflict(f"{incident.id} is not resolved (status {incident.status})")
    incident.status = "investigating"
    incident.resolved_at = None
    incident.resolve_pending_since = None
    incident.last_alert_at = now
    record(
        session,
        incident,
        "reopened",
        now=now,
        actor=actor,
        message=f"reopened by {actor}: {reason}",
        data={"reason": reason},
    )
    return incident


def change_severity(
    session: Session, incident_id: str, *, severity: str, reason: str, actor: str, now: datetime
) -> Incident:
    """Raise or lower the severity by hand; the reason is recorded (``severity_reason`` and the timeline)."""
    severity = _check_severity(severity)
    actor = _actor(actor, "who changes the severity")
    reason = _required(reason, "a reason", "why the severity changes (--reason)")
    incident = load_incident(session, incident_id, for_update=True)
    if incident.severity == severity:
        raise IncidentError(f"{incident.id} is already {severity}")
    old = incident.severity
    incident.severity = severity
    incident.severity_reason = reason
    _reset_due(incident)
    direction = "raised" if rank(severity) < rank(old) else "lowered"
    record(
        session,
        incident,
        "severity_changed",
        now=now,
        actor=actor,
        message=f"severity {direction} {old} → {severity} by {actor}: {reason}",
        data={"from": old, "to": severity, "reason": reason, "automatic": False},
    )
    return incident


def comment(session: Session, incident_id: str, *, body: str, actor: str, now: datetime) -> Incident:
    """A free comment on the timeline (allowed on resolved incidents too, e.g. post-incident notes)."""
    actor = _actor(actor, "who comments")
    body = _required(body, "the comment text", "what to add to the timeline")
    incident = load_incident(session, incident_id, for_update=True)
    record(session, incident, "comment", now=now, actor=actor, message=body, data={})
    return incident
