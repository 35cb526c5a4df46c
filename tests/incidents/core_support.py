"""Helpers for the incident-core tests: payload builders in the senders' real shapes, a store on a real database.

Payloads follow reference/alert-payloads.md (Alertmanager webhook v4, Prometheus' POST /api/v2/alerts array,
PagerDuty Events API v2). ``Store`` wraps a migrated SQLite or PostgreSQL database with an injected clock.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from coffee_scraper.catalog import db
from coffee_scraper.incidents import flows, receivers, service
from coffee_scraper.incidents.models import Incident, IncidentAlert, IncidentEvent, MaintenanceWindow, Silence
from coffee_scraper.settings import Settings

T = TypeVar("T")
T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
ZERO = "0001-01-01T00:00:00Z"
ROUTING_KEY = "R" * 32
POLICY = flows.Policy(
    group_window=timedelta(hours=1),
    flap_threshold=3,
    flap_window=timedelta(minutes=10),
    auto_resolve=True,
    quiet_period=timedelta(minutes=10),
)


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def am_alert(
    name: str,
    *,
    status: str = "firing",
    starts: datetime = T0,
    ends: datetime | None = None,
    severity: str = "P2",
    summary: str | None = None,
    fingerprint: str | None = None,
    **labels: str,
) -> dict[str, Any]:
    """One item of an Alertmanager webhook's ``alerts``."""
    item: dict[str, Any] = {
        "status": status,
        "labels": {"alertname": name, "severity": severity, **labels},
        "annotations": {"summary": summary or f"{name} summary", "description": f"{name} description"},
        "startsAt": iso(starts),
        "endsAt": iso(ends) if ends else ZERO,
        "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
    }
    if fingerprint:
        item["fingerprint"] = fingerprint
    return item


def am_body(*alerts: dict[str, Any], receiver: str = "coffee-scraper") -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="X"}',
        "truncatedAlerts": 0,
        "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "receiver": receiver,
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
    }


def prom_alert(
    name: str, *, starts: datetime = T0, ends: datetime | None = None, severity: str = "P1", **labels: str
) -> dict[str, Any]:
    """One alert of the array Prometheus posts; ``ends`` in the future = firing, in the past = resolved."""
    alert: dict[str, Any] = {
        "labels": {"alertname": name, "severity": severity, **labels},
        "annotations": {"summary": f"{name} summary"},
        "startsAt": iso(starts),
        "generatorURL": "http://prometheus:9090/graph",
    }
    if ends is not None:
        alert["endsAt"] = iso(ends)
    return alert


def pd_event(
    action: str = "trigger",
    *,
    dedup_key: str | None = None,
    routing_key: str = ROUTING_KEY,
    severity: str = "error",
    summary: str = "Disk on db1 at 96%",
    **payload: Any,
) -> dict[str, Any]:
    """A PagerDuty Events API v2 body."""
    body: dict[str, Any] = {"routing_key": routing_key, "event_action": action}
    if dedup_key is not None:
        body["dedup_key"] = dedup_key
    if action == "trigger":
        body["payload"] = {"summary": summary, "source": "db1.example", "severity": severity, **payload}
    return body


class Store:
    """A migrated database plus the ingestion entry points with an explicit clock."""

    def __init__(self, url: str, policy: flows.Policy = POLICY) -> None:
        db.upgrade(url)
        self.url = url
        self.engine = db.make_engine(url)
        self.factory = db.session_factory(self.engine)
        self.policy = policy

    def close(self) -> None:
        self.engine.dispose()

    def tx(self, fn: Callable[[Session], T]) -> T:
        with flows.write_lock(self.engine), db.session_scope(self.factory) as session:
            return fn(session)

    def ingest(self, events: list[receivers.AlertEvent], at: datetime) -> flows.IngestResult:
        return self.tx(lambda session: flows.ingest(session, events, now=at, settings=self.policy))

    def am(self, body: dict[str, Any], at: datetime) -> flows.IngestResult:
        parsed = receivers.parse_alertmanager(body, received_at=at, limits=self.policy.limits)
        assert parsed.ok, parsed.problems
        return self.ingest(parsed.events, at)

    def prom(self, alerts: list[dict[str, Any]], at: datetime) -> flows.IngestResult:
        parsed = receivers.parse_prometheus(alerts, received_at=at, limits=self.policy.limits)
        assert parsed.ok, parsed.problems
        return self.ingest(parsed.events, at)

    def pd(self, body: dict[str, Any], at: datetime) -> tuple[flows.IngestResult, str | None]:
        parsed = receivers.parse_pagerduty(body, received_at=at, limits=self.policy.limits)
        assert parsed.ok, parsed.problems
        return self.ingest(parsed.events, at), parsed.events[0].reply_key

    def sweep(self, at: datetime) -> flows.SweepResult:
        return self.tx(lambda session: flows.sweep(session, now=at, settings=self.policy))

    def detail(self, incident_id: str) -> dict[str, Any]:
        with self.factory() as session:
            return service.incident_detail(session, incident_id)

    def incidents(self) -> list[Incident]:
        with self.factory() as session:
            return list(session.scalars(select(Incident).order_by(Incident.opened_at, Incident.id)))

    def alerts(self) -> list[IncidentAlert]:
        with self.factory() as session:
            return list(session.scalars(select(IncidentAlert).order_by(IncidentAlert.id)))

    def kinds(self, incident_id: str) -> list[str]:
        return [e["kind"] for e in self.detail(incident_id)["timeline"]]

    def latest_events(self, n: int) -> list[tuple[str, str | None, str]]:
        with self.factory() as session:
            rows = session.scalars(select(IncidentEvent).order_by(IncidentEvent.id.desc()).limit(n))
            return [(e.kind, e.actor, e.message[:80]) for e in rows]

    def counts(self) -> dict[str, int]:
        """Rows per table: compared before/after a refused request (no partial writes)."""
        with self.factory() as session:
            return {
                model.__tablename__: int(session.scalar(select(func.count()).select_from(model)) or 0)
                for model in (Incident, IncidentAlert, IncidentEvent, Silence, MaintenanceWindow)
            }


def api_settings(url: str, tmp: Any, **extra: Any) -> Settings:
    """Settings for serving the real app in tests: a token, no background loops, logs in ``tmp``."""
    values: dict[str, Any] = dict(
        database_url=url,
        log_dir=tmp / "logs",
        api_token="test-token-0123456789",
        incident_sweep_interval_s=0,
        incident_runner_enabled=False,
        watchdog_enabled=False,
        scheduler_mode="off",
        recovery_interval_s=0,  # no diagnostics/checklists loop writing to timelines behind the test's back
        diagnostics_on_open=False,
    )
    values.update(extra)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]
