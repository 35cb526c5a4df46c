"""Post-incident follow-through: the runbook's four checklists, postmortems, reminders, reports, and the recovery loop.

Lives here: ``CHECKLISTS`` (the runbook's "Post-Incident Procedures" as data: items, due windows, owners, automatic
checks), creating them when an incident resolves, checking items off (by hand or from diagnostics), reminders for
overdue items; whether a postmortem is required (P0/P1, data loss, detected by a human, slower than the target)
and its blameless Markdown draft built from the record; action items (optionally opened as GitHub issues); the
weekly report (counts by severity, MTTA/MTTR, response breaches, overdue follow-ups); and ``RecoveryLoop``, the
background pass in ``serve`` that runs diagnostics (and allowed automatic remediation) when an incident opens and
does the follow-up work when one resolves.
Does not live here: the incident lifecycle (``flows.py``), the checks (``diagnostics.py``), the actions
(``remediation.py``), message delivery (``notify/``).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from coffee_scraper.catalog import db
from coffee_scraper.catalog.models import Roaster, ScrapeRun
from coffee_scraper.incidents import events
from coffee_scraper.incidents.diagnostics import DiagnosticsReport, run_diagnostics
from coffee_scraper.incidents.models import Incident, IncidentAlert, IncidentEvent
from coffee_scraper.incidents.ops_models import ChecklistItem, Postmortem, RemediationRun
from coffee_scraper.observability.logging import get_logger
from coffee_scraper.settings import Settings

# The runbook's "Resolution Phase (30 minutes - 4 hours)": resolving later than its end needs a postmortem.
RESOLUTION_TARGET = timedelta(hours=4)
ACTION_TYPES = ("mitigate", "prevent", "process", "other")
DIAGNOSTICS_ON_OPEN_WINDOW = timedelta(hours=1)  # an incident opened longer ago than this is not diagnosed late
AUTO_CHECK_EVERY = timedelta(minutes=5)  # diagnostics for unchecked "operational/healthy" items, at most this often
RECURRENCE_WINDOW = timedelta(hours=1)  # "Monitor for recurrence" is checked when nothing re-fired for this long
log = get_logger("incidents")


class FollowupError(ValueError):
    """A follow-up operation cannot be done as asked; the message says what to do instead."""


@dataclass(frozen=True)
class ItemSpec:
    text: str
    auto_check: str | None = None  # how the system checks it off (see AUTO_CHECKS)
    owner_role: str | None = None  # roster role owning it; None = the incident's owner (else the on-call)


@dataclass(frozen=True)
class ChecklistSpec:
    phase: str
    heading: str  # the runbook's heading ("1. Immediate Actions (0-1 hour)")
    starts_after: timedelta
    due_after: timedelta  # due this long after resolution (the end of the runbook's window)
    items: tuple[ItemSpec, ...]


CHECKLISTS: tuple[ChecklistSpec, ...] = (
    ChecklistSpec(
        "immediate",
        "1. Immediate Actions (0-1 hour)",
        timedelta(0),
        timedelta(hours=1),
        (
            ItemSpec("Verify system is fully operational", "operational"),
            ItemSpec("Check all services are healthy", "healthy"),
            ItemSpec("Monitor for recurrence", "no_recurrence"),
            ItemSpec("Update status page if applicable"),
            ItemSpec("Notify stakeholders of resolution", "resolution_notified"),
        ),
    ),
    ChecklistSpec(
        "documentation",
        "2. Documentation (1-24 hours)",
        timedelta(hours=1),
        timedelta(hours=24),
        (
            ItemSpec("Document incident details in GitHub issue"),
            ItemSpec("Record timeline of events", "timeline_recorded"),
            ItemSpec("Identify root cause", "root_cause"),
            ItemSpec("Document resolution steps", "resolution"),
            ItemSpec("Update runbooks if needed"),
        ),
    ),
    ChecklistSpec(
        "postmortem",
        "3. Post-Mortem (1-7 days)",
        timedelta(days=1),
        timedelta(days=7),
        (
            ItemSpec("Schedule post-mortem meeting", owner_role="engineering_manager"),
            ItemSpec("Review incident timeline"),
            ItemSpec("Identify improvement opportunities"),
            ItemSpec("Update procedures and runbooks"),
            ItemSpec("Implement preventive measures"),
        ),
    ),
    ChecklistSpec(
        "followup",
        "4. Follow-up Actions (1-30 days)",
        timedelta(days=1),
        timedelta(days=30),
        (
            ItemSpec("Implement preventive measures"),
            ItemSpec("Update monitoring thresholds"),
            ItemSpec("Improve alerting rules"),
            ItemSpec("Train team on new procedures"),
            ItemSpec("Review and update documentation"),
        ),
    ),
)
PHASES = (*(c.phase for c in CHECKLISTS), "action")
AUTO_CHECKS: dict[str, str] = {
    "operational": "diagnostics: the service and the database checks pass",
    "healthy": "diagnostics: no check fails",
    "no_recurrence": f"nothing re-fired or reopened for {RECURRENCE_WINDOW.total_seconds() / 3600:g} h after "
    "resolution",
    "resolution_notified": "the ✅ RESOLVED notice was delivered",
    "timeline_recorded": "the postmortem draft (with the timeline from the record) exists",
    "root_cause": "the incident record has a root cause",
    "resolution": "the incident record has a resolution",
}


def _owner_for(incident: Incident, role: str | None, roster: Any, now: datetime) -> str | None:
    if role and roster is not None:
        with contextlib.suppress(KeyError):
            person = roster.who(role, now)
            if person is not None:
                return str(person.handle)
    if incident.owner:
        return incident.owner
    if roster is not None:
        with contextlib.suppress(KeyError):
            person = roster.who("oncall_primary", now)
            if person is not None:
                return str(person.handle)
    return None


def _roster(settings: Settings | None) -> Any:
    if settings is None:
        return None
    try:
        from coffee_scraper.incidents.oncall import load_roster

        return load_roster(settings.oncall_file)
    except Exception:
        return None


def get_incident(session: Session, incident_id: str) -> Incident:
    incident = session.get(Incident, incident_id.strip().upper())
    if incident is None:
        raise FollowupError(f"no incident {incident_id}; `coffee-scraper incidents list` shows them")
    return incident


def checklist(session: Session, incident_id: str) -> list[ChecklistItem]:
    order = {p: i for i, p in enumerate(PHASES)}
    rows = list(session.scalars(select(ChecklistItem).where(ChecklistItem.incident_id == incident_id)))
    return sorted(rows, key=lambda r: (order.get(r.phase, 99), r.position))


def checklist_rows(session: Session, incident_id: str, now: datetime) -> list[dict[str, Any]]:
    """The incident's post-incident checklists (the runbook's four, then action items) as JSON-ready rows, in order;
    ``overdue``: not done and past due at ``now``. Empty until the checklists are created (at resolution)."""
    return [
        {
            "id": item.id,
            "item": f"{item.phase}.{item.position}",
            "phase": item.phase,
            "text": item.text,
            "owner": item.owner,
            "due_at": item.due_at.isoformat(),
            "done_at": item.done_at.isoformat() if item.done_at else None,
            "done_by": item.done_by,
            "auto_check": item.auto_check,
            "type": item.item_type,
            "ticket_url": item.ticket_url,
            "note": item.note,
            "overdue": item.done_at is None and item.due_at < now,
        }
        for item in checklist(session, incident_id)
    ]


def create_checklists(
    session: Session, incident: Incident, *, now: datetime, roster: Any = None
) -> list[ChecklistItem]:
    """The runbook's four checklists for a resolved incident, due relative to its resolution (idempotent)."""
    if incident.resolved_at is None:
        raise FollowupError(f"{incident.id} is not resolved: checklists start at resolution")
    existing = {(r.phase, r.position) for r in checklist(session, incident.id)}
    created = []
    for spec in CHECKLISTS:
        for position, item in enumerate(spec.items, 1):
            if (spec.phase, position) in existing:
                continue
            row = ChecklistItem(
                incident_id=incident.id,
                phase=spec.phase,
                position=position,
                text=item.text,
                owner=_owner_for(incident, item.owner_role, roster, now),
                due_at=incident.resolved_at + spec.due_after,
                auto_check=item.auto_check,
                created_at=now,
                reminders=0,
            )
            session.add(row)
            created.append(row)
    if incident.prevention and ("action", 1) not in existing:
        created.append(
            add_action_item(
                session,
                incident,
                incident.prevention,
                item_type="prevent",
                now=now,
                record=False,
                owner=_owner_for(incident, None, roster, now),
            )
        )
    session.flush()
    if created:
        events.record(
            session,
            incident,
            "comment",
            now=now,
            actor="system",
            message=f"post-incident checklists created: {len(created)} items (immediate due "
            f"{(incident.resolved_at + CHECKLISTS[0].due_after):%Y-%m-%d %H:%M} UTC)",
            data={"type": "checklists_created", "items": len(created)},
        )
    return created


def find_item(session: Session, incident_id: str, ref: str | int) -> ChecklistItem:
    """An item by id, by ``phase.position`` (``immediate.1``) or by the start of its text."""
    rows = checklist(session, incident_id)
    text = str(ref).strip()
    for row in rows:
        if text == str(row.id) or text.lower() == f"{row.phase}.{row.position}":
            return row
    matches = [r for r in rows if r.text.lower().startswith(text.lower())] if text else []
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(f"{r.phase}.{r.position}" for r in rows) or "none (the incident is not resolved yet)"
    if len(matches) > 1:
        raise FollowupError(f"{text!r} matches {len(matches)} items; use PHASE.N: {known}")
    raise FollowupError(f"no checklist item {text!r} on {incident_id}; items: {known}")


def check_item(
    session: Session,
    incident_id: str,
    ref: str | int,
    *,
    actor: str,
    now: datetime,
    done: bool = True,
    note: str | None = None,
) -> ChecklistItem:
    """Check an item off (or un-check it); the change goes on the incident's timeline."""
    incident = get_incident(session, incident_id)
    item = find_item(session, incident.id, ref)
    if done == (item.done_at is not None):
        return item
    item.done_at, item.done_by = (now, actor) if done else (None, None)
    if note is not None:
        item.note = note
    events.record(
        session,
        incident,
        "comment",
        now=now,
        actor=actor,
        message=f"checklist {item.phase}.{item.position} {'done' if done else 'reopened'}: {item.text}"
        + (f" ({note})" if note else ""),
        data={"type": "checklist", "item_id": item.id, "phase": item.phase, "position": item.position, "done": done},
    )
    return item


def add_action_item(
    session: Session,
    incident: Incident,
    text: str,
    *,
    item_type: str = "prevent",
    owner: str | None = None,
    ticket_url: str | None = None,
    due_in: timedelta = timedelta(days=30),
    now: datetime,
    record: bool = True,
) -> ChecklistItem:
    """A postmortem action item (type mitigate/prevent/process/other, owner, ticket) tracked like a checklist item."""
    if item_type not in ACTION_TYPES:
        raise FollowupError(f"action item type must be one of {', '.join(ACTION_TYPES)}, not {item_type!r}")
    text = (text or "").strip()
    if not text:
        raise FollowupError("an action item needs a text (what to do)")
    position = 1 + max(
        (
            r.position
            for r in session.scalars(
                select(ChecklistItem).where(ChecklistItem.incident_id == incident.id, ChecklistItem.phase == "action")
            )
        ),
        default=0,
    )
    base = incident.resolved_at or now
    row = ChecklistItem(
        incident_id=incident.id,
        phase="action",
        position=position,
        text=text,
        owner=owner or incident.owner,
        due_at=max(base, now) + due_in if record else base + due_in,
        item_type=item_type,
        ticket_url=ticket_url,
        created_at=now,
        reminders=0,
    )
    session.add(row)
    session.flush()
    if record:
        events.record(
            session,
            incident,
            "comment",
            now=now,
            actor=owner or "system",
            message=f"action item {position} ({item_type}): {text}",
            data={"type": "action_item", "item_id": row.id, "item_type": item_type},
        )
    return row


# --- automatic checks ------------------------------------------------------------------------------------------


def _resolution_notified(session: Session, incident: Incident) -> bool:
    if incident.resolved_at is None:
        return False
    sent = session.scalars(
        select(IncidentEvent).where(
            IncidentEvent.incident_id == incident.id,
            IncidentEvent.kind == "notification_sent",
            IncidentEvent.at >= incident.resolved_at,
        )
    )
    return any((e.data or {}).get("kind") == "resolved" or "RESOLVED" in (e.message or "") for e in sent)


def _recurred(session: Session, incident: Incident) -> bool:
    """Did the incident reopen, or did an incident with the same rule and component open after it resolved?"""
    assert incident.resolved_at is not None
    reopened = session.scalar(
        select(func.count())
        .select_from(IncidentEvent)
        .where(
            IncidentEvent.incident_id == incident.id,
            IncidentEvent.kind == "reopened",
            IncidentEvent.at >= incident.resolved_at,
        )
    )
    if reopened:
        return True
    if incident.rule is None:
        return False
    again = session.scalar(
        select(func.count())
        .select_from(Incident)
        .where(
            Incident.id != incident.id,
            Incident.rule == incident.rule,
            Incident.component == incident.component,
            Incident.opened_at >= incident.resolved_at,
            Incident.opened_at < incident.resolved_at + RECURRENCE_WINDOW,
        )
    )
    return bool(again)


def diagnostics_verdicts(report: DiagnosticsReport) -> dict[str, bool]:
    """What a diagnostics run says about the two checklist items it can check."""
    statuses = {c.name: c.status for c in report.checks}
    return {
        "operational": all(statuses.get(n) in ("ok", "warn", "skipped", None) for n in ("service", "database")),
        "healthy": all(s != "fail" for s in statuses.values()),
    }


def apply_auto_checks(
    session: Session, incident: Incident, *, now: datetime, report: DiagnosticsReport | None = None
) -> list[ChecklistItem]:
    """Check off what the system can verify; returns the items checked now. Diagnostics-based items need ``report``."""
    checked = []
    verdicts = diagnostics_verdicts(report) if report is not None else {}
    postmortem = session.get(Postmortem, incident.id)
    for item in checklist(session, incident.id):
        if item.done_at is not None or not item.auto_check:
            continue
        key = item.auto_check
        ok = False
        why = AUTO_CHECKS.get(key, key)
        if key in verdicts:
            ok = verdicts[key]
            why = f"{why} ({report.summary_line() if report else ''})"
        elif key == "root_cause":
            ok = bool(incident.root_cause)
        elif key == "resolution":
            ok = bool(incident.resolution)
        elif key == "resolution_notified":
            ok = _resolution_notified(session, incident)
        elif key == "timeline_recorded":
            ok = postmortem is not None and bool(postmortem.markdown)
        elif key == "no_recurrence" and incident.resolved_at is not None:
            ok = now >= incident.resolved_at + RECURRENCE_WINDOW and not _recurred(session, incident)
        if ok:
            item.done_at, item.done_by, item.note = now, "system", f"checked automatically: {why}"
            checked.append(item)
    if checked:
        events.record(
            session,
            incident,
            "comment",
            now=now,
            actor="system",
            message="checked automatically: " + "; ".join(f"{i.phase}.{i.position} {i.text}" for i in checked),
            data={"type": "checklist_auto", "items": [i.id for i in checked]},
        )
    return checked


def overdue_items(session: Session, now: datetime, *, incident_id: str | None = None) -> list[ChecklistItem]:
    stmt = select(ChecklistItem).where(ChecklistItem.done_at.is_(None), ChecklistItem.due_at < now)
    if incident_id:
        stmt = stmt.where(ChecklistItem.incident_id == incident_id)
    return list(session.scalars(stmt.order_by(ChecklistItem.due_at)))


def remind_overdue(session: Session, *, now: datetime, interval: timedelta) -> list[ChecklistItem]:
    """Remind the owners of overdue items (at most once per ``interval`` per item): timeline entry + messages."""
    due = [i for i in overdue_items(session, now) if i.last_reminded_at is None or now - i.last_reminded_at >= interval]
    by_incident: dict[str, list[ChecklistItem]] = {}
    for item in due:
        by_incident.setdefault(item.incident_id, []).append(item)
    for incident_id, items in by_incident.items():
        incident = session.get(Incident, incident_id)
        if incident is None:
            continue
        for item in items:
            item.reminders += 1
            item.last_reminded_at = now
        lines = [
            f"{i.phase}.{i.position} {i.text} (owner {i.owner or 'unassigned'}, due {i.due_at:%Y-%m-%d %H:%M} UTC)"
            for i in items
        ]
        event = events.record(
            session,
            incident,
            "comment",
            now=now,
            actor="system",
            message=f"{len(items)} post-incident item(s) overdue: " + "; ".join(lines),
            data={"type": "checklist_reminder", "items": [i.id for i in items]},
        )
        with contextlib.suppress(Exception):
            _send_reminder(session, incident, items, event.id, now)
    return due


def _send_reminder(
    session: Session, incident: Incident, items: list[ChecklistItem], event_id: int, now: datetime
) -> None:
    """⏰ overdue follow-up to Slack and to the owners' e-mail (through the notification outbox)."""
    from coffee_scraper.incidents.notify import config as notify_config
    from coffee_scraper.incidents.notify.outbox import enqueue
    from coffee_scraper.incidents.templates import Message, render_email, render_slack

    cfg = notify_config.current()
    on = cfg.channels()
    fields = tuple(
        (f"{i.phase}.{i.position}", f"{i.text} — owner {i.owner or 'unassigned'}, due {i.due_at:%Y-%m-%d %H:%M} UTC")
        for i in items
    )
    msg = Message(
        "reminder",
        incident.id,
        f"⏰ Post-incident follow-up overdue: {incident.id}",
        fields,
        notes=(f"Check items off: coffee-scraper incidents check {incident.id} PHASE.N",),
        links=cfg.links.for_incident(incident.id),
    )
    common: dict[str, Any] = {
        "incident_id": incident.id,
        "event_id": event_id,
        "kind": "checklist_reminder",
        "now": now,
    }
    s = cfg.settings
    if on.get("slack"):
        enqueue(
            session,
            channel="slack",
            target=s.slack_channel,
            payload=render_slack(msg, s.slack_channel) | {"template": "reminder"},
            **common,
        )
    if on.get("email"):
        subject, body = render_email(msg)
        for owner in {i.owner for i in items if i.owner}:
            person = cfg.roster.resolve(owner)
            if person is not None and person.email:
                enqueue(
                    session,
                    channel="email",
                    target=person.email,
                    payload={"template": "reminder", "subject": subject, "body": body},
                    **common,
                )


# --- postmortems ------------------------------------------------------------------------------------------------


def _highest_severity(session: Session, incident: Incident) -> str:
    seen = {incident.severity}
    for e in session.scalars(
        select(IncidentEvent).where(IncidentEvent.incident_id == incident.id, IncidentEvent.kind == "severity_changed")
    ):
        seen.update(str(v) for k, v in (e.data or {}).items() if k in ("from", "to") and v)
    return min(seen)  # "P0" < "P1" < ...


def postmortem_reasons(session: Session, incident: Incident, *, data_loss: bool = False) -> list[str]:
    """Why a postmortem is required (empty: not required): P0/P1, data loss, human detection, slow resolution."""
    reasons = []
    highest = _highest_severity(session, incident)
    if highest in ("P0", "P1"):
        reasons.append(f"severity {highest}")
    if data_loss or incident.rule == "DataLoss" or (incident.category or "").lower() == "data loss":
        reasons.append("data loss")
    if incident.source == "manual":
        reasons.append("detected by a human, not by the system's alerts")
    if incident.resolved_at is not None and incident.resolved_at - incident.opened_at > RESOLUTION_TARGET:
        took = (incident.resolved_at - incident.opened_at).total_seconds() / 3600
        reasons.append(f"resolved after {took:.1f} h (target: within {RESOLUTION_TARGET.total_seconds() / 3600:g} h)")
    if incident.response_breached_at is not None:
        reasons.append(f"response target missed (due {incident.response_due_at:%Y-%m-%d %H:%M} UTC)")
    return reasons


def ensure_postmortem(session: Session, incident: Incident, *, now: datetime) -> Postmortem:
    """The incident's postmortem row, with whether it is required and why (re-evaluated each call)."""
    pm = session.get(Postmortem, incident.id)
    if pm is None:
        pm = Postmortem(
            incident_id=incident.id,
            required=False,
            reasons=[],
            status="pending",
            data_loss=False,
            detected_by="system",
            created_at=now,
            updated_at=now,
        )
        session.add(pm)
    reasons = postmortem_reasons(session, incident, data_loss=pm.data_loss)
    required = bool(reasons)
    if (required, reasons) != (pm.required, list(pm.reasons or [])):
        pm.required, pm.reasons, pm.updated_at = required, reasons, now
    pm.detected_by = "human" if incident.source == "manual" else "system"
    if required and pm.due_at is None and incident.resolved_at is not None:
        pm.due_at = incident.resolved_at + CHECKLISTS[2].due_after
    session.flush()
    return pm


def _fmt(dt: datetime | None) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S UTC") if dt else "TBD"


def _dur(delta: timedelta | None) -> str:
    if delta is None:
        return "TBD"
    seconds = max(0, int(delta.total_seconds()))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m" if h else (f"{m}m {s:02d}s" if m else f"{s}s")


def _cell(text: Any) -> str:
    return " ".join(str(text or "").split()).replace("|", "\\|")


def affected_roasters(session: Session, incident_id: str) -> list[str]:
    """Roaster names from the incident's alerts (labels ``roaster``, or a component naming a roaster)."""
    names: list[str] = []
    for alert in session.scalars(select(IncidentAlert).where(IncidentAlert.incident_id == incident_id)):
        labels = alert.labels or {}
        for key in ("roaster", "component"):
            value = labels.get(key)
            if value and value not in names and key == "roaster":
                names.append(str(value))
    return names


@dataclass
class ImpactNumbers:
    duration: timedelta | None
    alerts: int
    notifications_sent: int
    notifications_failed: int
    escalation_level: int
    runs_failed: int | None = None
    runs_total: int | None = None
    roasters_affected: list[str] = field(default_factory=list)
    products_not_updated: int | None = None


def impact_numbers(
    session: Session, incident: Incident, *, catalog: Session | None = None, now: datetime | None = None
) -> ImpactNumbers:
    end = incident.resolved_at or now or datetime.now(UTC)
    counts: dict[str, int] = dict(
        session.execute(  # type: ignore[arg-type]
            select(IncidentEvent.kind, func.count())
            .where(IncidentEvent.incident_id == incident.id)
            .group_by(IncidentEvent.kind)
        ).all()
    )
    alerts = session.scalar(
        select(func.count()).select_from(IncidentAlert).where(IncidentAlert.incident_id == incident.id)
    )
    numbers = ImpactNumbers(
        duration=end - incident.opened_at,
        alerts=int(alerts or 0),
        notifications_sent=counts.get("notification_sent", 0),
        notifications_failed=counts.get("notification_failed", 0),
        escalation_level=incident.escalation_level,
        roasters_affected=affected_roasters(session, incident.id),
    )
    if catalog is not None:
        with contextlib.suppress(Exception):
            runs = list(
                catalog.execute(
                    select(ScrapeRun.status, Roaster.name, ScrapeRun.products_seen)
                    .join(Roaster, Roaster.id == ScrapeRun.roaster_id)
                    .where(ScrapeRun.started_at >= incident.opened_at, ScrapeRun.started_at <= end)
                )
            )
            numbers.runs_total = len(runs)
            failed = [r for r in runs if r.status == "fail"]
            numbers.runs_failed = len(failed)
            for r in failed:
                if r.name not in numbers.roasters_affected:
                    numbers.roasters_affected.append(r.name)
            if numbers.roasters_affected:
                from coffee_scraper.catalog.models import Coffee

                numbers.products_not_updated = int(
                    catalog.scalar(
                        select(func.count())
                        .select_from(Coffee)
                        .join(Roaster, Roaster.id == Coffee.roaster_id)
                        .where(Roaster.name.in_(sorted({r.name for r in failed})))
                    )
                    or 0
                )
    return numbers


def draft_postmortem(
    session: Session,
    incident_id: str,
    *,
    now: datetime,
    catalog: Session | None = None,
    authors: str | None = None,
) -> str:
    """The blameless postmortem draft (Markdown) from the incident record; stored on the postmortem row."""
    incident = get_incident(session, incident_id)
    pm = ensure_postmortem(session, incident, now=now)
    timeline = list(
        session.scalars(
            select(IncidentEvent)
            .where(IncidentEvent.incident_id == incident.id)
            .order_by(IncidentEvent.at, IncidentEvent.id)
        )
    )
    alerts = list(
        session.scalars(
            select(IncidentAlert)
            .where(IncidentAlert.incident_id == incident.id)
            .order_by(IncidentAlert.first_received_at)
        )
    )
    remediations = list(
        session.scalars(
            select(RemediationRun).where(RemediationRun.incident_id == incident.id).order_by(RemediationRun.id)
        )
    )
    numbers = impact_numbers(session, incident, catalog=catalog, now=now)
    actions = [i for i in checklist(session, incident.id) if i.phase == "action"]
    drill = " (drill)" if incident.is_drill else ""
    first = alerts[0] if alerts else None
    detected_by = "a human (declared by hand)" if incident.source == "manual" else f"the system ({incident.source})"
    ack = incident.acknowledged_at - incident.opened_at if incident.acknowledged_at else None
    resolved_in = incident.resolved_at - incident.opened_at if incident.resolved_at else None
    lines = [
        f"# Postmortem: {incident.id} — {_cell(incident.title)}{drill}",
        "",
        f"- **Date**: {incident.opened_at:%Y-%m-%d}",
        f"- **Authors**: {authors or incident.owner or 'TBD'}",
        "- **Status**: draft",
        f"- **Severity**: {incident.severity} (highest: {_highest_severity(session, incident)})",
        f"- **Postmortem required**: {'yes — ' + '; '.join(pm.reasons) if pm.required else 'no'}",
        "",
        "Blameless: this review looks for causes in systems and processes, never in individual people.",
        "",
        "## Summary",
        "",
        f"{incident.title} ({incident.severity}{drill}) started {_fmt(incident.opened_at)} and "
        + (
            f"was resolved {_fmt(incident.resolved_at)}, after {_dur(resolved_in)}. "
            if incident.resolved_at
            else "is not resolved yet. "
        )
        + f"It was detected by {detected_by}"
        + (f" and acknowledged after {_dur(ack)}" if ack is not None else "")
        + "."
        + (f" Resolution: {_cell(incident.resolution)}." if incident.resolution else ""),
        "",
        "## Impact",
        "",
        f"- Duration: {_dur(numbers.duration)} ({_fmt(incident.opened_at)} → {_fmt(incident.resolved_at)})",
        f"- User/system impact: {_cell(incident.impact) or 'TBD'}",
        f"- Alerts grouped into this incident: {numbers.alerts}",
        f"- Shops affected: {', '.join(numbers.roasters_affected) or 'none recorded'}",
    ]
    if numbers.runs_total is not None:
        lines.append(f"- Scrape runs during the incident: {numbers.runs_total}, failed: {numbers.runs_failed}")
    if numbers.products_not_updated is not None:
        lines.append(f"- Products of failed shops not updated: {numbers.products_not_updated}")
    lines += [
        f"- Data lost: {'yes' if pm.data_loss or 'data loss' in pm.reasons else 'no data loss recorded'}",
        f"- Notifications: {numbers.notifications_sent} sent, {numbers.notifications_failed} failed; "
        f"escalation level reached: {numbers.escalation_level}",
        "",
        "## Timeline (UTC)",
        "",
        "| time | event | actor | details |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {e.at:%Y-%m-%d %H:%M:%S} | {e.kind} | {_cell(e.actor) or '-'} | {_cell(e.message)[:300]} |"
        for e in timeline
    ]
    lines += [
        "",
        "## Root cause",
        "",
        _cell(incident.root_cause) or "TBD",
        "",
        "Contributing factors: TBD (what made it possible, what made it worse).",
        "",
        "## Trigger",
        "",
    ]
    if first is not None:
        lines.append(
            f"{first.alertname or first.title} ({first.source}, first received {_fmt(first.first_received_at)}): "
            f"{_cell(first.description or first.title)}"
        )
    else:
        lines.append(f"Declared by hand: {_cell(incident.title)}")
    lines += [
        "",
        "## Detection",
        "",
        f"- Detected by {detected_by} at {_fmt(incident.opened_at)}"
        + (f"; the first alert started {_fmt(first.starts_at)}" if first is not None and first.starts_at else ""),
        f"- Acknowledged: {_fmt(incident.acknowledged_at)}"
        + (f" by {incident.acknowledged_by}" if incident.acknowledged_by else "")
        + (f" (time to acknowledge {_dur(ack)})" if ack is not None else ""),
        f"- Response target: {_fmt(incident.response_due_at)}"
        + (
            f" — missed (breached {_fmt(incident.response_breached_at)})"
            if incident.response_breached_at
            else " — met"
            if incident.acknowledged_at and incident.acknowledged_at <= incident.response_due_at
            else ""
        ),
        "",
        "## Resolution",
        "",
        _cell(incident.resolution) or "TBD",
        "",
        f"- Resolved {_fmt(incident.resolved_at)}"
        + (f" after {_dur(resolved_in)} (target: {_dur(RESOLUTION_TARGET)})" if resolved_in is not None else ""),
    ]
    for r in remediations:
        lines.append(
            f"- Remediation {'(dry run) ' if r.dry_run else ''}{r.action}{' ' + r.target if r.target else ''}"
            f" by {r.actor} at {r.finished_at:%H:%M:%S}: {r.status} — {_cell(r.summary)}"
        )
    lines += [
        "",
        "## Action items",
        "",
        "| # | item | type | owner | ticket | status |",
        "|---|---|---|---|---|---|",
    ]
    for a in actions:
        status = f"done {a.done_at:%Y-%m-%d}" if a.done_at else f"open (due {a.due_at:%Y-%m-%d})"
        lines.append(
            f"| {a.position} | {_cell(a.text)} | {a.item_type or 'other'} | {_cell(a.owner) or 'TBD'} | "
            f"{a.ticket_url or 'none'} | {status} |"
        )
    if not actions:
        lines.append("| - | TBD | prevent | TBD | none | open |")
    went_well, went_wrong = _lessons(incident, numbers, remediations)
    lines += [
        "",
        "## Lessons learned",
        "",
        "What went well:",
        *[f"- {x}" for x in went_well or ["TBD"]],
        "",
        "What went wrong:",
        *[f"- {x}" for x in went_wrong or ["TBD"]],
        "",
        "Where we got lucky:",
        "- TBD",
        "",
        "## Supporting information",
        "",
        f"- Incident record: `coffee-scraper incidents show {incident.id}`",
        f"- Prevention recorded at resolution: {_cell(incident.prevention) or 'TBD'}",
    ]
    markdown = "\n".join(lines) + "\n"
    pm.markdown, pm.drafted_at, pm.updated_at = markdown, now, now
    if pm.status == "pending":
        pm.status = "draft"
    session.flush()
    return markdown


def _lessons(
    incident: Incident, n: ImpactNumbers, remediations: Sequence[RemediationRun]
) -> tuple[list[str], list[str]]:
    good, bad = [], []
    if incident.source != "manual":
        good.append(f"the system detected it ({incident.source}) before a person did")
    else:
        bad.append("a person found the problem before the alerts did: monitoring gap")
    if incident.acknowledged_at is not None and incident.acknowledged_at <= incident.response_due_at:
        good.append("acknowledged within the runbook's response time")
    if incident.response_breached_at is not None:
        bad.append("the runbook's response time was missed")
    if n.notifications_failed:
        bad.append(f"{n.notifications_failed} notification deliveries failed")
    elif n.notifications_sent:
        good.append(f"{n.notifications_sent} notifications delivered, none failed")
    if n.escalation_level > 1:
        bad.append(f"it escalated to level {n.escalation_level} before resolution")
    auto = [r for r in remediations if r.automatic and r.status == "ok"]
    if auto:
        good.append("automatic remediation ran: " + ", ".join(r.action for r in auto))
    failed = [r for r in remediations if r.status == "failed"]
    if failed:
        bad.append("remediation failed: " + ", ".join(r.action for r in failed))
    if incident.resolved_at is not None and incident.resolved_at - incident.opened_at > RESOLUTION_TARGET:
        bad.append("resolution took longer than the runbook's resolution phase")
    return good, bad


def open_action_item_issues(
    session: Session, incident_id: str, *, settings: Settings, now: datetime, client: httpx.Client | None = None
) -> list[ChecklistItem]:
    """Open a GitHub issue for every action item without a ticket (labels: incident follow-up, its type)."""
    repo = settings.github_repo
    token = settings.github_token.get_secret_value() if settings.github_token else None
    if not repo or not token:
        raise FollowupError("set COFFEE_SCRAPER_GITHUB_REPO and COFFEE_SCRAPER_GITHUB_TOKEN to open issues")
    incident = get_incident(session, incident_id)
    todo = [i for i in checklist(session, incident.id) if i.phase == "action" and not i.ticket_url]
    api = settings.github_api_url.rstrip("/")
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/vnd.github+json",
        "User-Agent": "coffee-scraper",
    }
    own = client is None
    http = client or httpx.Client(timeout=settings.notify_http_timeout_s)
    opened = []
    try:
        for item in todo:
            body = (
                f"Action item {item.position} ({item.item_type}) from the postmortem of {incident.id}: "
                f"{incident.title}\n\nOwner: {item.owner or 'TBD'}\nDue: {item.due_at:%Y-%m-%d}\n"
            )
            response = http.post(
                f"{api}/repos/{repo}/issues",
                headers=headers,
                json={
                    "title": f"{incident.id} follow-up: {item.text}"[:256],
                    "body": body,
                    "labels": ["incident-follow-up", item.item_type or "other"],
                },
            )
            if response.status_code != 201:
                raise FollowupError(
                    f"GitHub answered HTTP {response.status_code} creating the issue for action item {item.position}: "
                    f"{response.text[:200]} (check the token's issues permission on {repo})"
                )
            item.ticket_url = str(response.json().get("html_url") or "")
            opened.append(item)
            session.flush()
    finally:
        if own:
            http.close()
    if opened:
        events.record(
            session,
            incident,
            "comment",
            now=now,
            actor="system",
            message="GitHub issues opened for action items: " + ", ".join(i.ticket_url or "" for i in opened),
            data={"type": "action_item_issues", "items": [i.id for i in opened]},
        )
    return opened


# --- reports -----------------------------------------------------------------------------------------------------


def _stats(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"count": 0, "mean_s": None, "median_s": None, "p90_s": None}
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, max(0, round(0.9 * len(ordered) + 0.5) - 1))]
    return {
        "count": len(values),
        "mean_s": round(statistics.fmean(values), 1),
        "median_s": round(statistics.median(values), 1),
        "p90_s": round(p90, 1),
    }


def weekly_report(session: Session, *, end: datetime, days: int = 7, include_drills: bool = False) -> dict[str, Any]:
    """Incidents opened in [end - days, end): counts by severity, MTTA/MTTR, response breaches, overdue follow-ups."""
    start = end - timedelta(days=days)
    stmt = select(Incident).where(Incident.opened_at >= start, Incident.opened_at < end)
    incidents = list(session.scalars(stmt.order_by(Incident.opened_at)))
    drills = [i for i in incidents if i.is_drill]
    real = incidents if include_drills else [i for i in incidents if not i.is_drill]
    by_severity = {s: 0 for s in ("P0", "P1", "P2", "P3")}
    for i in real:
        by_severity[i.severity] = by_severity.get(i.severity, 0) + 1
    mtta = [(i.acknowledged_at - i.opened_at).total_seconds() for i in real if i.acknowledged_at]
    mttr = [(i.resolved_at - i.opened_at).total_seconds() for i in real if i.resolved_at]
    per_sev: dict[str, Any] = {}
    for sev in by_severity:
        rows = [i for i in real if i.severity == sev]
        per_sev[sev] = {
            "mtta": _stats([(i.acknowledged_at - i.opened_at).total_seconds() for i in rows if i.acknowledged_at]),
            "mttr": _stats([(i.resolved_at - i.opened_at).total_seconds() for i in rows if i.resolved_at]),
        }
    breaches = [i for i in real if i.response_breached_at is not None]
    slow = [i for i in real if i.resolved_at and i.resolved_at - i.opened_at > RESOLUTION_TARGET]
    overdue = [o for o in overdue_items(session, end) if include_drills or not _is_drill(session, o.incident_id)]
    pms = {
        p.incident_id: p
        for p in session.scalars(select(Postmortem).where(Postmortem.incident_id.in_([i.id for i in real] or ["-"])))
    }
    return {
        "period": {"start": start.isoformat(), "end": end.isoformat(), "days": days},
        "incidents": len(real),
        "drills": len(drills),
        "by_severity": by_severity,
        "open": sum(1 for i in real if i.status != "resolved"),
        "mtta": _stats(mtta),
        "mttr": _stats(mttr),
        "mttr_starts_at": "opened_at (incident opened) to resolved_at",
        "per_severity": per_sev,
        "sla_breaches": [
            {
                "id": i.id,
                "severity": i.severity,
                "title": i.title,
                "due": i.response_due_at.isoformat(),
                "breached_at": i.response_breached_at.isoformat() if i.response_breached_at else None,
            }
            for i in breaches
        ],
        "slow_resolutions": [
            {"id": i.id, "severity": i.severity, "resolved_after_s": (i.resolved_at - i.opened_at).total_seconds()}
            for i in slow
            if i.resolved_at
        ],
        "postmortems": {
            "required": sum(1 for p in pms.values() if p.required),
            "drafted": sum(1 for p in pms.values() if p.markdown),
        },
        "overdue_followups": [
            {
                "incident_id": o.incident_id,
                "item": f"{o.phase}.{o.position}",
                "text": o.text,
                "owner": o.owner,
                "due_at": o.due_at.isoformat(),
            }
            for o in overdue
        ],
        "list": [
            {
                "id": i.id,
                "severity": i.severity,
                "status": i.status,
                "title": i.title,
                "drill": i.is_drill,
                "opened_at": i.opened_at.isoformat(),
            }
            for i in (incidents if include_drills else real)
        ],
    }


def _is_drill(session: Session, incident_id: str) -> bool:
    incident = session.get(Incident, incident_id)
    return bool(incident and incident.is_drill)


def report_markdown(report: dict[str, Any]) -> str:
    def secs(v: Any) -> str:
        return _dur(timedelta(seconds=v)) if v is not None else "-"

    p = report["period"]
    lines = [
        f"# Incident report {p['start'][:10]} – {p['end'][:10]}",
        "",
        f"Incidents: {report['incidents']} ({report['open']} still open); drills: {report['drills']}",
        "",
        "| severity | incidents | MTTA median | MTTR median |",
        "|---|---|---|---|",
    ]
    for sev, count in report["by_severity"].items():
        ps = report["per_severity"][sev]
        lines.append(f"| {sev} | {count} | {secs(ps['mtta']['median_s'])} | {secs(ps['mttr']['median_s'])} |")
    lines += [
        "",
        f"MTTA: mean {secs(report['mtta']['mean_s'])}, median {secs(report['mtta']['median_s'])}, "
        f"p90 {secs(report['mtta']['p90_s'])} ({report['mtta']['count']} acknowledged)",
        f"MTTR (opened → resolved): mean {secs(report['mttr']['mean_s'])}, median {secs(report['mttr']['median_s'])}, "
        f"p90 {secs(report['mttr']['p90_s'])} ({report['mttr']['count']} resolved)",
        "",
        f"Response-time breaches: {len(report['sla_breaches'])}",
        *[f"- {b['id']} ({b['severity']}): {b['title']}" for b in report["sla_breaches"]],
        "",
        f"Postmortems required: {report['postmortems']['required']}, drafted: {report['postmortems']['drafted']}",
        "",
        f"Overdue follow-ups: {len(report['overdue_followups'])}",
        *[
            f"- {o['incident_id']} {o['item']} {o['text']} (owner {o['owner'] or 'unassigned'}, due {o['due_at'][:16]})"
            for o in report["overdue_followups"]
        ],
    ]
    return "\n".join(lines) + "\n"


def status_update_note(session: Session, incident: Incident, *, before_event_id: int | None = None) -> str | None:
    """The newest diagnostics summary not yet reported in a status update (for the next 📊 Status Update).

    "Not yet reported": recorded after the previous ``status_update`` entry of the timeline (or the opening).
    ``before_event_id``: the status update being announced now (``reactions``): only entries before it count.
    """
    previous = select(func.max(IncidentEvent.id)).where(
        IncidentEvent.incident_id == incident.id, IncidentEvent.kind == "status_update"
    )
    if before_event_id is not None:
        previous = previous.where(IncidentEvent.id < before_event_id)
    after_id = session.scalar(previous) or 0
    query = select(IncidentEvent).where(
        IncidentEvent.incident_id == incident.id, IncidentEvent.kind == "diagnostic", IncidentEvent.id > after_id
    )
    if before_event_id is not None:
        query = query.where(IncidentEvent.id < before_event_id)
    entries = session.scalars(query.order_by(IncidentEvent.id.desc()))
    for event in entries:
        data = event.data or {}
        if data.get("type") == "diagnostics" and not data.get("skipped"):
            return str(data.get("summary_text") or event.message)
    return None


# --- diagnostics on the timeline, and the background loop ------------------------------------------------------


def record_diagnostics(
    session: Session, incident: Incident, report: DiagnosticsReport, *, actor: str, now: datetime
) -> IncidentEvent:
    """Put a diagnostics run on the incident's timeline (summary as message, every check in data)."""
    return events.record(
        session,
        incident,
        "diagnostic",
        now=now,
        actor=actor,
        message=report.summary_line(),
        data={"type": "diagnostics", "summary_text": report.summary_text(), **report.to_dict()},
    )


def _has_diagnostics(session: Session, incident_id: str, since: datetime | None = None) -> bool:
    stmt = select(IncidentEvent.data).where(
        IncidentEvent.incident_id == incident_id, IncidentEvent.kind == "diagnostic"
    )
    if since is not None:
        stmt = stmt.where(IncidentEvent.at >= since)
    return any((d or {}).get("type") == "diagnostics" for d in session.scalars(stmt))


@dataclass
class LoopPass:
    diagnosed: list[str] = field(default_factory=list)
    auto_remediated: list[str] = field(default_factory=list)
    checklists: list[str] = field(default_factory=list)
    auto_checked: int = 0
    reminded: int = 0
    postmortems: list[str] = field(default_factory=list)


class RecoveryLoop:
    """One pass (``run_once``) or a loop (``run``): diagnostics + automatic remediation for newly opened
    incidents, checklists + postmortem requirement + automatic checks for resolved ones, overdue reminders.

    Everything it does is derived from the database (which incidents have a diagnostics entry, which have
    checklists), so passes are idempotent and a restart loses nothing.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        incidents_factory: sessionmaker[Session],
        catalog_factory: sessionmaker[Session] | None = None,
        now: Callable[[], datetime] | None = None,
        diagnose: Callable[..., DiagnosticsReport] | None = None,
        engines: dict[str, Engine] | None = None,
    ) -> None:
        self.settings = settings
        self.incidents = incidents_factory
        self.catalog = catalog_factory
        self.now = now or (lambda: datetime.now(UTC))
        self._diagnose = diagnose or run_diagnostics
        self.engines = engines
        self._lock = threading.Lock()
        self._last_check_run: datetime | None = None

    def diagnose(self, incident: Incident | None = None, roasters: Sequence[str] = ()) -> DiagnosticsReport:
        from coffee_scraper.incidents.remediation import registered_engines

        return self._diagnose(
            self.settings,
            incident_id=incident.id if incident else None,
            roasters=roasters,
            now=self.now,
            engines=self.engines if self.engines is not None else registered_engines(),
        )

    def run_once(self) -> LoopPass:
        with self._lock:
            result = LoopPass()
            self._on_open(result)
            self._on_resolve(result)
            now = self.now()
            with db.session_scope(self.incidents) as session:
                result.reminded = len(
                    remind_overdue(
                        session, now=now, interval=timedelta(seconds=self.settings.checklist_reminder_interval_s)
                    )
                )
            return result

    def _on_open(self, result: LoopPass) -> None:
        from coffee_scraper.incidents.remediation import auto_remediate

        now = self.now()
        with self.incidents() as session:
            fresh = [
                i
                for i in session.scalars(
                    select(Incident).where(
                        Incident.status != "resolved", Incident.opened_at >= now - DIAGNOSTICS_ON_OPEN_WINDOW
                    )
                )
                if not _has_diagnostics(session, i.id)
            ]
            scopes = {i.id: affected_roasters(session, i.id) for i in fresh}
        for incident in fresh:
            if self.settings.diagnostics_on_open:
                report = self.diagnose(incident, scopes.get(incident.id, ()))
                with db.session_scope(self.incidents) as session:
                    row = session.get(Incident, incident.id)
                    if row is not None and not _has_diagnostics(session, row.id):
                        record_diagnostics(session, row, report, actor="system", now=self.now())
                        result.diagnosed.append(row.id)
            records = auto_remediate(
                incident,
                settings=self.settings,
                catalog_factory=self.catalog,
                incidents_factory=self.incidents,
                now=self.now,
            )
            if records:
                result.auto_remediated.extend(f"{incident.id}:{r.action}" for r in records)
            if not self.settings.diagnostics_on_open and not records:
                # remember that this incident was handled, so the next pass does not look at it again
                with db.session_scope(self.incidents) as session:
                    row = session.get(Incident, incident.id)
                    if row is not None:
                        events.record(
                            session,
                            row,
                            "diagnostic",
                            now=self.now(),
                            actor="system",
                            message="diagnostics on open are off (COFFEE_SCRAPER_DIAGNOSTICS_ON_OPEN)",
                            data={"type": "diagnostics", "skipped": True},
                        )

    def _on_resolve(self, result: LoopPass) -> None:
        now = self.now()
        roster = _roster(self.settings)
        with db.session_scope(self.incidents) as session:
            resolved = list(
                session.scalars(
                    select(Incident)
                    .where(Incident.status == "resolved", Incident.resolved_at.is_not(None))
                    .where(~select(ChecklistItem.id).where(ChecklistItem.incident_id == Incident.id).exists())
                )
            )
            for incident in resolved:
                create_checklists(session, incident, now=now, roster=roster)
                pm = ensure_postmortem(session, incident, now=now)
                result.checklists.append(incident.id)
                if pm.required and pm.markdown is None:
                    catalog = self.catalog() if self.catalog is not None else None
                    try:
                        draft_postmortem(session, incident.id, now=now, catalog=catalog)
                    finally:
                        if catalog is not None:
                            catalog.close()
                    result.postmortems.append(incident.id)
            pending = list(
                session.scalars(
                    select(ChecklistItem).where(ChecklistItem.done_at.is_(None), ChecklistItem.auto_check.is_not(None))
                )
            )
            needs_diag = sorted({i.incident_id for i in pending if i.auto_check in ("operational", "healthy")})
            others = sorted({i.incident_id for i in pending if i.auto_check not in ("operational", "healthy")})
        report = None
        if needs_diag and (self._last_check_run is None or now - self._last_check_run >= AUTO_CHECK_EVERY):
            report = self.diagnose()
            self._last_check_run = now
        for incident_id in sorted(set(needs_diag) | set(others)):
            with db.session_scope(self.incidents) as session:
                row = session.get(Incident, incident_id)
                if row is None:
                    continue
                if (
                    report is not None
                    and incident_id in needs_diag
                    and not _has_diagnostics(session, incident_id, since=row.resolved_at)
                ):
                    record_diagnostics(session, row, report, actor="system", now=self.now())
                result.auto_checked += len(
                    apply_auto_checks(
                        session, row, now=self.now(), report=report if incident_id in needs_diag else None
                    )
                )

    async def run(self, stop: asyncio.Event, interval_s: float) -> None:
        """A pass every ``interval_s`` (the first one an interval after start) until ``stop`` is set."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
            if stop.is_set():
                break
            try:
                await asyncio.to_thread(self.run_once)
            except Exception as exc:
                log.error("recovery_loop_failed", error=f"{type(exc).__name__}: {exc}")
