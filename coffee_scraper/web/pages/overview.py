"""The overview page (``/``): health checks, host and process, catalog counts, last runs, roasters needing care,
and the panels filled in by other parts (queue depth and heartbeats from ``jobs/`` here; open incidents by the
incident pages; see ``templating.OVERVIEW_SLOTS``).

The numbers come from ``web/api/overview.py`` (shared with ``GET /api/v1/overview``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup
from sqlalchemy.orm import Session

from coffee_scraper.incidents.alert_config import AlertSettings
from coffee_scraper.jobs import service as jobs
from coffee_scraper.web.api.overview import build_overview
from coffee_scraper.web.pages.templating import ENV, OVERVIEW_SLOTS, ago, is_htmx, register_overview_slot, render
from coffee_scraper.web.security import Context, PageViewer, WebContext

router = APIRouter(include_in_schema=False)


def _slots(ctx: WebContext) -> list[dict[str, Any]]:
    """Each overview slot rendered on its own: a failing panel says so instead of taking the page down."""
    panels = []
    now = ctx.now()
    for slot in sorted(OVERVIEW_SLOTS.values(), key=lambda s: s.order):
        panel: dict[str, Any] = {"name": slot.name, "title": slot.title, "pending": slot.pending, "html": None}
        if slot.provider is not None and slot.template is not None:
            try:
                with ctx.factory() as session:
                    data = slot.provider(session, now)
                # our own autoescaped template's output (shop text inside it is escaped), so Markup is right
                panel["html"] = Markup(
                    ENV.get_template(slot.template).render(data=data, now=now, ago=lambda v: ago(v, now))
                )
            except Exception as exc:  # one broken panel must not take the overview down
                panel["pending"] = f"This panel failed to load: {type(exc).__name__}: {exc}"
        panels.append(panel)
    return panels


def queue_panel(session: Session, now: datetime) -> dict[str, Any]:
    """Runs waiting per queue and the queue's pause switch (``jobs/``)."""
    paused, reason = jobs.queue_paused(session)
    return {"depth": jobs.queue_depth(session, now), "paused": paused, "reason": reason}


def heartbeats_panel(session: Session, now: datetime) -> dict[str, Any]:
    """Scheduler and worker heartbeats with their age; stale past the runbook's heartbeat limit."""
    max_age_s = AlertSettings().heartbeat_max_age_s
    beats = [
        {
            "component": h.component,
            "instance": h.instance,
            "last_beat_at": h.last_beat_at,
            "stale": (now - h.last_beat_at).total_seconds() > max_age_s,
        }
        for h in jobs.heartbeats(session)
    ]
    return {"beats": beats, "max_age_s": max_age_s}


register_overview_slot("queue", "overview/_slot_queue.html", queue_panel, title="Scraping queue")
register_overview_slot("heartbeats", "overview/_slot_heartbeats.html", heartbeats_panel, title="Heartbeats")


@router.get("/")
def overview_page(request: Request, ctx: Context, principal: PageViewer) -> HTMLResponse:
    data = build_overview(ctx, request.app.state.engine, request.app.state.run_now)
    template = "overview/_body.html" if is_htmx(request) else "overview/page.html"
    return render(request, template, {"o": data, "slots": _slots(ctx)}, principal=principal)
