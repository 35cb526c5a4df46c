"""The circuit breaker of each notification channel, stored in ``notification_circuits`` (shared by every process).

Lives here: ``CircuitPolicy`` (``notify_circuit_failure_threshold`` consecutive failed deliveries open a channel's
circuit; ``notify_circuit_reset_s`` later one half-open probe message goes; its success closes the circuit, its
failure opens it again for another reset period), ``gates`` (what the outbox may claim per channel: ``send``,
``probe`` or ``wait``), ``take_probe`` (a compare-and-set, so one probe per channel across processes),
``record_success``/``record_failure`` (called by the outbox with each delivery result), the manual overrides
``force_open``/``force_close`` (``coffee-scraper remediate open-circuit|close-circuit --channel``), ``states``
for ``notify status`` and the dashboard, and the ``coffee_scraper_notification_circuit_state{channel}`` gauge.
While a circuit is open its messages wait in the outbox (never dropped); per-target order is kept.
Does not live here: claiming and delivering (``notify/outbox.py``), the shops' breaker (``storefronts/http.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from coffee_scraper.incidents.notify.models import CHANNELS, NotificationCircuit
from coffee_scraper.observability import metrics as m
from coffee_scraper.observability.logging import get_logger
from coffee_scraper.settings import Settings

Gate = Literal["send", "probe", "wait"]
STATE_VALUES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}  # the gauge's values (as the shops' breaker)
ERROR_LIMIT = 500
log = get_logger("notify")


class CircuitError(ValueError):
    """A manual override cannot be done as asked (unknown channel, bad duration); the message says what to do."""


@dataclass(frozen=True)
class CircuitPolicy:
    failure_threshold: int = 5
    reset: timedelta = timedelta(seconds=120)

    @classmethod
    def from_settings(cls, s: Settings) -> CircuitPolicy:
        return cls(max(1, s.notify_circuit_failure_threshold), timedelta(seconds=s.notify_circuit_reset_s))


def check_channel(channel: str) -> str:
    name = (channel or "").strip().lower()
    if name not in CHANNELS:
        raise CircuitError(f"unknown notification channel {channel!r}; one of {', '.join(CHANNELS)}")
    return name


def publish(channel: str, state: str) -> None:
    m.NOTIFICATION_CIRCUIT_STATE.labels(channel=channel).set(STATE_VALUES.get(state, 0.0))


def _ensure(session: Session, channel: str, now: datetime) -> None:
    """Create the channel's row (closed) unless it exists; safe against a concurrent insert by another process."""
    dialect = session.get_bind().dialect.name
    values = {"channel": channel, "state": "closed", "consecutive_failures": 0, "updated_at": now}
    if dialect == "postgresql":
        session.execute(postgresql.insert(NotificationCircuit).values(**values).on_conflict_do_nothing())
    elif dialect == "sqlite":
        session.execute(sqlite.insert(NotificationCircuit).values(**values).on_conflict_do_nothing())
    elif session.get(NotificationCircuit, channel) is None:
        session.add(NotificationCircuit(**values))
        session.flush()


def _locked(session: Session, channel: str, now: datetime) -> NotificationCircuit:
    """The channel's row, locked for this transaction on PostgreSQL (SQLite writers are serialised anyway)."""
    _ensure(session, channel, now)
    row = session.scalars(
        select(NotificationCircuit)
        .where(NotificationCircuit.channel == channel)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    return row


def gates(session: Session, now: datetime) -> dict[str, Gate]:
    """Per channel with a circuit row: ``send`` (closed), ``probe`` (open past ``probe_at``, or a half-open probe
    whose lease ran out: one message may go) or ``wait``. Channels without a row are closed (``send``)."""
    out: dict[str, Gate] = {}
    for row in session.scalars(select(NotificationCircuit)):
        if row.state == "closed":
            out[row.channel] = "send"
        elif row.probe_at is None or row.probe_at <= now:
            out[row.channel] = "probe"
        else:
            out[row.channel] = "wait"
    return out


def take_probe(session: Session, channel: str, now: datetime, lease_until: datetime) -> bool:
    """Become the one prober of ``channel`` (compare-and-set: open/half-open with ``probe_at`` passed)."""
    c = NotificationCircuit
    result = session.execute(
        update(c)
        .where(
            c.channel == channel,
            c.state.in_(("open", "half_open")),
            or_(c.probe_at.is_(None), c.probe_at <= now),
        )
        .values(state="half_open", probe_at=lease_until, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    taken = getattr(result, "rowcount", 0) == 1
    if taken:
        publish(channel, "half_open")
        log.info("notification_circuit_probe", channel=channel)
    return taken


def record_success(session: Session, channel: str, now: datetime) -> str | None:
    """A delivery on ``channel`` worked: failures reset; a half-open circuit closes, so does one the breaker opened
    (a message sent before it opened came through); one a person holds open stays open. Returns the new state
    when it changed."""
    row = _locked(session, channel, now)
    row.consecutive_failures = 0
    row.last_success_at = now
    row.updated_at = now
    if row.state == "closed" or (row.state == "open" and row.changed_by is not None):
        return None
    row.state = "closed"
    row.opened_at = None
    row.probe_at = None
    row.changed_by = None
    row.reason = None
    publish(channel, "closed")
    log.info("notification_circuit_closed", channel=channel)
    return "closed"


def record_failure(
    session: Session, channel: str, now: datetime, error: str, policy: CircuitPolicy, *, probe: bool
) -> str | None:
    """A delivery on ``channel`` failed: count it; open the circuit at the threshold, or again when the failed
    message was the half-open probe. Returns the new state when it changed."""
    row = _locked(session, channel, now)
    row.consecutive_failures = (row.consecutive_failures or 0) + 1
    row.last_failure_at = now
    row.last_error = error[:ERROR_LIMIT]
    row.updated_at = now
    reopen = probe and row.state == "half_open"
    trip = row.state == "closed" and row.consecutive_failures >= policy.failure_threshold
    if not (reopen or trip):
        return None
    row.state = "open"
    row.opened_at = now
    row.probe_at = now + policy.reset
    row.changed_by = None
    row.reason = (
        f"half-open probe failed: {error}"[:ERROR_LIMIT]
        if reopen
        else f"{row.consecutive_failures} consecutive failed deliveries; last: {error}"[:ERROR_LIMIT]
    )
    publish(channel, "open")
    log.warning(
        "notification_circuit_opened",
        channel=channel,
        failures=row.consecutive_failures,
        probe_at=row.probe_at.isoformat(),
        error=error[:200],
    )
    return "open"


def force_open(
    session: Session, channel: str, *, now: datetime, until: datetime, by: str, reason: str | None = None
) -> NotificationCircuit:
    """Hold ``channel``'s circuit open until ``until`` (messages wait), then the breaker probes as usual."""
    channel = check_channel(channel)
    if until <= now:
        raise CircuitError("the circuit must stay open for a positive time (--minutes)")
    row = _locked(session, channel, now)
    row.state = "open"
    row.opened_at = now
    row.probe_at = until
    row.changed_by = by
    row.reason = reason or f"held open by {by}"
    row.updated_at = now
    publish(channel, "open")
    log.warning("notification_circuit_forced_open", channel=channel, by=by, until=until.isoformat())
    return row


def force_close(session: Session, channel: str, *, now: datetime, by: str, reason: str | None = None) -> str:
    """Close ``channel``'s circuit now (failures forgotten): its waiting messages go on the next delivery pass.
    Returns the state it had."""
    channel = check_channel(channel)
    row = _locked(session, channel, now)
    was = row.state
    row.state = "closed"
    row.consecutive_failures = 0
    row.opened_at = None
    row.probe_at = None
    row.changed_by = by
    row.reason = reason or f"closed by {by}"
    row.updated_at = now
    publish(channel, "closed")
    log.info("notification_circuit_forced_closed", channel=channel, by=by, was=was)
    return was


def state_of(session: Session, channel: str) -> NotificationCircuit | None:
    return session.get(NotificationCircuit, check_channel(channel))


def states(session: Session, now: datetime) -> dict[str, dict[str, Any]]:
    """Every channel's breaker as JSON-ready dicts (``notify status``, the dashboard); sets the gauge."""
    rows = {r.channel: r for r in session.scalars(select(NotificationCircuit))}
    out: dict[str, dict[str, Any]] = {}
    for channel in CHANNELS:
        row = rows.get(channel)
        state = row.state if row is not None else "closed"
        publish(channel, state)
        probe_at = row.probe_at if row is not None and row.state != "closed" else None
        out[channel] = {
            "state": state,
            "consecutive_failures": row.consecutive_failures if row is not None else 0,
            "opened_at": row.opened_at.isoformat() if row is not None and row.opened_at else None,
            "next_probe_at": probe_at.isoformat() if probe_at is not None and state == "open" else None,
            "probe_lease_until": probe_at.isoformat() if probe_at is not None and state == "half_open" else None,
            "next_probe_in_s": (
                max(0.0, round((probe_at - now).total_seconds(), 1))
                if probe_at is not None and state == "open"
                else None
            ),
            "last_failure_at": row.last_failure_at.isoformat() if row is not None and row.last_failure_at else None,
            "last_success_at": row.last_success_at.isoformat() if row is not None and row.last_success_at else None,
            "last_error": row.last_error if row is not None else None,
            "changed_by": row.changed_by if row is not None else None,
            "reason": row.reason if row is not None else None,
        }
    return out
