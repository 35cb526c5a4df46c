"""Jinja2 environment of the dashboard: autoescaping, display filters, navigation and overview slots.

Other page modules (the incident pages) plug in with ``register_nav`` and ``register_overview_slot``. Shop text is
never marked safe: templates print it through autoescaping only. Routes live in the sibling modules.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy.orm import Session

from coffee_scraper.web.security import Principal, WebContext

WEB_DIR = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"


@dataclass(frozen=True)
class NavItem:
    """One entry of the top navigation; shown to users with at least ``role``, sorted by ``order``."""

    label: str
    path: str
    role: str = "viewer"
    order: int = 50


NAV: list[NavItem] = [
    NavItem("Overview", "/", order=10),
    NavItem("Scraping", "/scraping", order=30),
    NavItem("Catalog", "/catalog", order=40),
    NavItem("Users", "/admin/users", role="admin", order=90),
]


def register_nav(item: NavItem) -> None:
    """Add a navigation entry (e.g. Incidents at order 20); registering the same path twice is a no-op."""
    if all(existing.path != item.path for existing in NAV):
        NAV.append(item)
        NAV.sort(key=lambda i: i.order)


SlotProvider = Callable[[Session, datetime], dict[str, Any]]


@dataclass
class OverviewSlot:
    """A panel of the overview page filled by another part of the system.

    ``provider(session, now)`` returns the template's context; until one is registered the panel shows
    ``pending`` so nobody mistakes an empty panel for "all clear".
    """

    name: str
    title: str
    pending: str
    template: str | None = None
    provider: SlotProvider | None = None
    order: int = 50


OVERVIEW_SLOTS: dict[str, OverviewSlot] = {
    "incidents": OverviewSlot(
        "incidents",
        "Open incidents",
        "Not connected yet: open incidents by severity with response-time countdowns arrive with the incident "
        "pages (coffee_scraper/incidents/).",
        order=10,
    ),
    "queue": OverviewSlot(
        "queue",
        "Scraping queue",
        "Not connected yet: queue depth arrives with the scheduler (coffee_scraper/jobs/).",
        order=20,
    ),
    "heartbeats": OverviewSlot(
        "heartbeats",
        "Heartbeats",
        "Not connected yet: scheduler and worker heartbeats arrive with the scheduler (coffee_scraper/jobs/).",
        order=30,
    ),
}


def register_overview_slot(name: str, template: str, provider: SlotProvider, *, title: str | None = None) -> None:
    """Fill an overview panel: ``template`` (under web/templates) is rendered with ``data`` = ``provider(session,
    now)``, ``now`` and ``ago``; a provider or template that fails shows its error in the panel only."""
    slot = OVERVIEW_SLOTS.get(name) or OverviewSlot(name, title or name.title(), "", order=60)
    slot.template, slot.provider = template, provider
    if title:
        slot.title = title
    OVERVIEW_SLOTS[name] = slot


# --- filters ------------------------------------------------------------------------------------------


def money(minor: int | None, currency: str | None = None) -> str:
    if minor is None:
        return "—"
    return f"{minor / 100:,.2f} {currency or ''}".strip()


def when(value: datetime | None) -> str:
    return "—" if value is None else f"{value:%Y-%m-%d %H:%M} UTC"


def iso(value: datetime | None) -> str:
    return "" if value is None else value.isoformat()


def ago(value: datetime | None, now: datetime) -> str:
    """'3 min ago' / 'in 2 h' relative to ``now``."""
    if value is None:
        return "never"
    seconds = (now - value).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 60:
        text = f"{int(seconds)} s"
    elif seconds < 3600:
        text = f"{int(seconds // 60)} min"
    elif seconds < 86400 * 2:
        text = f"{seconds / 3600:.0f} h"
    else:
        text = f"{seconds / 86400:.0f} days"
    return f"in {text}" if future else f"{text} ago"


def duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "—"
    seconds = (end - start).total_seconds()
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"


def pretty_json(value: Any, limit: int = 4000) -> str:
    text = json.dumps(value, ensure_ascii=False, indent=2, default=str)
    return text if len(text) <= limit else text[:limit] + "\n… (cut)"


def make_environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=select_autoescape(enabled_extensions=("html", "svg"), default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(money=money, when=when, iso=iso, duration=duration, percent=percent, pretty_json=pretty_json)
    return env


ENV = make_environment()


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    principal: Principal | None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """Render a page with the layout's context (user, navigation, CSRF token, clock)."""
    ctx: WebContext = request.app.state.web
    now = ctx.now()
    nav = [item for item in NAV if principal is not None and principal.can(item.role)]
    path = request.url.path
    current = max((i for i in nav if path == i.path or (i.path != "/" and path.startswith(i.path))),
                  key=lambda i: len(i.path), default=None)  # fmt: skip
    body = ENV.get_template(template).render(
        request=request,
        principal=principal,
        csrf_token=principal.csrf_token if principal else None,
        nav=nav,
        current_nav=current.path if current else None,
        now=now,
        ago=lambda value: ago(value, now),
        query=dict(request.query_params),
        **context,
    )
    return HTMLResponse(body, status_code=status_code, headers=headers)


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"
