"""Login, logout, the account page (password, API tokens) and user management for admins.

Sessions, roles and CSRF are ``web/security.py``'s; users and tokens are stored by ``accounts/service.py``.
"""

from __future__ import annotations

import hmac
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from coffee_scraper.accounts import service as accounts
from coffee_scraper.accounts.models import ROLES, User
from coffee_scraper.catalog.db import session_scope
from coffee_scraper.web.api.schemas import IdPath
from coffee_scraper.web.pages.templating import render
from coffee_scraper.web.security import (
    LOGIN_NONCE_COOKIE,
    SESSION_COOKIE,
    Context,
    PageAdmin,
    PageViewer,
    Principal,
    WebContext,
    current_principal,
    new_login_nonce,
    safe_next,
    session_cookie_options,
)

router = APIRouter(include_in_schema=False)
MaybePrincipal = Annotated[Principal | None, Depends(current_principal)]
LOGIN_NONCE_MAX_AGE_S = 3600


def _login_page(
    request: Request, ctx: WebContext, next_url: str, *, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    nonce = request.cookies.get(LOGIN_NONCE_COOKIE) or new_login_nonce()
    with ctx.factory() as session:
        no_users = accounts.count_users(session) == 0
    response = render(
        request,
        "login.html",
        {
            "login_csrf": ctx.csrf_for_login(nonce),
            "next_url": safe_next(next_url),
            "error": error,
            "no_users": no_users,
        },
        principal=None,
        status_code=status_code,
    )
    response.set_cookie(
        LOGIN_NONCE_COOKIE,
        nonce,
        max_age=LOGIN_NONCE_MAX_AGE_S,
        httponly=True,
        samesite="strict",
        secure=ctx.settings.dashboard_cookie_secure,
        path="/login",
    )
    return response


@router.get("/login")
def login_form(request: Request, ctx: Context, principal: MaybePrincipal, next: str = "/") -> Response:
    if principal is not None and principal.via == "session":
        return RedirectResponse(safe_next(next), status_code=303)
    return _login_page(request, ctx, next)


@router.post("/login")
def login(
    request: Request,
    ctx: Context,
    username: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    nonce = request.cookies.get(LOGIN_NONCE_COOKIE)
    if not nonce or not accounts_compare(csrf_token, ctx.csrf_for_login(nonce)):
        return _login_page(request, ctx, next, error="The login form expired; please log in again.", status_code=400)
    if not username or not password:
        return _login_page(request, ctx, next, error="Enter your username and password.", status_code=400)
    now, settings = ctx.now(), ctx.settings
    error: str | None = None
    token = ""
    with session_scope(ctx.factory) as session:
        try:
            user = accounts.authenticate(
                session,
                username,
                password,
                now=now,
                max_failures=settings.dashboard_login_max_failures,
                lockout_s=settings.dashboard_login_lockout_s,
            )
            token = accounts.create_session(
                session,
                user,
                now=now,
                lifetime_s=settings.dashboard_session_lifetime_s,
                user_agent=request.headers.get("user-agent"),
            )
        except accounts.LoginError as exc:
            error = str(exc)  # failed-login counters are committed with this transaction
    if error is not None:
        return _login_page(request, ctx, next, error=error, status_code=401)
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE, token, max_age=settings.dashboard_session_lifetime_s, **session_cookie_options(settings)
    )
    response.delete_cookie(LOGIN_NONCE_COOKIE, path="/login")
    return response


def accounts_compare(sent: str, expected: str) -> bool:
    return bool(sent) and hmac.compare_digest(sent.encode(), expected.encode())


@router.post("/logout")
def logout(request: Request, ctx: Context, principal: PageViewer) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        with session_scope(ctx.factory) as session:
            accounts.end_session(session, token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# --- account page -------------------------------------------------------------------------------------


def _account_page(
    request: Request, ctx: WebContext, principal: Principal, *, status_code: int = 200, **extra: Any
) -> HTMLResponse:
    with ctx.factory() as session:
        user = session.get(User, principal.user_id) if principal.user_id else None
        tokens = accounts.list_tokens(session, user) if user else []
        return render(
            request,
            "account.html",
            {"user": user, "tokens": tokens, "new_token": None, "error": None, "message": None, **extra},
            principal=principal,
            status_code=status_code,
        )


@router.get("/account")
def account(request: Request, ctx: Context, principal: PageViewer) -> HTMLResponse:
    return _account_page(request, ctx, principal)


@router.post("/account/tokens")
def create_token(
    request: Request,
    ctx: Context,
    principal: PageViewer,
    name: Annotated[str, Form(max_length=200)] = "",
    expires_in_days: Annotated[str, Form(max_length=10)] = "",
) -> HTMLResponse:
    now = ctx.now()
    try:
        days = int(expires_in_days) if expires_in_days.strip() else None
        if days is not None and not 1 <= days <= 3650:
            raise accounts.AccountError("expiry must be between 1 and 3650 days, or empty for none")
        with session_scope(ctx.factory) as session:
            user = session.get(User, principal.user_id) if principal.user_id else None
            if user is None:
                raise accounts.AccountError("log in as a user to create tokens")
            expires = now + timedelta(days=days) if days else None
            new = accounts.create_api_token(session, user, name, now=now, expires_at=expires)
    except ValueError as exc:  # AccountError is a ValueError; int() too
        message = str(exc) if isinstance(exc, accounts.AccountError) else "expiry must be a whole number of days"
        return _account_page(request, ctx, principal, error=message, status_code=400)
    return _account_page(request, ctx, principal, new_token=new)


@router.post("/account/tokens/{token_id}/revoke")
def revoke_token(token_id: IdPath, request: Request, ctx: Context, principal: PageViewer) -> HTMLResponse:
    try:
        with session_scope(ctx.factory) as session:
            user = session.get(User, principal.user_id) if principal.user_id else None
            accounts.revoke_token(session, token_id, now=ctx.now(), owner=user)
    except accounts.AccountError as exc:
        return _account_page(request, ctx, principal, error=str(exc), status_code=404)
    return _account_page(request, ctx, principal, message="Token revoked.")


@router.post("/account/password")
def change_password(
    request: Request,
    ctx: Context,
    principal: PageViewer,
    current: Annotated[str, Form(max_length=1024)] = "",
    new: Annotated[str, Form(max_length=1024)] = "",
    confirm: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    now = ctx.now()
    token = ""
    try:
        if new != confirm:
            raise accounts.AccountError("the two new passwords differ")
        with session_scope(ctx.factory) as session:
            user = session.get(User, principal.user_id) if principal.user_id else None
            if user is None or not accounts.verify_password(user.password_hash, current):
                raise accounts.AccountError("the current password is wrong")
            accounts.set_password(session, user, new, now=now)  # ends every session of the user...
            token = accounts.create_session(  # ...so this browser gets a fresh one
                session,
                user,
                now=now,
                lifetime_s=ctx.settings.dashboard_session_lifetime_s,
                user_agent=request.headers.get("user-agent"),
            )
    except accounts.AccountError as exc:
        return _account_page(request, ctx, principal, error=str(exc), status_code=400)
    response = RedirectResponse("/account", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=ctx.settings.dashboard_session_lifetime_s,
        **session_cookie_options(ctx.settings),
    )
    return response


# --- users (admin) ------------------------------------------------------------------------------------


def _users_page(
    request: Request, ctx: WebContext, principal: Principal, *, status_code: int = 200, **extra: Any
) -> HTMLResponse:
    with ctx.factory() as session:
        users = accounts.list_users(session)
        return render(
            request,
            "users.html",
            {"users": users, "roles": ROLES, "error": None, "message": None, **extra},
            principal=principal,
            status_code=status_code,
        )


@router.get("/admin/users")
def users_page(request: Request, ctx: Context, principal: PageAdmin) -> HTMLResponse:
    return _users_page(request, ctx, principal)


@router.post("/admin/users")
def add_user(
    request: Request,
    ctx: Context,
    principal: PageAdmin,
    username: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    role: Annotated[str, Form(max_length=20)] = "viewer",
) -> HTMLResponse:
    try:
        with session_scope(ctx.factory) as session:
            accounts.create_user(session, username, password, role, now=ctx.now())
    except accounts.AccountError as exc:
        return _users_page(request, ctx, principal, error=str(exc), status_code=400)
    return _users_page(request, ctx, principal, message=f"User {username} added.")


@router.post("/admin/users/{user_id}")
def update_user(
    user_id: IdPath,
    request: Request,
    ctx: Context,
    principal: PageAdmin,
    role: Annotated[str, Form(max_length=20)] = "",
    active: Annotated[str, Form(max_length=5)] = "",
) -> HTMLResponse:
    try:
        with session_scope(ctx.factory) as session:
            user = accounts.get_user(session, user_id)
            accounts.update_user(
                session, user, role=role or None, active={"true": True, "false": False}.get(active.lower())
            )
            name = user.username
    except accounts.AccountError as exc:
        return _users_page(request, ctx, principal, error=str(exc), status_code=400)
    return _users_page(request, ctx, principal, message=f"User {name} updated.")
