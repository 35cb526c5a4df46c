"""Escalation policy and durable timers: who is notified for a severity or a level, and the two sweepers.

Lives here: the runbook's policy read from ``alert_config`` (``SeverityPolicy.notify_roles``: P0 → engineering
manager + on-call at once, P1 → on-call + senior engineer, P2 → on-call, P3 → on-call inside business hours; and
``EscalationLevel``s L1 0–30 min, L2 30–60 min, L3 60+ min, L4 2 h+ for unresolved incidents), the deadlines on
the incident row (``escalation_level``, ``next_escalation_at``, ``next_reminder_at``), ``sweep_escalations`` and
``sweep_reminders``. The sweepers claim a due incident with ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL and
a compare-and-set on ``version`` and the deadline everywhere, so several processes never escalate twice, and a
restarted process resumes from the stored deadlines (nothing lost, nothing doubled).
Each escalation is an 'escalated' timeline entry; reminders are 'reminder_due' entries; ``reactions.react``
turns both into notifications. Does not live here: message text, delivery.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from coffee_scraper.catalog.db import session_scope
from coffee_scraper.incidents import events
from coffee_scraper.incidents.alert_config import EscalationLevel, Severity, SeverityPolicy
from coffee_scraper.incidents.models import Incident
from coffee_scraper.incidents.notify.config import NotifyConfig
from coffee_scraper.incidents.oncall import Person, Roster
from coffee_scraper.observability import metrics as m
from coffee_scraper.observability.logging import get_logger

log = get_logger("escalation")
MAX_STEPS_PER_SWEEP = 500


def policy(cfg: NotifyConfig, severity: str) -> SeverityPolicy:
    return cfg.alert_config.severities[Severity(severity)]


def levels(cfg: NotifyConfig) -> tuple[EscalationLevel, ...]:
    return tuple(sorted(cfg.alert_config.escalation_levels, key=lambda lv: lv.level))


def level(cfg: NotifyConfig, number: int) -> EscalationLevel:
    for lv in levels(cfg):
        if lv.level == number:
            return lv
    raise KeyError(f"no escalation level {number}")


def people_for_roles(roster: Roster, roles: tuple[str, ...], at: datetime) -> list[Person]:
    """The people holding ``roles`` at ``at``, each once, in role order."""
    seen: dict[str, Person] = {}
    for role in roles:
        person = roster.who(role, at)
        if person is not None and person.key not in seen:
            seen[person.key] = person
    return list(seen.values())


def initial_people(cfg: NotifyConfig, severity: str, at: datetime) -> list[Person]:
    """Who is notified when an incident of ``severity`` opens (the runbook's "Escalation" line per severity)."""
    return people_for_roles(cfg.roster, policy(cfg, severity).notify_roles, at)


def level_people(cfg: NotifyConfig, number: int, at: datetime) -> list[Person]:
    return people_for_roles(cfg.roster, level(cfg, number).roles, at)


def next_escalation_at(cfg: NotifyConfig, incident: Incident, now: datetime) -> datetime | None:
    """When the incident should reach its next level (None: resolved, no time escalation, or at the top)."""
    if incident.status == "resolved" or not policy(cfg, incident.severity).time_escalation:
        return None
    current = incident.escalation_level or 1
    upcoming = [lv for lv in levels(cfg) if lv.level > current]
    if not upcoming:
        return None
    return incident.opened_at + upcoming[0].starts_after


def next_reminder_at(
    cfg: NotifyConfig, incident: Incident, now: datetime, *, after: datetime | None = None
) -> datetime | None:
    """Status-update reminder deadline: open P0/P1 only, one reminder interval after ``after`` (default now)."""
    if incident.status == "resolved" or not policy(cfg, incident.severity).status_updates:
        return None
    return (after or now) + timedelta(seconds=cfg.settings.reminder_interval_s)


def reopened_escalation_at(cfg: NotifyConfig, incident: Incident, now: datetime) -> datetime | None:
    """After a reopening the clock restarts at the current level: the next level comes after the same gap."""
    if not policy(cfg, incident.severity).time_escalation:
        return None
    current = incident.escalation_level or 1
    upcoming = [lv for lv in levels(cfg) if lv.level > current]
    if not upcoming:
        return None
    return now + (upcoming[0].starts_after - level(cfg, current).starts_after)


def clear_deadlines(incident: Incident) -> None:
    incident.next_escalation_at = None
    incident.next_reminder_at = None


# --- sweepers -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    incident_id: str
    kind: str  # escalated | reminder_due
    level: int | None = None


def _is_pg(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _due_ids(factory: sessionmaker[Session], column: str, now: datetime, limit: int) -> list[str]:
    col = getattr(Incident, column)
    with session_scope(factory) as session:
        return list(
            session.scalars(
                select(Incident.id)
                .where(col.is_not(None), col <= now, Incident.status != "resolved")
                .order_by(col)
                .limit(limit)
            )
        )


def _claim(session: Session, incident_id: str, column: str, now: datetime) -> Incident | None:
    """Lock (PostgreSQL: skip if another process holds it) and re-check that the deadline is still due."""
    stmt = select(Incident).where(Incident.id == incident_id)
    if _is_pg(session):
        stmt = stmt.with_for_update(skip_locked=True)
    incident = session.scalars(stmt).first()
    if incident is None or incident.status == "resolved":
        return None
    due = getattr(incident, column)
    if due is None or due > now:
        return None
    return incident


def _cas(session: Session, incident: Incident, column: str, values: dict[str, object]) -> bool:
    """Compare-and-set on version and the deadline: exactly one process wins a due step."""
    col = getattr(Incident, column)
    result = session.execute(
        update(Incident)
        .where(Incident.id == incident.id, Incident.version == incident.version, col == getattr(incident, column))
        .values(version=incident.version + 1, **values)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        return False
    session.refresh(incident)
    return True


def escalate_one(session: Session, cfg: NotifyConfig, incident: Incident, now: datetime) -> Step | None:
    """Move a due incident one level up (caller holds the claim); records 'escalated' with who is notified."""
    current = incident.escalation_level or 1
    upcoming = [lv for lv in levels(cfg) if lv.level > current]
    if not upcoming or not policy(cfg, incident.severity).time_escalation:
        _cas(session, incident, "next_escalation_at", {"next_escalation_at": None})
        return None
    target = upcoming[0]
    after = [lv for lv in levels(cfg) if lv.level > target.level]
    following = incident.opened_at + after[0].starts_after if after else None
    if not _cas(
        session, incident, "next_escalation_at", {"escalation_level": target.level, "next_escalation_at": following}
    ):
        return None
    people = level_people(cfg, target.level, now)
    elapsed = now - incident.opened_at
    minutes = int(elapsed.total_seconds() // 60)
    handles = ", ".join(p.handle for p in people) or "nobody (no one holds the role in the roster)"
    message = f"Escalated to Level {target.level}: {target.role} after {minutes} min unresolved; notifying {handles}"
    data = {
        "level": target.level,
        "from_level": current,
        "role": target.role,
        "roles": list(target.roles),
        "people": [p.key for p in people],
        "due_at": (incident.opened_at + target.starts_after).isoformat(),
        "responsibilities": target.responsibilities,
    }
    events.record(session, incident, "escalated", now=now, actor="system", message=message, data=data)
    m.ESCALATIONS.labels(level=str(target.level)).inc()
    log.info("incident_escalated", incident=incident.id, level=target.level, people=[p.key for p in people])
    return Step(incident.id, "escalated", target.level)


def remind_one(session: Session, cfg: NotifyConfig, incident: Incident, now: datetime) -> Step | None:
    """Record a due status-update reminder and set the next one (caller holds the claim)."""
    nxt = next_reminder_at(cfg, incident, now)
    if not _cas(session, incident, "next_reminder_at", {"next_reminder_at": nxt}):
        return None
    last = incident.last_status_update_at or incident.opened_at
    minutes = int((now - last).total_seconds() // 60)
    events.record(
        session,
        incident,
        "reminder_due",
        now=now,
        actor="system",
        message=f"Status update due: last update {minutes} min ago (every "
        f"{int(cfg.settings.reminder_interval_s // 60)} min for {incident.severity})",
        data={
            "last_update_at": last.isoformat(),
            "next_reminder_at": nxt.isoformat() if nxt else None,
            "owner": incident.owner,
        },
    )
    return Step(incident.id, "reminder_due")


def _sweep(
    factory: sessionmaker[Session], cfg: NotifyConfig, now: datetime, column: str, step_fn: object
) -> list[Step]:
    steps: list[Step] = []
    for _ in range(MAX_STEPS_PER_SWEEP):
        ids = _due_ids(factory, column, now, 100)
        if not ids:
            break
        progressed = False
        for incident_id in ids:
            with session_scope(factory) as session:
                incident = _claim(session, incident_id, column, now)
                if incident is None:
                    continue
                step = step_fn(session, cfg, incident, now)  # type: ignore[operator]
            if step is not None:
                steps.append(step)
                progressed = True
        if not progressed:
            break
    return steps


def sweep_escalations(factory: sessionmaker[Session], cfg: NotifyConfig, now: datetime) -> list[Step]:
    """Escalate every incident whose ``next_escalation_at`` is due, one level per step, until none is due
    (a process that was down for hours records every level it missed, in order)."""
    return _sweep(factory, cfg, now, "next_escalation_at", escalate_one)


def sweep_reminders(factory: sessionmaker[Session], cfg: NotifyConfig, now: datetime) -> list[Step]:
    """Record one 'reminder_due' per incident whose ``next_reminder_at`` is due (no catch-up burst)."""
    return _sweep(factory, cfg, now, "next_reminder_at", remind_one)
