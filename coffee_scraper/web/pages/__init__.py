"""The dashboard: server-rendered pages (Jinja2 + vendored htmx), ``/api/v1``, login, static files.

``mount_dashboard(app, settings)`` wires everything into the FastAPI app of ``web/app.py``. Page routes live in
``auth.py``, ``overview.py``, ``scraping.py``, ``catalog.py`` and ``incidents.py`` (which plugs in with its router,
``templating.register_nav`` and ``register_overview_slot``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coffee_scraper.catalog import db
from coffee_scraper.catalog.models import utcnow
from coffee_scraper.settings import Settings
from coffee_scraper.web.api import API_PREFIX, api_router
from coffee_scraper.web.pages import auth, catalog, incidents, overview, scraping
from coffee_scraper.web.pages.runner import RunNow
from coffee_scraper.web.pages.templating import STATIC_DIR, render
from coffee_scraper.web.security import LoginRequired, PageForbidden, WebContext, login_redirect_url

# No inline script or style anywhere, so the policy can forbid both: shop text that slipped through escaping
# still could not run. htmx is configured not to inject its indicator <style> (see base.html).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
NOT_HTML_PREFIXES = ("/api/", "/webhooks/", "/metrics", "/health", "/static/", "/openapi.json")


class SecurityHeaders:
    """Adds nosniff, frame and referrer headers to every response and the CSP to HTML pages (pure ASGI)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                extra = [
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"same-origin"),
                ]
                content_type = next((v for n, v in headers if n.lower() == b"content-type"), b"")
                if content_type.startswith(b"text/html"):
                    extra.append((b"content-security-policy", CONTENT_SECURITY_POLICY.encode()))
                    extra.append((b"cache-control", b"no-store"))
                headers.extend((n, v) for n, v in extra if n not in names)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


@dataclass
class Dashboard:
    """What ``mount_dashboard`` made: close it when the app stops (background runs, the pages' engine)."""

    context: WebContext
    engine: Engine
    runner: RunNow

    def close(self) -> None:
        self.runner.close()
        self.engine.dispose()


def _wants_html(request: Request) -> bool:
    path = request.url.path
    return not path.startswith(NOT_HTML_PREFIXES) and "text/html" in request.headers.get("accept", "")


def mount_dashboard(app: FastAPI, settings: Settings, *, now: Callable[[], datetime] = utcnow) -> Dashboard:
    """Add the pages, ``/api/v1``, ``/login`` and ``/static`` to ``app`` (the database is not touched here)."""
    engine = db.make_engine(settings.database_url)
    ctx = WebContext(settings=settings, factory=db.session_factory(engine), now=now)
    runner = RunNow(ctx)
    app.state.web = ctx
    app.state.run_now = runner

    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    app.include_router(api_router())
    incidents.attach(ctx)  # a separate incident store (incidents_database_url) for the overview's panel
    for module in (auth, overview, scraping, catalog, incidents):
        app.include_router(module.router)

    async def login_required(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LoginRequired)
        return RedirectResponse(login_redirect_url(exc.next_url), status_code=303)

    async def forbidden(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PageForbidden)
        principal = getattr(request.state, "principal", None)
        return render(request, "error.html", {"title": "Not allowed", "message": exc.message}, principal=principal,
                      status_code=403)  # fmt: skip

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if not _wants_html(request) or exc.status_code < 400:
            return await http_exception_handler(request, exc)
        principal = getattr(request.state, "principal", None)
        titles = {403: "Not allowed", 404: "Not found", 405: "Not allowed here"}
        return render(
            request,
            "error.html",
            {"title": titles.get(exc.status_code, "Something went wrong"), "message": str(exc.detail)},
            principal=principal,
            status_code=exc.status_code,
        )

    app.add_exception_handler(LoginRequired, login_required)
    app.add_exception_handler(PageForbidden, forbidden)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_middleware(SecurityHeaders)
    return Dashboard(context=ctx, engine=engine, runner=runner)


__all__ = ["API_PREFIX", "Dashboard", "mount_dashboard"]
