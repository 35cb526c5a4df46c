"""The operators' HTTP endpoints: Prometheus metrics, liveness and readiness (``coffee-scraper serve``).

* ``GET /metrics`` — Prometheus text exposition of ``observability.metrics.REGISTRY`` (including the live
  psutil gauges), with prometheus_client's Content-Type; gzip-compressed when the client accepts gzip.
  The text is byte-identical to ``prometheus_client.generate_latest`` but rendered by
  ``observability.exposition`` (cached label strings), several times faster with hundreds of roasters.
* ``GET /health`` — liveness: answers ``{"status": "ok"}`` while the process serves HTTP at all.
* ``GET /health/ready`` — readiness: ``{"status": "ok"|"fail", "failed": [...], "checks": {...}}``; 200 when
  every check passes, else 503. ``database`` runs ``SELECT 1`` (``latency_ms`` or ``error``) with a short
  connect timeout and an overall deadline, so a dead PostgreSQL answers 503 in seconds instead of hanging;
  ``migrations`` compares the database's Alembic revision with the code's head (``current``/``head``).

Multi-process mode: when several processes update metrics (scheduler, workers, this server), start them all
with the environment variable ``PROMETHEUS_MULTIPROC_DIR`` pointing at one empty, writable directory (wipe it
at each deployment start). prometheus_client then keeps every process's values in files there, and
``/metrics`` serves them through ``prometheus_client.multiprocess.MultiProcessCollector`` (plus this server's
own psutil gauges) instead of the in-process registry.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.exposition import gzip_accepted
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from coffee_scraper.catalog import db
from coffee_scraper.incidents import runner as incidents_runner
from coffee_scraper.incidents import store as incident_store
from coffee_scraper.incidents import watchdog
from coffee_scraper.incidents.alert_config import AlertSettings
from coffee_scraper.incidents.ops_views import ops_router
from coffee_scraper.jobs import embedded as jobs_embedded
from coffee_scraper.jobs import service as jobs_service
from coffee_scraper.observability.exposition import generate_text
from coffee_scraper.observability.logging import get_logger
from coffee_scraper.observability.metrics import REGISTRY, SYSTEM
from coffee_scraper.observability.system import watched_paths
from coffee_scraper.settings import Settings
from coffee_scraper.web.limits import BodySizeLimit
from coffee_scraper.web.pages import mount_dashboard

DB_CONNECT_TIMEOUT_S = 2  # libpq connect_timeout (whole seconds)
DB_CHECK_DEADLINE_S = 3.0  # the readiness answer never waits longer than this for the database
METRICS_GZIP_LEVEL = 1  # 1.4 MB -> ~120 KB in ~3 ms; level 9 (prometheus_client's) takes ~30 ms for ~90 KB


def metrics_registry() -> CollectorRegistry:
    """What /metrics exposes: the app registry, or every process's values in multi-process mode."""
    multiproc_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not multiproc_dir:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=multiproc_dir)
    registry.register(SYSTEM)
    return registry


def health_engine(database_url: str) -> Engine:
    """A small engine for readiness checks: short connect and pool timeouts."""
    url = db.normalize_url(database_url)
    kwargs: dict[str, Any] = {"pool_size": 1, "max_overflow": 2, "pool_timeout": DB_CHECK_DEADLINE_S}
    if make_url(url).get_backend_name() == "postgresql":
        kwargs["connect_args"] = {"connect_timeout": DB_CONNECT_TIMEOUT_S}
    return db.make_engine(url, **kwargs)


def _check_database(engine: Engine) -> dict[str, Any]:
    started = time.perf_counter()
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


def _check_migrations(engine: Engine, head: str | None) -> dict[str, Any]:
    current = db.current_revision(engine)
    result: dict[str, Any] = {"ok": current == head, "current": current, "head": head}
    if current != head:
        result["error"] = (
            "database schema is not at the code's revision; run `coffee-scraper db upgrade`"
            if current
            else "database has no schema; run `coffee-scraper db upgrade`"
        )
    return result


def _check_heartbeats(engine: Engine, expected_session: str | None, max_age_s: float) -> dict[str, Any]:
    """Scheduler/worker heartbeats (jobs/): stale ones fail readiness; ``{}`` when none is expected."""
    from coffee_scraper.catalog.models import utcnow

    with Session(engine) as session:
        result = jobs_service.heartbeat_health(session, utcnow(), max_age_s, expected_session=expected_session)
    return result or {}


async def _bounded(check: Any, *args: Any) -> dict[str, Any]:
    """Run a blocking check in a thread; a failure or the deadline becomes ``{"ok": false, "error": ...}``."""
    try:
        result: dict[str, Any] = await asyncio.wait_for(asyncio.to_thread(check, *args), DB_CHECK_DEADLINE_S)
        return result
    except TimeoutError:
        return {"ok": False, "error": f"no answer within {DB_CHECK_DEADLINE_S:g} s"}
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"}


def create_app(settings: Settings) -> FastAPI:
    """The FastAPI app of ``coffee-scraper serve`` for these settings (the database is not touched here)."""
    engine = health_engine(settings.database_url)
    head = db.head_revision()
    SYSTEM.watch_paths(watched_paths(settings))
    log = get_logger("app")
    heartbeat_max_age_s = AlertSettings().heartbeat_max_age_s
    incident_settings = incident_store.incident_store_settings(settings)  # incidents_database_url, when set

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with (
            watchdog.running(settings),  # the built-in watchdog (COFFEE_SCRAPER_WATCHDOG_ENABLED)
            jobs_embedded.running(settings) as scheduler,  # embedded scheduler mode (jobs/embedded.py)
            incidents_runner.running(incident_settings),  # escalation, reminders, notification delivery
        ):
            _app.state.scheduler = scheduler
            yield
        dashboard.close()
        engine.dispose()

    app = FastAPI(title="coffee-scraper", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    app.state.engine = engine
    dashboard = mount_dashboard(app, settings)  # pages, /api/v1, /login, /static (web/pages/)

    @app.get("/metrics")
    def metrics(request: Request) -> Response:
        # Same bytes as prometheus_client.generate_latest, several times faster (see observability/exposition.py).
        body = generate_text(metrics_registry())
        if gzip_accepted(request.headers.get("accept-encoding", "")):
            return Response(
                gzip.compress(body, compresslevel=METRICS_GZIP_LEVEL),
                media_type=CONTENT_TYPE_LATEST,
                headers={"Content-Encoding": "gzip", "Vary": "Accept-Encoding"},
            )
        return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"Vary": "Accept-Encoding"})

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/health/ready")
    async def ready() -> JSONResponse:
        checks: dict[str, dict[str, Any]] = {"database": await _bounded(_check_database, engine)}
        if checks["database"]["ok"]:
            checks["migrations"] = await _bounded(_check_migrations, engine, head)
        else:
            checks["migrations"] = {"ok": False, "error": "not checked: the database is unreachable", "head": head}
        if checks["migrations"]["ok"]:  # heartbeats: only when a scheduler or worker is expected
            scheduler = getattr(app.state, "scheduler", None)
            expected = scheduler.identity.session_id if scheduler is not None else None
            beats = await _bounded(_check_heartbeats, engine, expected, heartbeat_max_age_s)
            if beats is not None and beats.get("ok") is not None:
                checks["heartbeats"] = beats
        failed = [name for name, result in checks.items() if not result["ok"]]
        if failed:
            log.warning("readiness_failed", failed=failed, checks=checks)
        body = {"status": "fail" if failed else "ok", "failed": failed, "checks": checks}
        return JSONResponse(body, status_code=503 if failed else 200)

    app.add_middleware(BodySizeLimit, max_bytes=settings.api_max_body_bytes)  # 413 for /api/ bodies (web/limits.py)
    from coffee_scraper.incidents.views import incidents_router  # here: views imports web.auth (an import cycle)

    app.include_router(incidents_router(incident_settings))  # alert receivers + incidents API (incidents/views.py)
    app.include_router(ops_router(settings))  # diagnostics, remediation, follow-up API + loop (incidents/ops_views.py)
    return app
