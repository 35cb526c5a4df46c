"""CLI of dashboard accounts: `coffee-scraper users add|list|update|passwd|token|tokens|revoke-token`.

Thin: parse, call ``accounts.service``, print a table or --json. The shared helpers (database(), fail(), JSON
printing) are ``coffee_scraper.cli``'s, imported at call time (cli imports this module).
"""

from __future__ import annotations

import secrets
import sys
from datetime import timedelta
from typing import Annotated, Any

import typer
from rich.table import Table

from coffee_scraper.accounts import service
from coffee_scraper.accounts.models import ROLES, User
from coffee_scraper.catalog.db import session_scope
from coffee_scraper.catalog.models import utcnow

users_app = typer.Typer(
    help="Dashboard users (roles viewer, operator, admin) and their API tokens.", no_args_is_help=True
)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]
PasswordOpt = Annotated[
    str | None,
    typer.Option(
        help="The password (at least 8 characters). Omitted: asked for on a terminal, else a random one is "
        "generated and printed once."
    ),
]


def _cli() -> Any:
    from coffee_scraper import cli

    return cli


def _password(cli: Any, given: str | None) -> tuple[str, bool]:
    """(password, generated?)"""
    if given is not None:
        return given, False
    if sys.stdin.isatty():
        return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True)), False
    return secrets.token_urlsafe(15), True


def _user_row(u: User) -> dict[str, Any]:
    return {
        "id": u.id,
        "username": u.username,
        "role": u.role,
        "active": u.active,
        "created_at": u.created_at,
        "last_login_at": u.last_login_at,
    }


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="Login name: letters, digits, '_', '.', '@', '-'.")],
    role: Annotated[str, typer.Option(help=f"One of {', '.join(ROLES)}.")] = "viewer",
    password: PasswordOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a dashboard user (the first one should be an admin: `users add NAME --role admin`)."""
    cli = _cli()
    if role not in ROLES:
        raise cli.fail(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    secret, generated = _password(cli, password)
    with cli.database() as factory:
        try:
            with session_scope(factory) as session:
                row = _user_row(service.create_user(session, name, secret, role, now=utcnow()))
        except service.AccountError as exc:
            raise cli.fail(str(exc)) from exc
    if generated:
        row["password"] = secret
    if as_json:
        cli._print_json(row)
        return
    cli.out.print(f"added {row['role']} {row['username']}; they log in at /login of `coffee-scraper serve`")
    if generated:
        cli.out.print(f"generated password (shown once): {secret}", highlight=False, markup=False)


@users_app.command("list")
def users_list(as_json: JsonOpt = False) -> None:
    """Every dashboard user with role, state and last login."""
    cli = _cli()
    with cli.database() as factory, factory() as session:
        rows = [_user_row(u) for u in service.list_users(session)]
    if as_json:
        cli._print_json(rows)
        return
    table = Table("id", "user", "role", "active", "last login")
    for r in rows:
        table.add_row(str(r["id"]), r["username"], r["role"], "yes" if r["active"] else "disabled",
                      str(r["last_login_at"] or "never")[:19])  # fmt: skip
    cli.out.print(table)
    if not rows:
        cli.out.print("no users yet: `coffee-scraper users add NAME --role admin`")


@users_app.command("update")
def users_update(
    name: Annotated[str, typer.Argument(help="The user.")],
    role: Annotated[str | None, typer.Option(help=f"New role: {', '.join(ROLES)}.")] = None,
    active: Annotated[bool | None, typer.Option("--enable/--disable", help="Allow or stop logins.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a user's role, or disable/enable them (disabling ends their sessions)."""
    cli = _cli()
    if role is None and active is None:
        raise cli.fail("nothing to change: give --role ROLE, --enable or --disable")
    with cli.database() as factory:
        try:
            with session_scope(factory) as session:
                user = service.get_user(session, name)
                row = _user_row(service.update_user(session, user, role=role, active=active))
        except service.AccountError as exc:
            raise cli.fail(str(exc)) from exc
    if as_json:
        cli._print_json(row)
    else:
        cli.out.print(f"{row['username']}: {row['role']}, {'active' if row['active'] else 'disabled'}")


@users_app.command("passwd")
def users_passwd(
    name: Annotated[str, typer.Argument(help="The user.")],
    password: PasswordOpt = None,
) -> None:
    """Set a user's password (ends their dashboard sessions; API tokens keep working)."""
    cli = _cli()
    secret, generated = _password(cli, password)
    with cli.database() as factory:
        try:
            with session_scope(factory) as session:
                service.set_password(session, service.get_user(session, name), secret, now=utcnow())
        except service.AccountError as exc:
            raise cli.fail(str(exc)) from exc
    cli.out.print(f"password of {name} changed")
    if generated:
        cli.out.print(f"generated password (shown once): {secret}", highlight=False, markup=False)


@users_app.command("token")
def users_token(
    name: Annotated[str, typer.Argument(help="The user the token acts as (with that user's role).")],
    token_name: Annotated[str, typer.Argument(help="What the token is for, e.g. 'ci' or 'grafana'.")],
    expires_days: Annotated[int | None, typer.Option(help="Days until it expires (default: never).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API token for automation: send it as `Authorization: Bearer TOKEN` to /api/v1 (shown once)."""
    cli = _cli()
    if expires_days is not None and not 1 <= expires_days <= 3650:
        raise cli.fail("--expires-days must be between 1 and 3650")
    now = utcnow()
    with cli.database() as factory:
        try:
            with session_scope(factory) as session:
                user = service.get_user(session, name)
                expires = now + timedelta(days=expires_days) if expires_days else None
                new = service.create_api_token(session, user, token_name, now=now, expires_at=expires)
        except service.AccountError as exc:
            raise cli.fail(str(exc)) from exc
    row = {"id": new.id, "user": name, "name": new.name, "token": new.secret, "expires_at": new.expires_at}
    if as_json:
        cli._print_json(row)
        return
    cli.out.print(f"token {new.id} ({new.name}) for {name}; it is shown once, store it now:", highlight=False)
    sys.stdout.write(new.secret + "\n")


@users_app.command("tokens")
def users_tokens(
    name: Annotated[str | None, typer.Argument(help="Only this user's tokens.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """API tokens (never their secrets): owner, name, created, expiry, last use, revoked."""
    cli = _cli()
    with cli.database() as factory, factory() as session:
        try:
            user = service.get_user(session, name) if name else None
        except service.AccountError as exc:
            raise cli.fail(str(exc)) from exc
        names = {u.id: u.username for u in service.list_users(session)}
        rows: list[dict[str, Any]] = [
            {
                "id": t.id,
                "user": names.get(t.user_id, "?"),
                "name": t.name,
                "prefix": t.prefix,
                "created_at": t.created_at,
                "expires_at": t.expires_at,
                "last_used_at": t.last_used_at,
                "revoked_at": t.revoked_at,
            }
            for t in service.list_tokens(session, user)
        ]
    if as_json:
        cli._print_json(rows)
        return
    table = Table("id", "user", "name", "starts with", "expires", "last used", "state")
    for r in rows:
        table.add_row(str(r["id"]), r["user"], r["name"], r["prefix"] + "…", str(r["expires_at"] or "never")[:19],
                      str(r["last_used_at"] or "never")[:19], "revoked" if r["revoked_at"] else "active")  # fmt: skip
    cli.out.print(table)


@users_app.command("revoke-token")
def users_revoke_token(token_id: Annotated[int, typer.Argument(help="Token id from `users tokens`.")]) -> None:
    """Revoke an API token at once."""
    cli = _cli()
    with cli.database() as factory:
        try:
            with session_scope(factory) as session:
                token = service.revoke_token(session, token_id, now=utcnow())
                name = token.name
        except service.AccountError as exc:
            raise cli.fail(str(exc)) from exc
    cli.out.print(f"token {token_id} ({name}) revoked")
