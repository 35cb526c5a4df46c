"""``/api/v1/me``, ``/api/v1/users`` and ``/api/v1/tokens``: who am I, user management (admin), API tokens.

Every query is in ``accounts/service.py``; the same operations exist as ``coffee-scraper users ...`` commands.
"""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, HTTPException, status

from coffee_scraper.accounts import service as accounts
from coffee_scraper.accounts.models import User
from coffee_scraper.catalog.db import session_scope
from coffee_scraper.web.api.schemas import (
    IdPath,
    MeOut,
    NewTokenOut,
    TokenIn,
    TokenOut,
    UserIn,
    UserOut,
    UserPatch,
    token_out,
    user_out,
)
from coffee_scraper.web.security import ApiAdmin, ApiViewer, Context, Principal

router = APIRouter(tags=["users"])


def _account_error(exc: accounts.AccountError) -> HTTPException:
    text = str(exc)
    return HTTPException(409 if "already exists" in text or "last active admin" in text else 400, text)


@router.get("/me", response_model=MeOut, summary="The caller")
def me(principal: ApiViewer) -> MeOut:
    return MeOut(username=principal.username, role=principal.role, via=principal.via)


@router.get("/users", response_model=list[UserOut], summary="Every user (admin)")
def list_users(ctx: Context, _: ApiAdmin) -> list[UserOut]:
    with ctx.factory() as session:
        return [user_out(u) for u in accounts.list_users(session)]


@router.post("/users", response_model=UserOut, status_code=status.HTTP_201_CREATED, summary="Add a user (admin)")
def add_user(body: UserIn, ctx: Context, _: ApiAdmin) -> UserOut:
    try:
        with session_scope(ctx.factory) as session:
            user = accounts.create_user(session, body.username, body.password, body.role, now=ctx.now())
            return user_out(user)
    except accounts.AccountError as exc:
        raise _account_error(exc) from exc


@router.patch("/users/{user_id}", response_model=UserOut, summary="Change a user's role, state or password (admin)")
def update_user(user_id: IdPath, body: UserPatch, ctx: Context, _: ApiAdmin) -> UserOut:
    try:
        with session_scope(ctx.factory) as session:
            user = accounts.get_user(session, user_id)
            accounts.update_user(session, user, role=body.role, active=body.active)
            if body.password is not None:
                accounts.set_password(session, user, body.password, now=ctx.now())
            return user_out(user)
    except accounts.AccountError as exc:
        raise (HTTPException(404, str(exc)) if str(exc).startswith("no user") else _account_error(exc)) from exc


def _owner(session_user: User | None, principal: Principal) -> User:
    if session_user is None:
        raise HTTPException(
            400, "the configured API token belongs to no user; create user tokens with a user's session or token"
        )
    return session_user


@router.get("/tokens", response_model=list[TokenOut], summary="API tokens: your own (admins: everyone's)")
def list_tokens(ctx: Context, principal: ApiViewer) -> list[TokenOut]:
    with ctx.factory() as session:
        if principal.role == "admin":
            names = {u.id: u.username for u in accounts.list_users(session)}
            return [token_out(t, names.get(t.user_id, "?")) for t in accounts.list_tokens(session)]
        user = _owner(session.get(User, principal.user_id) if principal.user_id else None, principal)
        return [token_out(t, user.username) for t in accounts.list_tokens(session, user)]


@router.post("/tokens", response_model=NewTokenOut, status_code=status.HTTP_201_CREATED, summary="Create an API token")
def create_token(body: TokenIn, ctx: Context, principal: ApiViewer) -> NewTokenOut:
    now = ctx.now()
    try:
        with session_scope(ctx.factory) as session:
            user = _owner(session.get(User, principal.user_id) if principal.user_id else None, principal)
            expires = now + timedelta(days=body.expires_in_days) if body.expires_in_days else None
            new = accounts.create_api_token(session, user, body.name, now=now, expires_at=expires)
    except accounts.AccountError as exc:
        raise _account_error(exc) from exc
    return NewTokenOut(id=new.id, name=new.name, token=new.secret, prefix=new.prefix, expires_at=new.expires_at)


@router.delete("/tokens/{token_id}", response_model=TokenOut, summary="Revoke an API token")
def revoke_token(token_id: IdPath, ctx: Context, principal: ApiViewer) -> TokenOut:
    try:
        with session_scope(ctx.factory) as session:
            owner = None
            if principal.role != "admin":
                owner = _owner(session.get(User, principal.user_id) if principal.user_id else None, principal)
            token = accounts.revoke_token(session, token_id, now=ctx.now(), owner=owner)
            user = session.get(User, token.user_id)
            return token_out(token, user.username if user else "?")
    except accounts.AccountError as exc:
        raise HTTPException(404, str(exc)) from exc
