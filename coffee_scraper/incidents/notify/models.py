"""Tables of notification delivery: ``notification_outbox`` (one row per message to one target on one channel),
``notification_attempts`` (one row per delivery try, for failure shares and the delivery-health signal) and
``notification_circuits`` (the circuit breaker of each channel).

Only table definitions live here; enqueueing, claiming and delivering are in ``notify/outbox.py``, the breaker's
rules in ``notify/circuit.py``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from coffee_scraper.catalog.models import Base

CHANNELS = ("slack", "github", "email", "webhook")
OUTBOX_STATUSES = ("pending", "sending", "sent", "failed", "dead")
# rows in these states are still to be delivered: they hold back later messages of the same incident/channel/target
UNDELIVERED = ("pending", "sending", "failed")
CIRCUIT_STATES = ("closed", "half_open", "open")


class NotificationOutbox(Base):
    """One message for one target. ``status``: pending → sending → sent | failed (retry at next_attempt_at) | dead.

    Written in the same transaction as the timeline event that caused it, so nothing is lost on a crash.
    While ``sending``, ``next_attempt_at`` is the claim's lease: past it, another worker may take the row over.
    """

    __tablename__ = "notification_outbox"
    __table_args__ = (
        Index("ix_notification_outbox_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_notification_outbox_incident_id_channel_target", "incident_id", "channel", "target", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[str | None] = mapped_column(ForeignKey("incidents.id"), default=None)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("incident_events.id"), default=None)
    channel: Mapped[str] = mapped_column(String(20))
    target: Mapped[str] = mapped_column(String(500))
    kind: Mapped[str] = mapped_column(String(30))  # the event kind that caused it, e.g. opened, reminder_due
    payload: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    external_ref: Mapped[str | None] = mapped_column(String(500), default=None)  # issue URL, Message-ID, ...

    def __repr__(self) -> str:
        return f"<NotificationOutbox {self.id} {self.channel}:{self.target} {self.kind} {self.status}>"


class NotificationAttempt(Base):
    """One delivery try of an outbox row (kept for the failure share over the last 30 minutes)."""

    __tablename__ = "notification_attempts"
    __table_args__ = (Index("ix_notification_attempts_channel_at", "channel", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    outbox_id: Mapped[int] = mapped_column(ForeignKey("notification_outbox.id"), index=True)
    channel: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime]
    ok: Mapped[bool] = mapped_column(Boolean)
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    duration_ms: Mapped[float] = mapped_column(Float, default=0.0)


class NotificationCircuit(Base):
    """The circuit breaker of one channel. ``closed``: messages go out; ``open``: they wait (never dropped) until
    ``probe_at``; ``half_open``: one probe message is out (``probe_at`` is its lease). No row = closed.

    ``changed_by`` is set while a person's override (``remediate open-circuit|close-circuit --channel``) is the
    last change, None when the breaker itself moved.
    """

    __tablename__ = "notification_circuits"

    channel: Mapped[str] = mapped_column(String(20), primary_key=True)
    state: Mapped[str] = mapped_column(String(10), default="closed")
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    opened_at: Mapped[datetime | None] = mapped_column(default=None)
    probe_at: Mapped[datetime | None] = mapped_column(default=None)
    last_failure_at: Mapped[datetime | None] = mapped_column(default=None)
    last_success_at: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    changed_by: Mapped[str | None] = mapped_column(String(200), default=None)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    updated_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"<NotificationCircuit {self.channel} {self.state} failures={self.consecutive_failures}>"
