"""The one door for lifecycle changes: ``record`` appends a timeline entry and lets ``reactions.react`` follow up.

Lives here: ``record(session, incident, kind, *, now, actor, message, data)``. It appends the ``IncidentEvent``
row, bumps ``incident.version`` and then, in the same transaction, calls
``coffee_scraper.incidents.reactions.react(session, incident, event, now=now)`` (owned by the notifications
work: outbox messages, escalation and reminder deadlines). Outbox rows therefore commit or roll back together
with the event. Nested ``record`` calls made by ``react`` (``notification_*``, ``escalated``) are allowed up to
``MAX_DEPTH`` deep; deeper ones are still recorded but not reacted to, which breaks any reaction loop.
Does not live here: deciding *which* change happens (``incidents/flows.py``), sending anything.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session
from structlog.contextvars import bound_contextvars

from coffee_scraper.incidents import reactions
from coffee_scraper.incidents.models import EVENT_KINDS, Incident, IncidentEvent
from coffee_scraper.observability.logging import get_logger

MAX_DEPTH = 3  # record -> react -> record ('escalated') -> react -> record ('notification_sent'): no deeper
_DEPTH_KEY = "coffee_scraper.incidents.record_depth"


def record(
    session: Session,
    incident: Incident,
    kind: str,
    *,
    now: datetime,
    actor: str | None = None,
    message: str = "",
    data: dict[str, Any] | None = None,
) -> IncidentEvent:
    """Append one timeline entry for ``incident``, bump its version and run the reactions (same transaction)."""
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown incident event kind {kind!r}; one of {', '.join(EVENT_KINDS)}")
    if now.tzinfo is None:
        raise ValueError("naive datetime given to record(); use an aware UTC datetime")
    event = IncidentEvent(incident_id=incident.id, at=now, kind=kind, actor=actor, message=message, data=data or {})
    session.add(event)
    incident.version = (incident.version or 0) + 1
    session.flush()  # the event's id exists for the reactions (outbox rows may refer to it)
    depth = int(session.info.get(_DEPTH_KEY, 0))
    if depth >= MAX_DEPTH:
        get_logger("incidents").warning(
            "incident_reaction_depth_exceeded", incident=incident.id, kind=kind, depth=depth
        )
        return event
    session.info[_DEPTH_KEY] = depth + 1
    try:
        # log lines of the reactions (notifications, escalation, diagnostics) carry the incident's id
        with bound_contextvars(incident_id=incident.id):
            if depth == 0:
                get_logger("incidents").info("incident_event", kind=kind, severity=incident.severity, actor=actor)
            reactions.react(session, incident, event, now=now)
    finally:
        session.info[_DEPTH_KEY] = depth
    return event
