"""Reactions to incident lifecycle events: what follows from a timeline entry.

Lives here: ``react(session, incident, event, now=...)``, called by ``incidents.events.record`` in the same
transaction as the timeline row. It (1) sets or clears the durable deadlines on the incident
(``escalation_level``, ``next_escalation_at``, ``next_reminder_at``) and (2) enqueues outbox messages per channel:

* 'opened' → 🚨 INCIDENT; 'status_update', 'acknowledged', 'severity_changed', 'escalated', 'reopened' →
  📊 Status Update; 'resolved' → ✅ RESOLVED; 'reminder_due' → ⏰ reminder to the owner (or on-call).
  An implicit acknowledgement (``data.implicit``: part of a status update) sends no message of its own: the
  status update right after it says "Acknowledged by …". A status update also carries, below the runbook's
  fields, the newest diagnostics summary not reported before (``followup.status_update_note``).
* Slack: every such message to the configured channel, mentioning the people notified.
* GitHub: issue on 'opened' (labels incident + severity), a comment per update, comment + close on 'resolved',
  reopen + comment on 'reopened', comment + severity label swap (``relabel``) on 'severity_changed' (no reminders).
* E-mail: to the people the policy names (opening: the severity's roles; escalation: the new level's roles;
  reminders: the owner), later updates to everyone e-mailed before plus the owner, plus ``smtp_to``.
* Webhook: every lifecycle event (not the ``notification_*`` entries, which would loop).
P3 ("Regular business hours"): Slack and e-mail are held until the next business hour of each target's time zone.
Does not live here: message text (``templates.py``), delivery (``notify/outbox.py``), the sweepers
(``escalation.py``). ``notification_*`` events get no reaction (loop guard).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from coffee_scraper.incidents import escalation
from coffee_scraper.incidents.models import SEVERITIES, Incident, IncidentEvent
from coffee_scraper.incidents.notify import config as notify_config
from coffee_scraper.incidents.notify.config import NotifyConfig
from coffee_scraper.incidents.notify.models import NotificationOutbox
from coffee_scraper.incidents.notify.outbox import enqueue, release_held
from coffee_scraper.incidents.oncall import Person, Roster
from coffee_scraper.incidents.templates import (
    Mention,
    Message,
    Snapshot,
    incident_message,
    reminder_message,
    render_email,
    render_github,
    render_slack,
    render_text,
    resolved_message,
    status_update_message,
)

TEMPLATE_FOR: dict[str, str] = {
    "opened": "incident",
    "status_update": "status_update",
    "acknowledged": "status_update",
    "severity_changed": "status_update",
    "escalated": "status_update",
    "reopened": "status_update",
    "resolved": "resolved",
    "reminder_due": "reminder",
}
NO_REACTION = frozenset({"notification_sent", "notification_failed"})


def owner_handle(owner: str | None, roster: Roster) -> str | None:
    """How the owner is shown: the roster person's handle, else the free ``@handle`` as given."""
    if not owner or not owner.strip():
        return None
    person = roster.resolve(owner)
    if person is not None:
        return person.handle
    owner = owner.strip()
    return owner if owner.startswith("@") else f"@{owner}"


def mention(person: Person) -> Mention:
    return Mention(handle=person.handle, slack=person.slack_mention, email=person.email)


def snapshot_of(incident: Incident, roster: Roster) -> Snapshot:
    return Snapshot(
        id=incident.id,
        title=incident.title,
        severity=incident.severity,
        status=incident.status,
        impact=incident.impact,
        owner=owner_handle(incident.owner, roster),
        eta=incident.eta,
        actions_taken=incident.actions_taken,
        next_steps=incident.next_steps,
        root_cause=incident.root_cause,
        resolution=incident.resolution,
        prevention=incident.prevention,
        opened_at=incident.opened_at,
        resolved_at=incident.resolved_at,
        last_update_at=incident.last_status_update_at,
        escalation_level=incident.escalation_level or 1,
        is_drill=bool(incident.is_drill),
    )


# --- deadlines ------------------------------------------------------------------------------------------------


def _deadlines(session: Session, cfg: NotifyConfig, incident: Incident, event: IncidentEvent, now: datetime) -> None:
    kind = event.kind
    pol = escalation.policy(cfg, incident.severity)
    if kind == "opened":
        incident.escalation_level = incident.escalation_level or 1
        incident.next_escalation_at = escalation.next_escalation_at(cfg, incident, now)
        incident.next_reminder_at = escalation.next_reminder_at(cfg, incident, now, after=incident.opened_at)
    elif kind == "status_update":
        incident.next_reminder_at = escalation.next_reminder_at(cfg, incident, now)
    elif kind == "severity_changed":
        incident.next_escalation_at = escalation.next_escalation_at(cfg, incident, now)
        if not pol.status_updates or incident.status == "resolved":
            incident.next_reminder_at = None
        elif incident.next_reminder_at is None:
            incident.next_reminder_at = escalation.next_reminder_at(cfg, incident, now)
        if not pol.business_hours_only:
            release_held(session, incident.id, now)
    elif kind == "resolved":
        escalation.clear_deadlines(incident)
    elif kind == "reopened":
        incident.next_escalation_at = escalation.reopened_escalation_at(cfg, incident, now)
        incident.next_reminder_at = escalation.next_reminder_at(cfg, incident, now)


# --- messages -------------------------------------------------------------------------------------------------


def _message(
    kind: str,
    snap: Snapshot,
    *,
    notes: list[str],
    mentions: list[Mention],
    cfg: NotifyConfig,
    incident: Incident,
    now: datetime,
) -> Message | None:
    template = TEMPLATE_FOR.get(kind)
    extra: dict[str, Any] = {
        "notes": tuple(notes),
        "mentions": tuple(mentions),
        "links": cfg.links.for_incident(snap.id),
    }
    if template == "incident":
        return incident_message(snap, **extra)
    if template == "status_update":
        return status_update_message(snap, **extra)
    if template == "resolved":
        return resolved_message(snap, **extra)
    if template == "reminder":
        return reminder_message(snap, now=now, next_due=incident.next_reminder_at, **extra)
    return None


def _people_and_notes(
    cfg: NotifyConfig, incident: Incident, event: IncidentEvent, now: datetime
) -> tuple[list[Person], list[str], list[Mention]]:
    """(people newly notified by this event, context notes, extra mentions without roster entry)."""
    kind, roster = event.kind, cfg.roster
    notes: list[str] = []
    extra_mentions: list[Mention] = []
    people: list[Person] = []
    if kind == "opened":
        people = escalation.initial_people(cfg, incident.severity, now)
        pol = escalation.policy(cfg, incident.severity)
        notes.append(f"Escalation: {pol.escalation} (response time: {pol.response_text})")
    elif kind == "escalated":
        number = int((event.data or {}).get("level") or incident.escalation_level or 1)
        people = escalation.level_people(cfg, number, now)
        notes.append(event.message or f"Escalated to Level {number}")
    elif kind == "acknowledged":
        by = incident.acknowledged_by or event.actor
        notes.append(f"Acknowledged by {owner_handle(by, roster) or by}" if by else "Acknowledged")
    elif kind == "status_update" and incident.acknowledged_at == event.at and incident.acknowledged_by:
        by = incident.acknowledged_by  # acknowledged by this very update (an implicit ack sends no message)
        notes.append(f"Acknowledged by {owner_handle(by, roster) or by}")
    elif kind == "severity_changed":
        people = escalation.initial_people(cfg, incident.severity, now)
        reason = incident.severity_reason
        notes.append(event.message or f"Severity is now {incident.severity}" + (f": {reason}" if reason else ""))
    elif kind == "reopened":
        people = escalation.initial_people(cfg, incident.severity, now)
        notes.append(event.message or "Reopened")
    elif kind == "reminder_due":
        owner = roster.resolve(incident.owner)
        if owner is not None:
            people = [owner]
        elif incident.owner:
            handle = owner_handle(incident.owner, roster) or incident.owner
            extra_mentions.append(Mention(handle=handle, slack=handle))
        else:
            people = escalation.people_for_roles(roster, ("oncall_primary",), now)
    if incident.is_drill:
        notes.append("🧪 This is a drill.")
    if cfg.roster_error and kind in ("opened", "escalated"):
        notes.append("⚠️ The on-call roster is invalid, nobody was paged: " + cfg.roster_error)
    return people, notes, extra_mentions


def _previous_email_targets(session: Session, incident_id: str) -> list[str]:
    return list(
        session.scalars(
            select(NotificationOutbox.target)
            .where(NotificationOutbox.incident_id == incident_id, NotificationOutbox.channel == "email")
            .group_by(NotificationOutbox.target)
            .order_by(NotificationOutbox.target)
        )
    )


def _email_targets(
    session: Session, cfg: NotifyConfig, incident: Incident, kind: str, people: list[Person]
) -> dict[str, Person | None]:
    """Address → the person (for their time zone), in a stable order, each address once."""
    targets: dict[str, Person | None] = {}
    for p in people:
        if p.email:
            targets.setdefault(p.email, p)
    if kind != "reminder_due":
        owner = cfg.roster.resolve(incident.owner)
        if kind != "opened" and owner is not None and owner.email:
            targets.setdefault(owner.email, owner)
        if kind not in ("opened",):
            for address in _previous_email_targets(session, incident.id):
                targets.setdefault(address, cfg.roster.resolve(address))
        for address in (a.strip() for a in cfg.settings.smtp_to.split(",")):
            if address:
                targets.setdefault(address, None)
    return targets


def _event_context(event: IncidentEvent, snap: Snapshot, msg: Message | None) -> dict[str, Any]:
    return {
        "event": {
            "id": event.id,
            "kind": event.kind,
            "at": event.at.isoformat(),
            "actor": event.actor,
            "message": event.message,
            "data": event.data or {},
        },
        "incident": snap.as_json(),
        "message": msg.as_json() if msg else None,
        "text": render_text(msg) if msg else "",
        "links": [{"label": label, "url": url} for label, url in (msg.links if msg else ())],
    }


def is_implicit_ack(event: IncidentEvent) -> bool:
    """An acknowledgement made by a status update: the 📊 message of that update announces it."""
    return event.kind == "acknowledged" and bool((event.data or {}).get("implicit"))


def _diagnostics_note(session: Session, incident: Incident, event: IncidentEvent) -> str | None:
    from coffee_scraper.incidents.followup import status_update_note  # followup → events → reactions: lazy

    return status_update_note(session, incident, before_event_id=event.id)


def _notify(session: Session, cfg: NotifyConfig, incident: Incident, event: IncidentEvent, now: datetime) -> None:
    on = cfg.channels()
    if not any(on.values()):
        return
    s = cfg.settings
    kind = event.kind
    snap = snapshot_of(incident, cfg.roster)
    people, notes, extra_mentions = _people_and_notes(cfg, incident, event, now)
    if kind == "status_update":
        diagnostics = _diagnostics_note(session, incident, event)
        if diagnostics:
            notes.insert(len(notes) - (1 if incident.is_drill else 0), diagnostics)  # before the drill note
    mentions = [mention(p) for p in people] + extra_mentions
    msg = _message(kind, snap, notes=notes, mentions=mentions, cfg=cfg, incident=incident, now=now)
    if is_implicit_ack(event):
        msg = None  # people hear of it in the status update that follows (the webhook still gets the event)
    hold = escalation.policy(cfg, incident.severity).business_hours_only
    common: dict[str, Any] = {"incident_id": incident.id, "event_id": event.id, "kind": kind, "now": now}

    if msg is not None and on["slack"]:
        not_before = cfg.business_hours.next_open(now, cfg.business_tz) if hold else None
        payload = render_slack(msg, s.slack_channel) | {"template": msg.template}
        enqueue(session, channel="slack", target=s.slack_channel, payload=payload, not_before=not_before, **common)

    if msg is not None and on["github"] and kind != "reminder_due" and s.github_repo:
        title, body = render_github(msg)
        labels = ["incident", incident.severity]
        actions: list[str] = {
            "opened": ["create"],
            "resolved": ["comment", "close"],
            "reopened": ["reopen", "comment"],
            "severity_changed": ["comment", "relabel"],
        }.get(kind, ["comment"])
        for action in actions:
            payload = {"action": action, "template": msg.template, "title": title, "body": body, "labels": labels}
            if action == "relabel":  # the severity label follows the incident: remove P*, add the new one
                payload["severity"] = incident.severity
                payload["severity_labels"] = list(SEVERITIES)
            enqueue(session, channel="github", target=s.github_repo, payload=payload, **common)

    if msg is not None and on["email"]:
        subject, body = render_email(msg)
        for address, person in _email_targets(session, cfg, incident, kind, people).items():
            not_before = cfg.business_hours.next_open(now, cfg.roster.tz_of(person)) if hold else None
            payload = {"template": msg.template, "subject": subject, "body": body}
            enqueue(session, channel="email", target=address, payload=payload, not_before=not_before, **common)

    if on["webhook"] and s.webhook_url:
        payload = _event_context(event, snap, msg)
        enqueue(session, channel="webhook", target=s.webhook_url, payload=payload, **common)


def react(session: Session, incident: Incident, event: IncidentEvent, *, now: datetime) -> None:
    """React to one lifecycle event in the caller's transaction: deadlines first, then outbox messages."""
    if event.kind in NO_REACTION:
        return
    cfg = notify_config.current()
    _deadlines(session, cfg, incident, event, now)
    _notify(session, cfg, incident, event, now)
