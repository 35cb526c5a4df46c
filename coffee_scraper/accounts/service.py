"""Every query on the accounts tables: users and passwords, login sessions, API tokens, the session secret.

No HTTP here: ``web/security.py`` turns cookies and headers into calls of these functions. Time is injected
(``now``) so lockouts and expiries are testable without waiting.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from coffee_scraper.accounts.models import ROLES, ApiToken, AppSecret, User, UserSession

# argon2id with OWASP's first recommended profile (19 MiB, 2 passes, 1 lane): about 30-60 ms per hash here.
# The parameters are stored in each hash, so changing them rehashes at the next login.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)
_DUMMY_HASH = _HASHER.hash("no user has this password: equalises the time of unknown-user logins")
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
TOKEN_PREFIX = "csk_"  # every user API token starts with this, so leaked ones are easy to grep for
SESSION_SECRET_NAME = "session_secret"
LAST_USED_RESOLUTION = timedelta(minutes=1)  # a token's last_used_at is written at most this often


class AccountError(ValueError):
    """An account operation cannot be done as asked; the message says what to do instead."""


class LoginError(Exception):
    """Wrong username or password, a disabled user or a locked account (the message is safe to show)."""


def role_rank(role: str) -> int:
    """viewer 0 < operator 1 < admin 2; unknown roles rank below everything."""
    return ROLES.index(role) if role in ROLES else -1


def has_role(role: str, needed: str) -> bool:
    return role_rank(role) >= role_rank(needed) >= 0


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# --- passwords and users ------------------------------------------------------------------------------


def hash_password(password: str) -> str:
    check_password(password)
    return _HASHER.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        return bool(_HASHER.verify(stored_hash, password))
    except (VerificationError, InvalidHashError):
        return False


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"the password is too short: use at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AccountError(f"the password is too long: use at most {MAX_PASSWORD_LENGTH} characters")


def check_role(role: str) -> str:
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    return role


def create_user(session: Session, username: str, password: str, role: str, *, now: datetime) -> User:
    """A new active user; usernames are unique (case-insensitively)."""
    username = username.strip()
    if not USERNAME_RE.match(username):
        raise AccountError(
            f"{username!r} is not a valid username: 1-64 letters, digits, '_', '.', '@' or '-', "
            "starting with a letter or digit"
        )
    check_role(role)
    if session.scalar(select(User.id).where(func.lower(User.username) == username.lower())) is not None:
        raise AccountError(f"a user named {username!r} already exists; `coffee-scraper users list` shows them")
    user = User(
        username=username,
        password_hash=hash_password(password),
        role=role,
        active=True,
        failed_logins=0,
        created_at=now,
        password_changed_at=now,
    )
    session.add(user)
    session.flush()
    return user


def get_user(session: Session, name_or_id: str | int) -> User:
    if isinstance(name_or_id, int):
        user = session.get(User, name_or_id)
    else:
        user = session.scalar(select(User).where(func.lower(User.username) == name_or_id.strip().lower()))
    if user is None:
        raise AccountError(f"no user {name_or_id!r}; `coffee-scraper users list` shows the known ones")
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def count_users(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(User)) or 0)


def set_password(session: Session, user: User, password: str, *, now: datetime) -> None:
    """A new password ends every login session of the user (API tokens stay)."""
    user.password_hash = hash_password(password)
    user.password_changed_at = now
    user.failed_logins, user.locked_until = 0, None
    session.execute(delete(UserSession).where(UserSession.user_id == user.id))


def update_user(session: Session, user: User, *, role: str | None = None, active: bool | None = None) -> User:
    """Change a user's role or disable/enable them; the last active admin cannot be demoted or disabled."""
    if role is not None:
        check_role(role)
    losing_admin = user.role == "admin" and user.active and ((role and role != "admin") or active is False)
    if losing_admin:
        admins = session.scalar(
            select(func.count()).select_from(User).where(User.role == "admin", User.active.is_(True))
        )
        if (admins or 0) <= 1:
            raise AccountError(
                f"{user.username} is the last active admin; make another user admin first "
                "(`coffee-scraper users add NAME --role admin`)"
            )
    if role is not None:
        user.role = role
    if active is not None:
        user.active = active
        if not active:
            session.execute(delete(UserSession).where(UserSession.user_id == user.id))
    session.flush()
    return user


def authenticate(
    session: Session,
    username: str,
    password: str,
    *,
    now: datetime,
    max_failures: int,
    lockout_s: float,
) -> User:
    """The user for these credentials; after ``max_failures`` wrong passwords in a row the account locks.

    Unknown users cost a hash verification too, so response time does not tell which usernames exist.
    """
    user = session.scalar(select(User).where(func.lower(User.username) == username.strip().lower()))
    if user is None:
        verify_password(_DUMMY_HASH, password)
        raise LoginError("wrong username or password")
    if user.locked_until is not None and user.locked_until > now:
        verify_password(_DUMMY_HASH, password)
        raise LoginError("too many failed logins: this account is locked for a few minutes; try again later")
    if not verify_password(user.password_hash, password):
        user.failed_logins += 1
        if user.failed_logins >= max_failures:
            user.locked_until = now + timedelta(seconds=lockout_s)
            user.failed_logins = 0
        raise LoginError("wrong username or password")
    if not user.active:
        raise LoginError("this account is disabled; ask an admin to enable it")
    if _HASHER.check_needs_rehash(user.password_hash):
        user.password_hash = _HASHER.hash(password)
    user.failed_logins, user.locked_until, user.last_login_at = 0, None, now
    return user


# --- sessions -----------------------------------------------------------------------------------------


def create_session(
    session: Session, user: User, *, now: datetime, lifetime_s: float, user_agent: str | None = None
) -> str:
    """A new login session; returns the random token for the cookie (only its hash is stored)."""
    token = secrets.token_urlsafe(32)
    session.add(
        UserSession(
            user_id=user.id,
            token_hash=token_hash(token),
            created_at=now,
            expires_at=now + timedelta(seconds=lifetime_s),
            last_seen_at=now,
            user_agent=(user_agent or "")[:300] or None,
        )
    )
    session.execute(delete(UserSession).where(UserSession.expires_at <= now))  # expired sessions go at each login
    session.flush()
    return token


def session_user(session: Session, token: str, *, now: datetime) -> User | None:
    """The active user of a live session token, else None."""
    row = session.execute(
        select(UserSession, User)
        .join(User, User.id == UserSession.user_id)
        .where(UserSession.token_hash == token_hash(token))
    ).first()
    if row is None:
        return None
    user_session, user = row
    if user_session.expires_at <= now or not user.active:
        return None
    return user


def end_session(session: Session, token: str) -> bool:
    result = session.execute(delete(UserSession).where(UserSession.token_hash == token_hash(token)))
    return bool(result.rowcount)  # type: ignore[attr-defined]


# --- API tokens ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewToken:
    """A freshly created API token: ``secret`` is shown once and never stored."""

    id: int
    name: str
    secret: str
    prefix: str
    expires_at: datetime | None


def create_api_token(
    session: Session, user: User, name: str, *, now: datetime, expires_at: datetime | None = None
) -> NewToken:
    name = name.strip()
    if not name or len(name) > 100:
        raise AccountError("give the token a name of 1-100 characters, e.g. 'prometheus' or 'ci'")
    if expires_at is not None and expires_at <= now:
        raise AccountError("the token's expiry is in the past; give a future date or none")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        user_id=user.id,
        name=name,
        prefix=secret[: len(TOKEN_PREFIX) + 6],
        token_hash=token_hash(secret),
        created_at=now,
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return NewToken(id=row.id, name=row.name, secret=secret, prefix=row.prefix, expires_at=expires_at)


def token_user(session: Session, token: str, *, now: datetime) -> tuple[User, ApiToken] | None:
    """The active user behind a live (not revoked, not expired) API token; notes when it was last used."""
    row = session.execute(
        select(ApiToken, User).join(User, User.id == ApiToken.user_id).where(ApiToken.token_hash == token_hash(token))
    ).first()
    if row is None:
        return None
    api_token, user = row
    if api_token.revoked_at is not None or not user.active:
        return None
    if api_token.expires_at is not None and api_token.expires_at <= now:
        return None
    if api_token.last_used_at is None or now - api_token.last_used_at >= LAST_USED_RESOLUTION:
        api_token.last_used_at = now
    return user, api_token


def list_tokens(session: Session, user: User | None = None) -> list[ApiToken]:
    """Every token (of one user, when given), newest first, revoked ones included."""
    stmt = select(ApiToken).order_by(ApiToken.id.desc())
    if user is not None:
        stmt = stmt.where(ApiToken.user_id == user.id)
    return list(session.scalars(stmt))


def revoke_token(session: Session, token_id: int, *, now: datetime, owner: User | None = None) -> ApiToken:
    """Revoke a token (only the owner's, when ``owner`` is given); revoking twice is harmless."""
    row = session.get(ApiToken, token_id)
    if row is None or (owner is not None and row.user_id != owner.id):
        raise AccountError(f"no API token {token_id}; the account page lists your tokens")
    if row.revoked_at is None:
        row.revoked_at = now
    return row


# --- generated secrets --------------------------------------------------------------------------------


def app_secret(session: Session, name: str = SESSION_SECRET_NAME, *, now: datetime) -> str:
    """A random secret generated on first use and kept in the database, so every process shares it."""
    value = session.scalar(select(AppSecret.value).where(AppSecret.name == name))
    if value is not None:
        return value
    value = secrets.token_urlsafe(48)
    try:
        with session.begin_nested():
            session.add(AppSecret(name=name, value=value, created_at=now))
    except IntegrityError:  # another process made it first: use theirs
        stored = session.scalar(select(AppSecret.value).where(AppSecret.name == name))
        assert stored is not None
        return stored
    return value


__all__ = [
    "ROLES",
    "AccountError",
    "LoginError",
    "NewToken",
    "app_secret",
    "authenticate",
    "check_password",
    "check_role",
    "count_users",
    "create_api_token",
    "create_session",
    "create_user",
    "end_session",
    "get_user",
    "has_role",
    "hash_password",
    "list_tokens",
    "list_users",
    "revoke_token",
    "role_rank",
    "session_user",
    "set_password",
    "token_user",
    "update_user",
    "verify_password",
]
