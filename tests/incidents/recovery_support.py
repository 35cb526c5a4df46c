"""Helpers for the recovery tests (diagnostics, remediation, follow-up, drills): settings, a clock, an incident
store on a real database with the incident flows, and small local peers on 127.0.0.1.

Plain functions and classes; fixtures live in the test modules.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

from coffee_scraper.catalog import db
from coffee_scraper.incidents import flows, receivers
from coffee_scraper.incidents.models import Incident, IncidentEvent
from coffee_scraper.settings import Settings
from tests.support import free_port

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
TOKEN = "recovery-test-token-0123456789"


class Clock:
    def __init__(self, start: datetime = T0) -> None:
        self.t = start

    def __call__(self) -> datetime:
        return self.t

    def advance(self, **delta: float) -> datetime:
        self.t += timedelta(**delta)
        return self.t


def recovery_settings(url: str, tmp: Path, **extra: Any) -> Settings:
    """Settings for these tests: files under ``tmp``, no background loops, a service URL nobody listens on."""
    (tmp / "tmp").mkdir(exist_ok=True)
    values: dict[str, Any] = dict(
        database_url=url,
        log_dir=tmp / "logs",
        temp_dir=tmp / "tmp",
        oncall_file=tmp / "oncall.toml",
        diagnostics_timeout_s=4.0,
        diagnostics_service_url=f"http://127.0.0.1:{free_port()}",
        allow_private_addresses=True,
        api_token=TOKEN,
        incident_sweep_interval_s=0,
        incident_runner_enabled=False,
        watchdog_enabled=False,
        recovery_interval_s=0,
        scheduler_mode="off",
        service_manager="none",
    )
    values.update(extra)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


class IncidentStore:
    """A migrated database with the incident flows at an explicit time."""

    def __init__(self, url: str) -> None:
        db.upgrade(url)
        self.url = url
        self.engine = db.make_engine(url)
        self.factory = db.session_factory(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def tx(self, fn: Any) -> Any:
        with flows.write_lock(self.engine), db.session_scope(self.factory) as session:
            return fn(session)

    def alert(self, name: str, *, severity: str, at: datetime, status: str = "firing", **labels: str) -> str | None:
        """Ingest one Alertmanager alert (the real parser); returns the incident it opened or joined."""
        iso = at.isoformat().replace("+00:00", "Z")
        item = {
            "status": status,
            "labels": {"alertname": name, "severity": severity, **labels},
            "annotations": {"summary": f"{name} summary", "description": f"{name}: measured condition"},
            "startsAt": iso,
            "endsAt": iso if status == "resolved" else "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph",
        }
        body = {
            "version": "4",
            "groupKey": "{}",
            "status": status,
            "receiver": "coffee-scraper",
            "groupLabels": {},
            "commonLabels": {},
            "commonAnnotations": {},
            "externalURL": "http://am:9093",
            "truncatedAlerts": 0,
            "alerts": [item],
        }
        parsed = receivers.parse_alertmanager(body, received_at=at)
        assert parsed.ok, parsed.problems
        result = self.tx(lambda s: flows.ingest(s, parsed.events, now=at))
        return next((o.incident_id for o in result.outcomes if o.incident_id), None)

    def declare(self, title: str, *, severity: str, at: datetime, **kw: Any) -> str:
        return str(self.tx(lambda s: flows.declare(s, title=title, severity=severity, actor="alice", now=at, **kw).id))

    def ack(self, incident_id: str, at: datetime, actor: str = "alice") -> None:
        self.tx(lambda s: flows.ack(s, incident_id, actor=actor, now=at))

    def resolve(self, incident_id: str, at: datetime, **kw: str) -> None:
        values = {
            "root_cause": "the database ran out of connections",
            "resolution": "restarted PostgreSQL",
            "prevention": "alert on connection count",
            **kw,
        }
        self.tx(lambda s: flows.resolve(s, incident_id, actor="alice", now=at, **values))

    def get(self, incident_id: str) -> Incident:
        with self.factory() as session:
            incident = session.get(Incident, incident_id)
            assert incident is not None
            return incident

    def events(self, incident_id: str, kind: str | None = None) -> list[IncidentEvent]:
        with self.factory() as session:
            stmt = select(IncidentEvent).where(IncidentEvent.incident_id == incident_id).order_by(IncidentEvent.id)
            if kind:
                stmt = stmt.where(IncidentEvent.kind == kind)
            return list(session.scalars(stmt))

    def session(self) -> Session:
        return self.factory()


# --- local peers ----------------------------------------------------------------------------------------------


def shop_app(status: int = 200) -> Starlette:
    """A shop front page answering ``status`` to GET and HEAD, counting requests."""
    hits: list[str] = []

    async def home(request: Request) -> Response:
        hits.append(request.method)
        return PlainTextResponse("<html>shop</html>", status_code=status)

    app = Starlette(routes=[Route("/", home, methods=["GET", "HEAD"])])
    app.state.hits = hits
    return app


def github_app(peer_app: Any, owner: str = "acme", repo: str = "coffee", token: str = "ghp_test") -> Starlette:
    """``GET /repos/{owner}/{repo}`` (what diagnostics asks) in front of a GitHub issues peer."""

    async def repo_info(request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {token}":
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        return JSONResponse({"full_name": f"{owner}/{repo}", "has_issues": True})

    return Starlette(routes=[Route(f"/repos/{owner}/{repo}", repo_info, methods=["GET"]), Mount("/", app=peer_app)])


@contextmanager
def black_hole() -> Iterator[int]:
    """A TCP port that accepts connections and never answers (a hung server)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    port = int(server.getsockname()[1])
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def loop() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                accepted.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join(timeout=2)
        for conn in accepted:
            conn.close()
        server.close()
