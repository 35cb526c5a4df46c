"""The overview's numbers (health checks, host and process, catalog counts, last runs, roasters needing care).

One builder for the overview page and ``GET /api/v1/overview``; the checks are the readiness checks of
``web/app.py`` and the host numbers come from ``observability/system.py``'s collector.
"""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import Engine, func, select

from coffee_scraper.catalog import db, service
from coffee_scraper.catalog.models import Coffee, Roaster
from coffee_scraper.observability.metrics import SYSTEM
from coffee_scraper.web.api.schemas import CheckOut, OverviewOut, SystemOut, roaster_rows, run_summary
from coffee_scraper.web.pages.runner import RunNow
from coffee_scraper.web.security import WebContext


def system_numbers() -> SystemOut:
    """Process RSS, host memory share and disk share per watched path, read from the psutil collector."""
    rss: float | None = None
    memory: float | None = None
    disks: dict[str, float] = {}
    for family in SYSTEM.collect():
        for sample in family.samples:
            if sample.name.endswith("_process_resident_memory_bytes"):
                rss = sample.value
            elif sample.name.endswith("_host_memory_usage_ratio"):
                memory = sample.value
            elif sample.name.endswith("_host_disk_usage_ratio"):
                disks[sample.labels.get("path", "?")] = sample.value
    return SystemOut(process_rss_bytes=rss, host_memory_ratio=memory, disk_usage_ratio=disks)


@lru_cache(maxsize=1)
def code_head() -> str | None:
    """The migrations' head revision of this code (reading the scripts takes ~10 ms: once per process)."""
    return db.head_revision()


def health_checks(engine: Engine) -> dict[str, CheckOut]:
    """The readiness checks (database, migrations), run directly; a failure is reported, never raised."""
    from coffee_scraper.web.app import _check_database, _check_migrations

    checks: dict[str, dict[str, Any]] = {}
    try:
        checks["database"] = _check_database(engine)
    except Exception as exc:
        checks["database"] = {"ok": False, "error": f"{type(exc).__name__}: {str(exc).strip()[:200]}"}
    if checks["database"]["ok"]:
        try:
            checks["migrations"] = _check_migrations(engine, code_head())
        except Exception as exc:
            checks["migrations"] = {"ok": False, "error": f"{type(exc).__name__}: {str(exc).strip()[:200]}"}
    else:
        checks["migrations"] = {"ok": False, "error": "not checked: the database is unreachable"}
    return {name: CheckOut(**result) for name, result in checks.items()}


def build_overview(ctx: WebContext, health_engine: Engine, runner: RunNow, *, last_runs: int = 10) -> OverviewOut:
    now = ctx.now()
    checks = health_checks(health_engine)
    with ctx.factory() as session:
        runs = service.recent_runs(session, limit=last_runs)
        since = service.run_outcomes_since(session, now - timedelta(hours=24))
        coffees = session.scalar(
            select(func.count()).select_from(Coffee).where(Coffee.status == "active", Coffee.is_coffee.is_(True))
        )
        paused = session.scalar(select(func.count()).select_from(Roaster).where(Roaster.active.is_(False)))
        by_status: dict[str, int] = {}
        for _, status in since:
            by_status[status] = by_status.get(status, 0) + 1
        return OverviewOut(
            checks=checks,
            system=system_numbers(),
            roasters_total=int(session.scalar(select(func.count()).select_from(Roaster)) or 0),
            roasters_paused=int(paused or 0),
            coffees_active=int(coffees or 0),
            runs_last_24h=by_status,
            last_runs=[run_summary(run, name) for run, name in runs],
            needs_attention=[r for r in roaster_rows(session, ctx, runner.is_running) if r.needs_attention],
        )
