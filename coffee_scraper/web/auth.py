"""Bearer-token authentication of the HTTP API's machine endpoints (alert receivers) and incident operations.

Lives here: ``TokenAuth`` — a FastAPI dependency that accepts ``Authorization: Bearer TOKEN`` (or HTTP Basic with
the token as password, for senders that only do basic auth) where TOKEN is ``COFFEE_SCRAPER_API_TOKEN``,
compared in constant time (``hmac.compare_digest`` of SHA-256 digests, so length leaks nothing either). Without
a header or with a wrong one it answers 401 with ``WWW-Authenticate``; when no token is configured, endpoints
that need one answer 503 saying how to configure it (secure by default). When the dashboard's security is wired
(``request.app.state.web``), a user's own API token (``csk_...``) or logged-in dashboard session is accepted
too (viewer role to read, operator to write; session writes need the CSRF token) and the user becomes the actor.
The token is never logged or echoed.
Does not live here: dashboard sessions, users and roles (``web/security.py``), the body-size limit (``limits.py``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr
from starlette.concurrency import run_in_threadpool

REALM = "coffee-scraper"
# Declares the scheme in the OpenAPI schema; the check itself is TokenAuth below.
bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="apiToken",
    description="COFFEE_SCRAPER_API_TOKEN (or a dashboard user's API token: viewer reads, operator writes).",
)


@dataclass(frozen=True)
class Caller:
    """Who made an authenticated request: ``name`` is used as the actor on incident timelines."""

    name: str
    via: str  # "api_token" | "user_token" | "session" | "anonymous"


def presented_token(authorization: str | None) -> str | None:
    """The token in an Authorization header: Bearer TOKEN, or Basic with TOKEN as the password."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer":
        return credentials or None
    if scheme.lower() == "basic" and credentials:
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        return decoded.partition(":")[2] or None
    return None


def token_matches(presented: str, configured: str) -> bool:
    """Constant-time comparison (of digests, so lengths do not leak)."""
    a = hashlib.sha256(presented.encode("utf-8", "replace")).digest()
    b = hashlib.sha256(configured.encode("utf-8", "replace")).digest()
    return hmac.compare_digest(a, b)


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": f'Bearer realm="{REALM}"'})


class TokenAuth:
    """Dependency: the caller must present the API token (``required=False``: anyone may call, e.g. open reads)."""

    def __init__(self, token: SecretStr | None, *, required: bool = True) -> None:
        value = token.get_secret_value() if token is not None else ""
        self._token = value or None
        self._required = required

    async def __call__(
        self, request: Request, _credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme)
    ) -> Caller:
        if not self._required:
            return Caller("api", "anonymous")
        presented = presented_token(request.headers.get("authorization"))
        if self._token is not None and presented is not None and token_matches(presented, self._token):
            return Caller("api", "api_token")
        user = await self._dashboard_user(request, presented)
        if user is not None:
            return user
        if self._token is None and presented is None:
            raise HTTPException(
                503,
                "the API is locked: no API token is configured. Set COFFEE_SCRAPER_API_TOKEN (e.g. "
                "`openssl rand -hex 32`) for the server and the senders, then restart it",
            )
        if presented is None:
            raise _unauthorized(
                "missing API token: send `Authorization: Bearer TOKEN` with TOKEN = COFFEE_SCRAPER_API_TOKEN"
            )
        raise _unauthorized("wrong API token: check COFFEE_SCRAPER_API_TOKEN of the server and of this sender")

    async def _dashboard_user(self, request: Request, presented: str | None) -> Caller | None:
        """A dashboard user's own API token, or a logged-in dashboard session (whose writes need the CSRF token),
        when the dashboard's security is wired: the viewer role may read (GET), writes need the operator role."""
        ctx = getattr(request.app.state, "web", None)
        if ctx is None:
            return None
        from coffee_scraper.web.security import check_csrf, current_principal, resolve_principal

        if presented is not None:
            principal = await run_in_threadpool(resolve_principal, ctx, f"Bearer {presented}", None)
            if principal is None or principal.via != "user_token":
                return None
        else:
            principal = await current_principal(request)
            if principal is None or principal.via != "session":
                return None
        needed = "viewer" if request.method in {"GET", "HEAD", "OPTIONS"} else "operator"
        if not principal.can(needed):
            raise HTTPException(403, f"this needs the {needed} role; {principal.username} is {principal.role}")
        await check_csrf(request, principal)
        return Caller(principal.username, principal.via)
