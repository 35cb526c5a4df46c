"""Every read query on incidents: lists, one incident with its timeline and alerts, MTTA/MTTR, open counts.

Lives here: queries and their JSON-ready dict forms (used by the REST views and ``--json`` of the CLI alike; an
incident's checklist rows come from ``followup.checklist_rows``),
and ``refresh_open_gauge`` (``coffee_scraper_open_incidents{severity}`` from the database).
Does not live here: changes of any kind (``incidents/flows.py``), HTTP or CLI code.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from coffee_scraper.catalog.models import utcnow
from coffee_scraper.incidents import silences as silences_mod
from coffee_scraper.incidents.errors import NotFound
from coffee_scraper.incidents.models import (
    OPEN_STATUSES,
    SEVERITIES,
    Incident,
    IncidentAlert,
    IncidentEvent,
    MaintenanceWindow,
    Silence,
)
from coffee_scraper.observability.metrics import OPEN_INCIDENTS

MTT_START_POINT = "opened_at: when the first alert arrived or the incident was declared"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def list_incidents(
    session: Session,
    *,
    open_only: bool = False,
    severities: Sequence[str] = (),
    include_drills: bool = True,
    limit: int = 100,
    offset: int = 0,
) -> list[Incident]:
    """Newest first; ``open_only`` = investigating or working (resolve-pending included)."""
    query = select(Incident).order_by(Incident.opened_at.desc(), Incident.id.desc())
    if open_only:
        query = query.where(Incident.status.in_(OPEN_STATUSES))
    if severities:
        query = query.where(Incident.severity.in_([s.upper() for s in severities]))
    if not include_drills:
        query = query.where(Incident.is_drill.is_(False))
    return list(session.scalars(query.limit(limit).offset(offset)))


def get_incident(session: Session, incident_id: str) -> Incident:
    incident = session.get(Incident, incident_id)
    if incident is None:
        raise NotFound(f"no incident {incident_id!r}; `coffee-scraper incidents list` shows the IDs")
    return incident


def timeline(session: Session, incident_id: str) -> list[IncidentEvent]:
    return list(
        session.scalars(
            select(IncidentEvent).where(IncidentEvent.incident_id == incident_id).order_by(IncidentEvent.id)
        )
    )


def linked_alerts(session: Session, incident_id: str, events: Sequence[IncidentEvent] = ()) -> list[IncidentAlert]:
    """Alerts now in the incident plus those that were (a re-fired alert may have moved to a newer incident)."""
    ids = {int(e.data["alert_id"]) for e in events if isinstance(e.data.get("alert_id"), int)}
    query = select(IncidentAlert).where(IncidentAlert.incident_id == incident_id)
    if ids:
        query = select(IncidentAlert).where(
            (IncidentAlert.incident_id == incident_id) | IncidentAlert.id.in_(sorted(ids))
        )
    return list(session.scalars(query.order_by(IncidentAlert.id)))


def alert_counts(session: Session, incident_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    """incident id -> {"firing": n, "resolved": m} of the alerts now in it."""
    if not incident_ids:
        return {}
    rows = session.execute(
        select(IncidentAlert.incident_id, IncidentAlert.status, func.count())
        .where(IncidentAlert.incident_id.in_(list(incident_ids)))
        .group_by(IncidentAlert.incident_id, IncidentAlert.status)
    ).all()
    counts: dict[str, dict[str, int]] = {}
    for incident_id, status, n in rows:
        counts.setdefault(str(incident_id), {"firing": 0, "resolved": 0})[str(status)] = int(n)
    return counts


# --- dict forms --------------------------------------------------------------------------------------------


def incident_dict(incident: Incident, counts: dict[str, int] | None = None) -> dict[str, Any]:
    return {
        "id": incident.id,
        "title": incident.title,
        "severity": incident.severity,
        "status": incident.status,
        "resolve_pending": incident.resolve_pending_since is not None,
        "resolve_pending_since": _iso(incident.resolve_pending_since),
        "source": incident.source,
        "is_drill": incident.is_drill,
        "category": incident.category,
        "rule": incident.rule,
        "component": incident.component,
        "impact": incident.impact,
        "owner": incident.owner,
        "eta": incident.eta,
        "actions_taken": incident.actions_taken,
        "next_steps": incident.next_steps,
        "root_cause": incident.root_cause,
        "resolution": incident.resolution,
        "prevention": incident.prevention,
        "opened_at": _iso(incident.opened_at),
        "acknowledged_at": _iso(incident.acknowledged_at),
        "acknowledged_by": incident.acknowledged_by,
        "working_at": _iso(incident.working_at),
        "resolved_at": _iso(incident.resolved_at),
        "last_status_update_at": _iso(incident.last_status_update_at),
        "response_due_at": _iso(incident.response_due_at),
        "response_breached_at": _iso(incident.response_breached_at),
        "escalation_level": incident.escalation_level,
        "next_escalation_at": _iso(incident.next_escalation_at),
        "next_reminder_at": _iso(incident.next_reminder_at),
        "severity_reason": incident.severity_reason,
        "version": incident.version,
        "alerts_firing": (counts or {}).get("firing", 0),
        "alerts_resolved": (counts or {}).get("resolved", 0),
    }


def event_dict(event: IncidentEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "at": _iso(event.at),
        "kind": event.kind,
        "actor": event.actor,
        "message": event.message,
        "data": event.data,
    }


def alert_dict(alert: IncidentAlert) -> dict[str, Any]:
    return {
        "id": alert.id,
        "source": alert.source,
        "fingerprint": alert.fingerprint,
        "incident_id": alert.incident_id,
        "status": alert.status,
        "severity": alert.severity,
        "alertname": alert.alertname,
        "title": alert.title,
        "description": alert.description,
        "labels": alert.labels,
        "annotations": alert.annotations,
        "links": alert.links,
        "starts_at": _iso(alert.starts_at),
        "ends_at": _iso(alert.ends_at),
        "first_received_at": _iso(alert.first_received_at),
        "last_received_at": _iso(alert.last_received_at),
        "resolved_at": _iso(alert.resolved_at),
        "resolved_by": alert.resolved_by,
        "receive_count": alert.receive_count,
        "flap_count": alert.flap_count,
        "silenced_by": alert.silenced_by,
    }


def incident_detail(session: Session, incident_id: str, *, now: datetime | None = None) -> dict[str, Any]:
    """One incident with its timeline (oldest first), linked alerts and post-incident checklist items (the
    runbook's four checklists and action items, ``followup.checklist_rows``; ``overdue`` as of ``now``)."""
    from coffee_scraper.incidents.followup import checklist_rows  # followup → events → reactions: lazy

    incident = get_incident(session, incident_id)
    events = timeline(session, incident_id)
    counts = alert_counts(session, [incident_id]).get(incident_id)
    detail = incident_dict(incident, counts)
    detail["timeline"] = [event_dict(e) for e in events]
    detail["alerts"] = [alert_dict(a) for a in linked_alerts(session, incident_id, events)]
    detail["checklist"] = checklist_rows(session, incident.id, now or utcnow())
    return detail


def incident_rows(session: Session, incidents: Sequence[Incident]) -> list[dict[str, Any]]:
    counts = alert_counts(session, [i.id for i in incidents])
    return [incident_dict(i, counts.get(i.id)) for i in incidents]


def _matchers_text(matchers: list[Any]) -> str:
    try:
        return ", ".join(m.text() for m in silences_mod.matchers_from_dicts(matchers))
    except (ValueError, KeyError, TypeError):
        return str(matchers)


def silence_dict(silence: Silence, now: datetime) -> dict[str, Any]:
    return {
        "id": silence.id,
        "matchers": silence.matchers,
        "matchers_text": _matchers_text(silence.matchers),
        "starts_at": _iso(silence.starts_at),
        "ends_at": _iso(silence.ends_at),
        "state": silences_mod.state(silence.starts_at, silence.ends_at, now),
        "created_by": silence.created_by,
        "comment": silence.comment,
        "created_at": _iso(silence.created_at),
    }


def window_dict(window: MaintenanceWindow, now: datetime) -> dict[str, Any]:
    return {
        "id": window.id,
        "starts_at": _iso(window.starts_at),
        "ends_at": _iso(window.ends_at),
        "state": silences_mod.state(window.starts_at, window.ends_at, now),
        "components": window.components,
        "comment": window.comment,
        "created_by": window.created_by,
    }


# --- metrics -----------------------------------------------------------------------------------------------


def _summary(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "mean": None, "median": None, "p90": None, "max": None}
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, max(0, round(0.9 * len(ordered) + 0.5) - 1))]
    return {
        "n": len(ordered),
        "mean": round(statistics.fmean(ordered), 1),
        "median": round(statistics.median(ordered), 1),
        "p90": round(p90, 1),
        "max": round(ordered[-1], 1),
    }


def stats(
    session: Session, *, since: datetime | None = None, until: datetime | None = None, include_drills: bool = False
) -> dict[str, Any]:
    """MTTA and MTTR in seconds (mean, median, p90) over incidents opened in [since, until), overall and per severity.

    MTTA = acknowledged_at − opened_at (acknowledged incidents); MTTR = resolved_at − opened_at (resolved ones).
    """
    query = select(Incident)
    if since is not None:
        query = query.where(Incident.opened_at >= since)
    if until is not None:
        query = query.where(Incident.opened_at < until)
    if not include_drills:
        query = query.where(Incident.is_drill.is_(False))
    incidents = list(session.scalars(query))

    def block(items: list[Incident]) -> dict[str, Any]:
        mtta = [(i.acknowledged_at - i.opened_at).total_seconds() for i in items if i.acknowledged_at]
        mttr = [(i.resolved_at - i.opened_at).total_seconds() for i in items if i.resolved_at]
        return {
            "incidents": len(items),
            "open": sum(1 for i in items if i.is_open),
            "acknowledged": len(mtta),
            "resolved": len(mttr),
            "response_breaches": sum(1 for i in items if i.response_breached_at is not None),
            "mtta_s": _summary(mtta),
            "mttr_s": _summary(mttr),
        }

    return {
        "since": _iso(since),
        "until": _iso(until),
        "include_drills": include_drills,
        "start_point": MTT_START_POINT,
        **block(incidents),
        "by_severity": {sev: block([i for i in incidents if i.severity == sev]) for sev in SEVERITIES},
    }


def open_counts(session: Session) -> dict[str, int]:
    """Open (not resolved) incidents per severity, drills left out."""
    rows = session.execute(
        select(Incident.severity, func.count())
        .where(Incident.status.in_(OPEN_STATUSES), Incident.is_drill.is_(False))
        .group_by(Incident.severity)
    ).all()
    counts = dict.fromkeys(SEVERITIES, 0)
    for severity, n in rows:
        counts[str(severity)] = int(n)
    return counts


def refresh_open_gauge(session: Session) -> dict[str, int]:
    """Set ``coffee_scraper_open_incidents{severity}`` from the database; returns the counts."""
    counts = open_counts(session)
    for severity, n in counts.items():
        OPEN_INCIDENTS.labels(severity=severity).set(n)
    return counts
