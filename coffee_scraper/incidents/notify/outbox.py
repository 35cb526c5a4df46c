"""The durable outbox: enqueue in the event's transaction, then claim → send → record, like Alertmanager's
notification pipeline (dedup by row, retry with backoff, record every attempt).

Lives here: ``enqueue`` (called by ``reactions.react``), ``Outbox`` (claims due rows — ``FOR UPDATE SKIP LOCKED``
on PostgreSQL plus a compare-and-set on status/attempts everywhere — sends them per channel in parallel, retries
with exponential backoff and jitter or the peer's Retry-After, dead-letters after too many attempts, too much age
or a permanent error), per-target ordering (a row waits while an earlier row of the same incident, channel and
target is undelivered: down then up → every message arrives once, in order), the timeline entries
``notification_sent``/``notification_failed``, the metrics, and ``delivery_health`` (the failure share that
raises the P2 "Monitoring Issues" signal), and the per-channel circuit breaker check before sending
(``notify/circuit.py``: an open channel's due messages wait, one half-open probe goes after the reset time; a
probe that fails is retried at the next probe, never dead-lettered unless the error is permanent).
Does not live here: what to send (``reactions.py``), how each channel talks (``slack.py``, ``github.py``,
``email.py``, ``webhook.py``), the breaker's rules (``notify/circuit.py``).
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from coffee_scraper.catalog.db import session_scope
from coffee_scraper.incidents import events
from coffee_scraper.incidents.models import Incident
from coffee_scraper.incidents.notify import circuit
from coffee_scraper.incidents.notify.base import Delivered, DeliveryError, Outgoing, Sender
from coffee_scraper.incidents.notify.config import NotifyConfig
from coffee_scraper.incidents.notify.models import CHANNELS, UNDELIVERED, NotificationAttempt, NotificationOutbox
from coffee_scraper.observability import metrics as m
from coffee_scraper.observability.logging import get_logger

log = get_logger("notify")
MAX_DRAIN_ROUNDS = 50
HEALTH_RULE_ID = "AlertNotificationFailures"  # alert_config: the P2 "Monitoring Issues" rule on failed notifications

# Set after a transaction that enqueued messages commits: the in-process runner wakes and delivers at once.
WAKE = threading.Event()
_WAKE_FLAG = "coffee_scraper.notify.wake_registered"


def _wake_after_commit(session: Session) -> None:
    if session.info.get(_WAKE_FLAG):
        return
    session.info[_WAKE_FLAG] = True
    from sqlalchemy import event as sa_event

    def _after_commit(sess: Session) -> None:
        sess.info.pop(_WAKE_FLAG, None)
        WAKE.set()

    def _after_rollback(sess: Session, _previous: Any) -> None:
        sess.info.pop(_WAKE_FLAG, None)

    sa_event.listen(session, "after_commit", _after_commit, once=True)
    sa_event.listen(session, "after_soft_rollback", _after_rollback, once=True)


def enqueue(
    session: Session,
    *,
    incident_id: str | None,
    event_id: int | None,
    channel: str,
    target: str,
    kind: str,
    payload: dict[str, Any],
    now: datetime,
    not_before: datetime | None = None,
) -> NotificationOutbox:
    """Add one message to the outbox in the caller's transaction (it is sent after commit)."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}; one of {', '.join(CHANNELS)}")
    row = NotificationOutbox(
        incident_id=incident_id,
        event_id=event_id,
        channel=channel,
        target=target,
        kind=kind,
        payload=payload,
        status="pending",
        attempts=0,
        next_attempt_at=max(now, not_before) if not_before else now,
        created_at=now,
    )
    session.add(row)
    _wake_after_commit(session)
    return row


def release_held(session: Session, incident_id: str, now: datetime) -> int:
    """Send messages held for business hours now (the incident became urgent)."""
    result = session.execute(
        update(NotificationOutbox)
        .where(
            NotificationOutbox.incident_id == incident_id,
            NotificationOutbox.status == "pending",
            NotificationOutbox.attempts == 0,
            NotificationOutbox.next_attempt_at > now,
        )
        .values(next_attempt_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


# --- delivery ------------------------------------------------------------------------------------------------


@dataclass
class DeliveryStats:
    claimed: int = 0
    sent: int = 0
    failed: int = 0
    dead: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, other: DeliveryStats) -> None:
        self.claimed += other.claimed
        self.sent += other.sent
        self.failed += other.failed
        self.dead += other.dead
        self.errors += other.errors


def build_senders(cfg: NotifyConfig) -> dict[str, Sender]:
    """One sender per configured channel."""
    from coffee_scraper.incidents.notify.email import EmailSender
    from coffee_scraper.incidents.notify.github import GitHubSender
    from coffee_scraper.incidents.notify.slack import SlackSender
    from coffee_scraper.incidents.notify.webhook import WebhookSender

    s = cfg.settings
    on = cfg.channels()
    senders: dict[str, Sender] = {}
    ua = s.user_agent
    if on["slack"] and s.slack_webhook_url is not None:
        senders["slack"] = SlackSender(
            s.slack_webhook_url.get_secret_value(), timeout_s=s.notify_http_timeout_s, user_agent=ua
        )
    if on["github"] and s.github_token is not None:
        senders["github"] = GitHubSender(
            s.github_api_url, s.github_token.get_secret_value(), timeout_s=s.notify_http_timeout_s, user_agent=ua
        )
    if on["email"] and s.smtp_host:
        senders["email"] = EmailSender(
            s.smtp_host,
            s.smtp_port,
            sender=s.smtp_from,
            user=s.smtp_user,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            starttls=s.smtp_starttls,
            use_ssl=s.smtp_ssl,
            timeout_s=s.smtp_timeout_s,
        )
    if on["webhook"] and s.webhook_url:
        secret = s.webhook_secret.get_secret_value() if s.webhook_secret else None
        senders["webhook"] = WebhookSender(
            s.webhook_url,
            template=s.webhook_template,
            secret=secret,
            content_type=s.webhook_content_type,
            timeout_s=s.notify_http_timeout_s,
            user_agent=ua,
        )
    return senders


def backoff_s(attempts: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with jitter: base·2^(attempts-1) capped, then a random share of it in [50%, 100%]."""
    delay = min(cap, base * (2 ** max(0, attempts - 1)))
    return delay / 2 + rng.uniform(0, delay / 2)


def _describe(row: Outgoing) -> str:
    message = row.payload.get("message")
    template = row.payload.get("template") or (message.get("template") if isinstance(message, dict) else None)
    template = template or row.kind
    action = row.payload.get("action")
    return f"{row.channel}: {template}{f' ({action})' if action else ''} to {row.target}"


class Outbox:
    """Delivers due outbox rows. Several processes may run one each on the same database."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        config: Callable[[], NotifyConfig],
        *,
        now: Callable[[], datetime],
        senders: dict[str, Sender] | None = None,
        rng: random.Random | None = None,
        lock: Callable[[], AbstractContextManager[Any]] | None = None,
    ) -> None:
        self.factory = factory
        self._lock = lock or nullcontext
        self.config = config
        self.now = now
        self._senders = senders
        self._senders_for: int | None = None
        self.rng = rng or random.Random()
        self._pool = ThreadPoolExecutor(max_workers=len(CHANNELS), thread_name_prefix="notify")
        self._probes: set[int] = set()  # outbox ids claimed as a half-open circuit's probe
        self._probes_lock = threading.Lock()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for sender in (self._senders or {}).values():
            sender.close()

    def senders(self) -> dict[str, Sender]:
        cfg = self.config()
        if self._senders is None or (self._senders_for is not None and self._senders_for != id(cfg.settings)):
            for sender in (self._senders or {}).values():
                sender.close()
            self._senders = build_senders(cfg)
            self._senders_for = id(cfg.settings)
        return self._senders

    def lease(self) -> timedelta:
        s = self.config().settings
        return timedelta(seconds=3 * max(s.notify_http_timeout_s, s.smtp_timeout_s) + 30)

    # --- claim ---------------------------------------------------------------------------------------
    def circuit_policy(self) -> circuit.CircuitPolicy:
        return circuit.CircuitPolicy.from_settings(self.config().settings)

    def claim(self, limit: int) -> list[Outgoing]:
        """Take up to ``limit`` due rows, each the oldest undelivered of its incident/channel/target; a channel
        whose circuit is open gives none (its rows wait), a half-open one a single probe."""
        now = self.now()
        o = NotificationOutbox
        earlier = aliased(NotificationOutbox)
        blocked = (
            exists()
            .where(
                earlier.incident_id == o.incident_id,
                earlier.channel == o.channel,
                earlier.target == o.target,
                earlier.id < o.id,
                earlier.status.in_(UNDELIVERED),
            )
            .correlate(o)
        )
        claimed: list[Outgoing] = []
        with self._lock(), session_scope(self.factory) as session:
            gates = circuit.gates(session, now)
            waiting = sorted(ch for ch, gate in gates.items() if gate == "wait")
            stmt = (
                select(o.id, o.status, o.attempts, o.channel)
                .where(o.status.in_(UNDELIVERED), o.next_attempt_at <= now, ~blocked)
                .order_by(o.id)
                .limit(limit)
            )
            if waiting:
                stmt = stmt.where(o.channel.not_in(waiting))
            if session.get_bind().dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True, of=o)
            rows = session.execute(stmt).all()
            lease_until = now + self.lease()
            probes: dict[str, int] = {}
            for row_id, status, attempts, channel in rows:
                if gates.get(channel) == "probe":
                    if channel in probes or not circuit.take_probe(session, channel, now, lease_until):
                        continue  # one probe per channel (another worker may have taken it)
                    probes[channel] = row_id
                result = session.execute(
                    update(o)
                    .where(o.id == row_id, o.status == status, o.attempts == attempts)
                    .values(status="sending", attempts=attempts + 1, next_attempt_at=lease_until)
                    .execution_options(synchronize_session=False)
                )
                if getattr(result, "rowcount", 0) == 1:
                    if probes.get(channel) == row_id:
                        with self._probes_lock:
                            self._probes.add(row_id)
                    full = session.get(o, row_id)
                    assert full is not None
                    claimed.append(
                        Outgoing(
                            full.id,
                            full.incident_id,
                            full.channel,
                            full.target,
                            full.kind,
                            dict(full.payload),
                            attempts + 1,
                            full.created_at,
                        )
                    )
        return claimed

    def lookup_ref(self, incident_id: str, channel: str) -> str | None:
        with session_scope(self.factory) as session:
            ref: str | None = session.scalar(
                select(NotificationOutbox.external_ref)
                .where(
                    NotificationOutbox.incident_id == incident_id,
                    NotificationOutbox.channel == channel,
                    NotificationOutbox.status == "sent",
                    NotificationOutbox.external_ref.is_not(None),
                )
                .order_by(NotificationOutbox.id)
                .limit(1)
            )
            return ref

    # --- send ------------------------------------------------------------------------------------------
    def _send_channel(
        self, channel: str, rows: list[Outgoing]
    ) -> list[tuple[Outgoing, Delivered | DeliveryError, float]]:
        sender = self.senders().get(channel)
        results: list[tuple[Outgoing, Delivered | DeliveryError, float]] = []
        for row in rows:
            started = time.perf_counter()
            outcome: Delivered | DeliveryError
            if sender is None:
                outcome = DeliveryError(f"channel {channel} is not configured in this process (message kept)")
            else:
                try:
                    outcome = sender.send(row, self.lookup_ref)
                except DeliveryError as exc:
                    outcome = exc
                except Exception as exc:  # a bug in a sender must not stop the others
                    log.exception("notification_sender_crashed", channel=channel, outbox_id=row.id)
                    outcome = DeliveryError(f"{channel}: internal error {type(exc).__name__}: {exc}")
            results.append((row, outcome, (time.perf_counter() - started) * 1000))
        return results

    def deliver_once(self) -> DeliveryStats:
        """One pass: claim a batch, send it (channels in parallel, rows of a channel in order), record results."""
        stats = DeliveryStats()
        rows = self.claim(self.config().settings.outbox_batch_size)
        stats.claimed = len(rows)
        if not rows:
            return stats
        by_channel: dict[str, list[Outgoing]] = defaultdict(list)
        for row in rows:
            by_channel[row.channel].append(row)
        futures = [self._pool.submit(self._send_channel, ch, batch) for ch, batch in by_channel.items()]
        for future in futures:
            for row, outcome, ms in future.result():
                if isinstance(outcome, Delivered):
                    if self._mark_sent(row, outcome, ms):
                        stats.sent += 1
                else:
                    state = self._mark_failed(row, outcome, ms)
                    stats.errors.append(f"{row.channel}#{row.id}: {outcome}")
                    if state == "dead":
                        stats.dead += 1
                    elif state == "failed":
                        stats.failed += 1
        return stats

    def drain(self, max_rounds: int = MAX_DRAIN_ROUNDS) -> DeliveryStats:
        """Deliver until nothing is due (a later message of a target becomes due once the earlier one is sent)."""
        total = DeliveryStats()
        for _ in range(max_rounds):
            stats = self.deliver_once()
            total.add(stats)
            if stats.claimed == 0 or stats.sent == 0:
                break
        return total

    # --- record ----------------------------------------------------------------------------------------
    def _attempt(
        self,
        session: Session,
        row: Outgoing,
        *,
        ok: bool,
        now: datetime,
        ms: float,
        code: int | None = None,
        error: str | None = None,
    ) -> None:
        session.add(
            NotificationAttempt(
                outbox_id=row.id,
                channel=row.channel,
                at=now,
                ok=ok,
                status_code=code,
                error=error,
                duration_ms=round(ms, 2),
            )
        )
        m.NOTIFICATIONS.labels(channel=row.channel, result="ok" if ok else "error").inc()

    def _mark_sent(self, row: Outgoing, result: Delivered, ms: float) -> bool:
        now = self.now()
        o = NotificationOutbox
        with self._lock(), session_scope(self.factory) as session:
            done = session.execute(
                update(o)
                .where(o.id == row.id, o.status == "sending", o.attempts == row.attempts)
                .values(status="sent", sent_at=now, external_ref=result.external_ref, last_error=None)
                .execution_options(synchronize_session=False)
            )
            self._attempt(session, row, ok=True, now=now, ms=ms, code=result.status_code)
            with self._probes_lock:
                self._probes.discard(row.id)
            circuit.record_success(session, row.channel, now)
            if getattr(done, "rowcount", 0) != 1:
                log.warning("notification_claim_lost", outbox_id=row.id, channel=row.channel)
                return False
            incident = session.get(Incident, row.incident_id) if row.incident_id else None
            if incident is not None:
                data = {
                    "outbox_id": row.id,
                    "channel": row.channel,
                    "target": row.target,
                    "kind": row.kind,
                    "attempts": row.attempts,
                    "external_ref": result.external_ref,
                }
                events.record(
                    session,
                    incident,
                    "notification_sent",
                    now=now,
                    actor="system",
                    message=f"{_describe(row)} sent",
                    data=data,
                )
        log.info(
            "notification_sent", outbox_id=row.id, channel=row.channel, incident=row.incident_id, attempts=row.attempts
        )
        return True

    def _mark_failed(self, row: Outgoing, err: DeliveryError, ms: float) -> str | None:
        now = self.now()
        s = self.config().settings
        o = NotificationOutbox
        age = (now - row.created_at).total_seconds()
        with self._probes_lock:
            probe = row.id in self._probes
            self._probes.discard(row.id)
        with self._lock(), session_scope(self.factory) as session:
            opened = circuit.record_failure(session, row.channel, now, str(err), self.circuit_policy(), probe=probe)
            # a message whose failure leaves its channel's circuit open (it tripped it, or it was the probe) waits
            # for the next probe: an outage never eats a message, only a permanent error does
            held = probe or opened == "open"
            dead = err.permanent or (not held and (row.attempts >= s.outbox_max_attempts or age >= s.outbox_max_age_s))
            if dead:
                status, next_at = "dead", now
            else:
                wait = (
                    err.retry_after
                    if err.retry_after is not None
                    else backoff_s(row.attempts, s.outbox_backoff_base_s, s.outbox_backoff_cap_s, self.rng)
                )
                status, next_at = "failed", now + timedelta(seconds=wait)
            done = session.execute(
                update(o)
                .where(o.id == row.id, o.status == "sending", o.attempts == row.attempts)
                .values(status=status, next_attempt_at=next_at, last_error=str(err))
                .execution_options(synchronize_session=False)
            )
            self._attempt(session, row, ok=False, now=now, ms=ms, code=err.status_code, error=str(err))
            if getattr(done, "rowcount", 0) != 1:
                log.warning("notification_claim_lost", outbox_id=row.id, channel=row.channel)
                return None
            incident = session.get(Incident, row.incident_id) if row.incident_id else None
            if incident is not None and (dead or row.attempts == 1):
                why = (
                    "permanent error"
                    if err.permanent
                    else f"gave up after {row.attempts} attempts"
                    if row.attempts >= s.outbox_max_attempts
                    else "too old"
                    if dead
                    else f"retrying at {next_at:%H:%M:%S} UTC"
                )
                data = {
                    "outbox_id": row.id,
                    "channel": row.channel,
                    "target": row.target,
                    "kind": row.kind,
                    "attempts": row.attempts,
                    "error": str(err),
                    "final": dead,
                    "next_attempt_at": None if dead else next_at.isoformat(),
                }
                events.record(
                    session,
                    incident,
                    "notification_failed",
                    now=now,
                    actor="system",
                    message=f"{_describe(row)} failed ({why}): {err}",
                    data=data,
                )
        if dead:
            m.NOTIFICATIONS_DEAD.labels(channel=row.channel).inc()
            log.error(
                "notification_dead",
                outbox_id=row.id,
                channel=row.channel,
                incident=row.incident_id,
                attempts=row.attempts,
                error=str(err),
            )
        else:
            log.warning(
                "notification_failed",
                outbox_id=row.id,
                channel=row.channel,
                incident=row.incident_id,
                attempts=row.attempts,
                error=str(err),
                retry_at=next_at.isoformat(),
            )
        return status


# --- gauges and health -----------------------------------------------------------------------------------------


def update_gauges(session: Session, now: datetime) -> dict[str, tuple[int, float]]:
    """Set the outbox pending/oldest-age and circuit-state gauges per channel; returns {channel: (pending,
    oldest_age_s)}."""
    o = NotificationOutbox
    rows = session.execute(
        select(o.channel, func.count(), func.min(o.created_at)).where(o.status.in_(UNDELIVERED)).group_by(o.channel)
    ).all()
    found = {ch: (int(n), oldest) for ch, n, oldest in rows}
    out: dict[str, tuple[int, float]] = {}
    for ch in CHANNELS:
        n, oldest = found.get(ch, (0, None))
        age = max(0.0, (now - oldest).total_seconds()) if oldest else 0.0
        m.OUTBOX_PENDING.labels(channel=ch).set(n)
        m.OUTBOX_OLDEST_AGE.labels(channel=ch).set(age)
        out[ch] = (n, age)
    circuit.states(session, now)  # coffee_scraper_notification_circuit_state{channel}, from the database
    return out


_DURATION = re.compile(r"^(\d+)([smhd])$")


def parse_duration(text: str) -> timedelta:
    """'30m' → 30 minutes (the Prometheus-style durations of alert_config)."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"not a duration like 30m: {text!r}")
    n, unit = int(match.group(1)), match.group(2)
    return timedelta(seconds=n * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit])


@dataclass
class DeliveryHealth:
    attempts: int
    failed: int
    share: float | None
    threshold: float
    failing_channels: dict[str, datetime]  # channel -> failing without a success since
    firing: bool
    reason: str


def delivery_health(session: Session, now: datetime, cfg: NotifyConfig) -> DeliveryHealth:
    """Is notification delivery impaired? The same rule as the exported Prometheus alert (alert_config
    ``AlertNotificationFailures``): failed share of attempts over its window above the threshold for its
    ``for`` duration — or a channel that has only failed for that long."""
    rule = cfg.alert_config.rule(HEALTH_RULE_ID)
    window, hold = parse_duration(rule.window), parse_duration(rule.for_)
    threshold = float(rule.threshold or 0)
    a = NotificationAttempt
    since = now - window
    total, failed, first_fail = session.execute(
        select(func.count(), func.count().filter(a.ok.is_(False)), func.min(a.at).filter(a.ok.is_(False))).where(
            a.at >= since, a.at <= now
        )
    ).one()
    share = (failed / total) if total else None
    reasons = []
    firing = False
    if share is not None and share > threshold and first_fail is not None and first_fail <= now - hold:
        firing = True
        reasons.append(
            f"{failed} of {total} notification attempts failed in the last {rule.window} "
            f"({share:.0%} > {threshold:.0%})"
        )
    failing: dict[str, datetime] = {}
    last_ok: dict[str, datetime] = {
        ch: at
        for ch, at in session.execute(select(a.channel, func.max(a.at)).where(a.ok.is_(True)).group_by(a.channel))
    }
    for channel, fail_since in session.execute(
        select(a.channel, func.min(a.at)).where(a.ok.is_(False), a.at >= since).group_by(a.channel)
    ).all():
        ok_at = last_ok.get(channel)
        if ok_at is not None and ok_at >= fail_since:
            fail_since = session.scalar(
                select(func.min(a.at)).where(a.channel == channel, a.ok.is_(False), a.at > ok_at)
            )
        if fail_since is not None and fail_since <= now - hold:
            failing[channel] = fail_since
    if failing:
        firing = True
        reasons += [f"{ch}: every attempt failed since {at:%Y-%m-%d %H:%M} UTC" for ch, at in sorted(failing.items())]
    return DeliveryHealth(
        int(total), int(failed), share, threshold, failing, firing, "; ".join(reasons) or "notifications are delivered"
    )
