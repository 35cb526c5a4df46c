"""``/api/v1``: everything the dashboard pages do, as JSON for automation (OpenAPI at ``/openapi.json``).

Routers per concept: ``catalog.py`` (coffees, prices), ``scraping.py`` (roasters, runs, overview), ``users.py``
(me, users, API tokens), ``insights.py`` (chart data, an incident's notifications). Authentication and roles
come from ``web/security.py``.
"""

from __future__ import annotations

from fastapi import APIRouter

from coffee_scraper.web.api import catalog, insights, scraping, users

API_PREFIX = "/api/v1"


def api_router() -> APIRouter:
    router = APIRouter(prefix=API_PREFIX)
    router.include_router(scraping.router)
    router.include_router(catalog.router)
    router.include_router(users.router)
    router.include_router(insights.router)  # chart data and incident notifications (the rest: incidents/views.py)
    return router
