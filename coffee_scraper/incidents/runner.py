"""The incident loop: every ``incident_runner_interval_s`` seconds (and at once when a transaction in this process
enqueued messages) run the periodic parts of incident response.

One pass (``IncidentRunner.run_once``): ``flows.sweep`` (alert expiry, auto-resolve, response breaches; at most every
``incident_sweep_interval_s``, and not inside ``serve``, whose API router sweeps on its own), the
escalation sweep, the reminder sweep, outbox delivery until nothing is due, the delivery-health check (raises or
clears the P2 "Monitoring Issues" alert through ``flows.ingest``), the outbox gauges and a heartbeat (component
``incidents``: ``jobs.service.beat`` row + HEARTBEAT metric). Each step is isolated: one failing step is logged
and the others still run. State lives in the database only, so any number of runners (serve, workers) may run
against one PostgreSQL database, and a restarted runner continues where the last one stopped.
Started by ``coffee-scraper serve`` (web app lifespan) in a daemon thread; ``start()``/``stop()`` for others.
Does not live here: the steps themselves (``flows``, ``escalation``, ``notify/outbox``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from coffee_scraper.catalog.db import session_scope
from coffee_scraper.catalog.models import utcnow
from coffee_scraper.incidents import escalation, store
from coffee_scraper.incidents.notify import config as notify_config
from coffee_scraper.incidents.notify.base import Sender
from coffee_scraper.incidents.notify.config import NotifyConfig
from coffee_scraper.incidents.notify.outbox import (
    HEALTH_RULE_ID,
    WAKE,
    DeliveryHealth,
    DeliveryStats,
    Outbox,
    delivery_health,
    update_gauges,
)
from coffee_scraper.incidents.oncall import Roster
from coffee_scraper.observability import metrics as m
from coffee_scraper.observability.logging import get_logger
from coffee_scraper.settings import Settings

log = get_logger("incidents")
COMPONENT = "incidents"
HEALTH_CHECK_EVERY_S = 60.0
DELIVERY_CHECK_LABEL = "outbox-delivery"  # tells this alert apart from the watchdog's metric-based one


@contextmanager
def write_lock(factory: sessionmaker[Session]) -> Iterator[None]:
    """The incidents core's per-process SQLite writer lock (no-op on PostgreSQL)."""
    from coffee_scraper.incidents import flows

    with flows.write_lock(factory.kw["bind"]):
        yield


@dataclass
class PassResult:
    at: datetime
    swept: dict[str, Any] = field(default_factory=dict)
    escalations: list[escalation.Step] = field(default_factory=list)
    reminders: list[escalation.Step] = field(default_factory=list)
    delivery: DeliveryStats = field(default_factory=DeliveryStats)
    health: DeliveryHealth | None = None
    errors: dict[str, str] = field(default_factory=dict)


def delivery_alert_labels(cfg: NotifyConfig) -> dict[str, str]:
    rule = cfg.alert_config.rule(HEALTH_RULE_ID)
    return {
        "alertname": rule.id,
        "severity": rule.severity.value,
        "category": rule.category,
        "component": "notifications",
        "check": DELIVERY_CHECK_LABEL,
    }


class IncidentRunner:
    """Runs the periodic parts of incident response; ``run_once`` is one pass, ``start`` loops in a thread."""

    def __init__(
        self,
        settings: Settings,
        factory: sessionmaker[Session] | None = None,
        *,
        now: Callable[[], datetime] = utcnow,
        roster: Roster | None = None,
        senders: dict[str, Sender] | None = None,
        heartbeat: bool = True,
        flows_sweep: bool = True,
    ) -> None:
        self.settings = settings
        self._own_engine = factory is None
        self.factory = factory or store.incident_factory(settings)  # incidents_database_url, else the catalog's
        self.now = now
        self.cfg = notify_config.configure(settings, roster)
        self.outbox = Outbox(self.factory, self.config, now=now, senders=senders, lock=lambda: write_lock(self.factory))
        self.heartbeat = heartbeat
        self._identity: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_health: float | None = None
        self.flows_sweep = flows_sweep  # serve's API router sweeps on its own (incident_sweep_interval_s)
        self._last_flows_sweep: float | None = None
        self.passes = 0

    def config(self) -> NotifyConfig:
        return notify_config.current()

    # --- one pass -------------------------------------------------------------------------------------
    def _step(self, result: PassResult, name: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:
            result.errors[name] = f"{type(exc).__name__}: {exc}"
            log.exception("incident_runner_step_failed", step=name)
            return None

    def _flows_sweep(self, now: datetime) -> dict[str, Any]:
        """The incidents core's sweep, at most every ``incident_sweep_interval_s`` (0: every pass)."""
        from coffee_scraper.incidents import flows

        if not self.flows_sweep:
            return {}
        at = now.timestamp()
        every = self.settings.incident_sweep_interval_s
        if self._last_flows_sweep is not None and every > 0 and at - self._last_flows_sweep < every:
            return {}
        self._last_flows_sweep = at
        with write_lock(self.factory), session_scope(self.factory) as session:
            swept = flows.sweep(session, now=now, settings=self.settings)
        return swept.as_dict()

    def _sweep(self, kind: str, now: datetime) -> list[escalation.Step]:
        fn = escalation.sweep_escalations if kind == "escalations" else escalation.sweep_reminders
        with write_lock(self.factory):
            return fn(self.factory, self.config(), now)

    def _deliver(self) -> DeliveryStats:
        return self.outbox.drain()

    def _health(self, now: datetime, force: bool = False) -> DeliveryHealth | None:
        mono = now.timestamp()
        if not force and self._last_health is not None and mono - self._last_health < HEALTH_CHECK_EVERY_S:
            return None
        self._last_health = mono
        cfg = self.config()
        with session_scope(self.factory) as session:
            health = delivery_health(session, now, cfg)
            update_gauges(session, now)
        self._signal(health, now, cfg)
        return health

    def _signal(self, health: DeliveryHealth, now: datetime, cfg: NotifyConfig) -> None:
        """Raise (or clear) the P2 'Monitoring Issues' alert through the incidents core's ingestion."""
        from coffee_scraper.incidents import flows
        from coffee_scraper.incidents.drills import marked_rules
        from coffee_scraper.incidents.models import IncidentAlert
        from coffee_scraper.incidents.receivers import AlertEvent, labels_hash

        labels = delivery_alert_labels(cfg)
        key = labels_hash(labels)
        if HEALTH_RULE_ID in marked_rules():  # a channel-down drill runs here: its signal is the drill's
            labels = {**labels, flows.DRILL_LABEL: "true"}
        with write_lock(self.factory), session_scope(self.factory) as session:
            status = session.scalar(
                select(IncidentAlert.status).where(IncidentAlert.source == "watchdog", IncidentAlert.fingerprint == key)
            )
            firing_now = status == "firing"
            if health.firing == firing_now:
                return
            rule = cfg.alert_config.rule(HEALTH_RULE_ID)
            title = "Notifications failing: alerting is impaired"
            event = AlertEvent(
                source_kind="watchdog",
                dedup_key=key,
                action="trigger" if health.firing else "resolve",
                severity=rule.severity.value,
                severity_original=rule.severity.value,
                title=title,
                description=f"{health.reason}. {rule.description}",
                labels=labels,
                annotations={"summary": title, "description": health.reason, "runbook_url": rule.runbook_url},
                links=[{"href": rule.runbook_url, "text": "Runbook"}],
                started_at=now,
                ends_at=None if health.firing else now,
                received_at=now,
                source_ref="incident-runner",
                raw={
                    "attempts": health.attempts,
                    "failed": health.failed,
                    "share": health.share,
                    "failing_channels": {k: v.isoformat() for k, v in health.failing_channels.items()},
                },
            )
            flows.ingest(session, [event], now=now, settings=self.settings)
        log.warning("notification_delivery_signal", firing=health.firing, reason=health.reason)

    def _beat(self, now: datetime, result: PassResult) -> None:
        m.HEARTBEAT.labels(component=COMPONENT).set(now.timestamp())
        if not self.heartbeat:
            return
        from coffee_scraper.jobs import service as jobs_service
        from coffee_scraper.jobs.runtime import Identity

        if self._identity is None:
            self._identity = Identity.for_process(COMPONENT)
        info = {"passes": self.passes, "sent": result.delivery.sent, "errors": sorted(result.errors)}
        with session_scope(self.factory) as session:
            jobs_service.beat(session, self._identity, now=now, info=info)

    def run_once(self, *, force_health: bool = False) -> PassResult:
        now = self.now()
        result = PassResult(at=now)
        result.swept = self._step(result, "flows_sweep", lambda: self._flows_sweep(now)) or {}
        result.escalations = self._step(result, "escalations", lambda: self._sweep("escalations", now)) or []
        result.reminders = self._step(result, "reminders", lambda: self._sweep("reminders", now)) or []
        result.delivery = self._step(result, "delivery", self._deliver) or DeliveryStats()
        result.health = self._step(result, "health", lambda: self._health(self.now(), force_health))
        self.passes += 1
        self._step(result, "heartbeat", lambda: self._beat(self.now(), result))
        return result

    # --- loop -------------------------------------------------------------------------------------------
    def run_forever(self) -> None:
        interval = max(0.05, self.settings.incident_runner_interval_s)
        log.info("incident_runner_start", interval_s=interval, channels=self.config().channels())
        while not self._stop.is_set():
            WAKE.clear()
            try:
                self.run_once()
            except Exception:  # never let the loop die
                log.exception("incident_runner_pass_failed")
            WAKE.wait(interval)
        log.info("incident_runner_stop", passes=self.passes)

    def start(self) -> IncidentRunner:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self.run_forever, name="incident-runner", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        WAKE.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self.heartbeat and self._identity is not None:
            try:
                from coffee_scraper.jobs import service as jobs_service

                with session_scope(self.factory) as session:
                    jobs_service.stop_heartbeat(session, self._identity, now=self.now())
            except Exception:
                log.exception("incident_runner_stop_heartbeat_failed")
        self.outbox.close()
        if self._own_engine:
            bind = self.factory.kw.get("bind")
            if bind is not None:
                bind.dispose()


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[IncidentRunner | None]:
    """``async with running(settings):`` runs the incident loop in a daemon thread for the web app's lifetime
    (no-op when ``incident_runner_enabled`` is false)."""
    if not settings.incident_runner_enabled:
        yield None
        return
    runner = IncidentRunner(settings, flows_sweep=False)  # the API router's lifespan sweeps in serve
    runner.start()
    try:
        yield runner
    finally:
        await asyncio.to_thread(runner.stop)
