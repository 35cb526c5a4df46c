"""Who is asking, and may they: session cookies, API tokens, roles and CSRF for the dashboard and ``/api/v1``.

A request is authorized by (a) the configured API token (``COFFEE_SCRAPER_API_TOKEN``, acting as an operator),
(b) a user's API token (``Authorization: Bearer csk_...``, acting as that user with the user's current role), or
(c) a logged-in session cookie; session requests that change something also need the CSRF token (form field
``csrf_token`` or header ``X-CSRF-Token``). Accounts storage is in ``accounts/service.py``; routes are in
``web/pages/`` and ``web/api/``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from coffee_scraper.accounts import service as accounts
from coffee_scraper.catalog.db import session_scope
from coffee_scraper.catalog.models import utcnow
from coffee_scraper.settings import Settings

SESSION_COOKIE = "coffee_session"
LOGIN_NONCE_COOKIE = "coffee_login"  # binds the login form's CSRF token to this browser before any session
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CONFIGURED_TOKEN_ROLE = "operator"  # what COFFEE_SCRAPER_API_TOKEN may do (user management needs an admin)


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one request."""

    username: str
    role: str
    via: str  # "session" | "user_token" | "api_token"
    user_id: int | None = None
    csrf_token: str | None = None  # sessions only: what forms must send back

    def can(self, role: str) -> bool:
        return accounts.has_role(self.role, role)


@dataclass
class WebContext:
    """What the dashboard's routes share: settings, a session factory, the clock and the session secret."""

    settings: Settings
    factory: sessionmaker[Session]
    now: Callable[[], datetime] = utcnow
    _secret: bytes | None = field(default=None, repr=False)

    def secret(self) -> bytes:
        """The configured session secret, else the one generated once and kept in the database."""
        if self._secret is None:
            configured = self.settings.dashboard_session_secret
            if configured is not None and configured.get_secret_value():
                self._secret = configured.get_secret_value().encode("utf-8")
            else:
                with session_scope(self.factory) as session:
                    self._secret = accounts.app_secret(session, now=self.now()).encode("utf-8")
        return self._secret

    def _mac(self, purpose: str, value: str) -> str:
        return hmac.new(self.secret(), f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()

    def csrf_for_session(self, session_token: str) -> str:
        return self._mac("csrf", session_token)

    def csrf_for_login(self, nonce: str) -> str:
        return self._mac("login", nonce)


class LoginRequired(Exception):
    """A page needs a logged-in user: answered with a redirect to /login?next=..."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


class PageForbidden(Exception):
    """A logged-in user lacks the role a page action needs: answered with a 403 page."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def web_context(request: Request) -> WebContext:
    ctx: WebContext = request.app.state.web
    return ctx


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, credentials = authorization.partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else ""


def resolve_principal(ctx: WebContext, authorization: str | None, session_cookie: str | None) -> Principal | None:
    """The caller behind an Authorization header or a session cookie (blocking: call it in a thread)."""
    token = _bearer(authorization)
    if token is not None:  # an Authorization header decides alone, even next to a cookie
        if not token:
            return None
        configured = ctx.settings.api_token.get_secret_value() if ctx.settings.api_token is not None else ""
        if configured and hmac.compare_digest(
            hashlib.sha256(token.encode()).digest(), hashlib.sha256(configured.encode()).digest()
        ):
            return Principal(username="api-token", role=CONFIGURED_TOKEN_ROLE, via="api_token")
        if not token.startswith(accounts.TOKEN_PREFIX):
            return None
        with session_scope(ctx.factory) as session:
            found = accounts.token_user(session, token, now=ctx.now())
            if found is None:
                return None
            user, _ = found
            return Principal(username=user.username, role=user.role, via="user_token", user_id=user.id)
    if session_cookie:
        with ctx.factory() as session:
            session_owner = accounts.session_user(session, session_cookie, now=ctx.now())
            if session_owner is None:
                return None
            return Principal(
                username=session_owner.username,
                role=session_owner.role,
                via="session",
                user_id=session_owner.id,
                csrf_token=ctx.csrf_for_session(session_cookie),
            )
    return None


async def current_principal(request: Request) -> Principal | None:
    """The request's caller, or None (resolved once per request)."""
    if hasattr(request.state, "principal"):
        cached: Principal | None = request.state.principal
        return cached
    principal = await run_in_threadpool(
        resolve_principal,
        web_context(request),
        request.headers.get("authorization"),
        request.cookies.get(SESSION_COOKIE),
    )
    request.state.principal = principal
    return principal


async def check_csrf(request: Request, principal: Principal) -> None:
    """Session requests that change something must echo the session's CSRF token (header or form field)."""
    if principal.via != "session" or request.method not in UNSAFE_METHODS:
        return
    sent = request.headers.get(CSRF_HEADER)
    if not sent and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not sent or not principal.csrf_token or not hmac.compare_digest(sent, principal.csrf_token):
        raise HTTPException(
            403,
            "missing or wrong CSRF token: reload the page and try again (scripts: use an API token instead "
            "of the session cookie)",
        )


def safe_next(url: str | None) -> str:
    """A local path to go to after login (never another site)."""
    if not url or not url.startswith("/") or url.startswith("//") or "\\" in url:
        return "/"
    return url


def require(role: str, *, page: bool = False) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency: the caller must have ``role``; pages redirect to /login, the API answers 401/403."""

    async def dependency(request: Request) -> Principal:
        principal = await current_principal(request)
        if principal is None:
            if page:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                raise LoginRequired(target)
            raise HTTPException(
                401,
                "not authenticated: send `Authorization: Bearer TOKEN` (create a token on the dashboard's account "
                "page or with `coffee-scraper users token USER NAME`) or log in at /login",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not principal.can(role):
            message = f"this needs the {role} role; {principal.username} is {principal.role} (ask an admin)"
            if page:
                raise PageForbidden(message)
            raise HTTPException(403, message)
        await check_csrf(request, principal)
        return principal

    dependency.__name__ = f"require_{role}{'_page' if page else ''}"
    return dependency


def login_redirect_url(next_url: str) -> str:
    return f"/login?next={quote(next_url, safe='/')}"


def new_login_nonce() -> str:
    return secrets.token_urlsafe(16)


def session_cookie_options(settings: Settings) -> dict[str, Any]:
    return {
        "httponly": True,
        "samesite": "lax",  # links from Slack/e-mail still arrive logged in; cross-site POSTs carry no cookie
        "secure": settings.dashboard_cookie_secure,
        "path": "/",
    }


# Typed dependencies for route signatures.
ApiViewer = Annotated[Principal, Depends(require("viewer"))]
ApiOperator = Annotated[Principal, Depends(require("operator"))]
ApiAdmin = Annotated[Principal, Depends(require("admin"))]
PageViewer = Annotated[Principal, Depends(require("viewer", page=True))]
PageOperator = Annotated[Principal, Depends(require("operator", page=True))]
PageAdmin = Annotated[Principal, Depends(require("admin", page=True))]
Context = Annotated[WebContext, Depends(web_context)]
