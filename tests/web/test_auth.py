"""Dashboard authentication: passwords, login sessions and their cookies, CSRF, roles, API tokens, lockout,
the generated session secret and the `coffee-scraper users` commands. Real SQLite databases and real HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from coffee_scraper.accounts import service as accounts
from coffee_scraper.accounts.models import User
from coffee_scraper.catalog import db
from coffee_scraper.settings import get_settings
from coffee_scraper.web import create_app
from coffee_scraper.web.security import WebContext, safe_next
from tests.support import serve_in_thread
from tests.web.conftest import PASSWORDS, Seeded, csrf_of, dashboard_settings, login

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def factory(sqlite_url: str) -> Iterator[sessionmaker[Session]]:
    db.upgrade(sqlite_url)
    engine = db.make_engine(sqlite_url)
    yield db.session_factory(engine)
    engine.dispose()


def test_passwords_are_argon2id_hashes_and_verify(factory: sessionmaker[Session]) -> None:
    with db.session_scope(factory) as session:
        user = accounts.create_user(session, "ana", "correct horse", "viewer", now=T0)
        assert user.password_hash.startswith("$argon2id$")
        assert "correct horse" not in user.password_hash
        assert accounts.verify_password(user.password_hash, "correct horse")
        assert not accounts.verify_password(user.password_hash, "correct horsE")
        assert not accounts.verify_password("not a hash", "correct horse")
        with pytest.raises(accounts.AccountError, match="too short"):
            accounts.create_user(session, "bo", "short", "viewer", now=T0)
        with pytest.raises(accounts.AccountError, match="already exists"):
            accounts.create_user(session, "ANA", "another password", "viewer", now=T0)
        with pytest.raises(accounts.AccountError, match="unknown role"):
            accounts.create_user(session, "cy", "long enough!", "root", now=T0)
        with pytest.raises(accounts.AccountError, match="not a valid username"):
            accounts.create_user(session, "<script>", "long enough!", "viewer", now=T0)


def test_lockout_after_repeated_failures_and_release_after_the_lockout(factory: sessionmaker[Session]) -> None:
    with db.session_scope(factory) as session:
        accounts.create_user(session, "ana", "correct horse", "viewer", now=T0)
    for i in range(3):
        with db.session_scope(factory) as session, pytest.raises(accounts.LoginError, match="wrong username"):
            try:
                accounts.authenticate(session, "ana", "wrong", now=T0 + timedelta(seconds=i), max_failures=3,
                                      lockout_s=300)  # fmt: skip
            finally:
                session.commit()  # the route commits the failure count the same way
    with db.session_scope(factory) as session, pytest.raises(accounts.LoginError, match="locked"):
        accounts.authenticate(session, "ana", "correct horse", now=T0 + timedelta(seconds=10), max_failures=3,
                              lockout_s=300)  # fmt: skip
    with db.session_scope(factory) as session:
        user = accounts.authenticate(session, "ana", "correct horse", now=T0 + timedelta(seconds=303),
                                     max_failures=3, lockout_s=300)  # fmt: skip
        assert user.failed_logins == 0 and user.last_login_at == T0 + timedelta(seconds=303)
    with db.session_scope(factory) as session, pytest.raises(accounts.LoginError, match="wrong username"):
        accounts.authenticate(session, "nobody", "x", now=T0, max_failures=3, lockout_s=300)


def test_sessions_expire_and_end_with_a_password_change(factory: sessionmaker[Session]) -> None:
    with db.session_scope(factory) as session:
        user = accounts.create_user(session, "ana", "correct horse", "operator", now=T0)
        token = accounts.create_session(session, user, now=T0, lifetime_s=3600)
    with factory() as session:
        found = accounts.session_user(session, token, now=T0 + timedelta(minutes=59))
        assert found is not None and found.username == "ana"
        assert accounts.session_user(session, token, now=T0 + timedelta(minutes=61)) is None
        assert accounts.session_user(session, token + "x", now=T0) is None
    with db.session_scope(factory) as session:
        accounts.set_password(session, accounts.get_user(session, "ana"), "new password!", now=T0)
    with factory() as session:
        assert accounts.session_user(session, token, now=T0) is None


def test_api_tokens_are_stored_hashed_expire_and_revoke(factory: sessionmaker[Session]) -> None:
    with db.session_scope(factory) as session:
        user = accounts.create_user(session, "bot", "correct horse", "operator", now=T0)
        new = accounts.create_api_token(session, user, "ci", now=T0, expires_at=T0 + timedelta(days=1))
        assert new.secret.startswith(accounts.TOKEN_PREFIX)
        stored = accounts.list_tokens(session, user)[0]
        assert stored.token_hash != new.secret and new.secret not in stored.token_hash
    with db.session_scope(factory) as session:
        found = accounts.token_user(session, new.secret, now=T0 + timedelta(hours=1))
        assert found is not None and found[0].username == "bot"
        assert found[1].last_used_at == T0 + timedelta(hours=1)
        assert accounts.token_user(session, new.secret, now=T0 + timedelta(days=2)) is None
        accounts.revoke_token(session, new.id, now=T0 + timedelta(hours=2))
    with factory() as session:
        assert accounts.token_user(session, new.secret, now=T0 + timedelta(hours=3)) is None


def test_the_last_admin_cannot_be_demoted_or_disabled(factory: sessionmaker[Session]) -> None:
    with db.session_scope(factory) as session:
        admin = accounts.create_user(session, "root", "correct horse", "admin", now=T0)
        with pytest.raises(accounts.AccountError, match="last active admin"):
            accounts.update_user(session, admin, role="viewer")
        with pytest.raises(accounts.AccountError, match="last active admin"):
            accounts.update_user(session, admin, active=False)
        accounts.create_user(session, "second", "correct horse", "admin", now=T0)
        accounts.update_user(session, admin, role="operator")
        assert admin.role == "operator"


def test_session_secret_is_generated_once_shared_and_overridable(
    factory: sessionmaker[Session], sqlite_url: str, tmp_path: Path
) -> None:
    settings = dashboard_settings(sqlite_url, tmp_path)
    one, two = WebContext(settings, factory), WebContext(settings, factory)
    assert one.secret() == two.secret() and len(one.secret()) >= 48  # generated once, kept in the database
    configured = WebContext(settings.model_copy(update={"dashboard_session_secret": SecretStr("s" * 40)}), factory)
    assert configured.secret() == b"s" * 40
    assert one.csrf_for_session("abc") != configured.csrf_for_session("abc")


def test_safe_next_never_leaves_the_site() -> None:
    assert safe_next("/catalog?roast=light") == "/catalog?roast=light"
    for bad in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "", None, "javascript:alert(1)"):
        assert safe_next(bad) == "/"


# --- over HTTP ------------------------------------------------------------------------------------------


def test_login_sets_a_httponly_samesite_cookie_and_logout_ends_the_session(dash: str) -> None:
    with httpx.Client(base_url=dash, timeout=20, headers={"accept": "text/html"}) as client:
        assert client.get("/catalog").status_code == 303
        assert client.get("/catalog").headers["location"] == "/login?next=/catalog"
        form = client.get("/login?next=/catalog")
        assert 'name="username"' in form.text and 'name="password"' in form.text
        bad = client.post("/login", data={"username": "viewer", "password": "nope", "csrf_token": csrf_of(form.text)})
        assert bad.status_code == 401 and "wrong username or password" in bad.text
        ok = client.post(
            "/login",
            data={
                "username": "viewer",
                "password": PASSWORDS["viewer"],
                "csrf_token": csrf_of(form.text),
                "next": "/catalog",
            },
        )
        assert ok.status_code == 303 and ok.headers["location"] == "/catalog"
        cookie = next(h for h in ok.headers.get_list("set-cookie") if h.startswith("coffee_session="))
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
        assert client.get("/catalog").status_code == 200
        assert client.get("/login").status_code == 303  # already logged in
        page = client.get("/")
        out = client.post("/logout", data={"csrf_token": csrf_of(page.text)})
        assert out.status_code == 303 and out.headers["location"] == "/login"
        client.cookies.clear()
        assert client.get("/").status_code == 303


def test_login_form_needs_its_csrf_token(dash: str) -> None:
    with httpx.Client(base_url=dash, timeout=20) as client:
        response = client.post("/login", data={"username": "admin", "password": PASSWORDS["admin"]})
        assert response.status_code == 400 and "expired" in response.text
        assert "coffee_session" not in response.headers.get("set-cookie", "")


def test_session_writes_need_the_csrf_token(operator: httpx.Client, seeded: Seeded) -> None:
    roasters = operator.get("/api/v1/roasters").json()
    target = next(r for r in roasters if r["name"] == seeded.shop_names[1])
    no_token = operator.post(f"/scraping/roasters/{target['id']}/resume", data={})
    assert no_token.status_code == 403 and "CSRF" in no_token.text
    wrong = operator.post(f"/scraping/roasters/{target['id']}/resume", data={"csrf_token": "0" * 64})
    assert wrong.status_code == 403
    api_no_header = operator.post(f"/api/v1/roasters/{target['id']}/resume")
    assert api_no_header.status_code == 403
    token = csrf_of(operator.get("/scraping").text)
    assert operator.post(f"/scraping/roasters/{target['id']}/resume", data={"csrf_token": token}).status_code == 303
    with_header = operator.post(f"/api/v1/roasters/{target['id']}/resume", headers={"x-csrf-token": token})
    assert with_header.status_code == 200 and with_header.json()["active"] is True


def test_roles_limit_what_each_user_can_do(viewer: httpx.Client, operator: httpx.Client, admin: httpx.Client) -> None:
    token = csrf_of(viewer.get("/scraping").text)
    assert "Add a roaster" not in viewer.get("/scraping").text  # no operator controls for a viewer
    denied = viewer.post("/scraping/roasters", data={"url": "https://x.example", "csrf_token": token})
    assert denied.status_code == 403 and "operator role" in denied.text
    assert viewer.get("/admin/users").status_code == 403
    assert (
        viewer.post("/api/v1/roasters", json={"url": "x.example"}, headers={"x-csrf-token": token}).status_code == 403
    )
    assert operator.get("/admin/users").status_code == 403
    assert "Add a roaster" in operator.get("/scraping").text
    users = admin.get("/admin/users")
    assert users.status_code == 200 and "viewer" in users.text and "Users" in users.text
    assert "/admin/users" not in operator.get("/").text  # the admin menu entry is hidden from others


def test_api_needs_authentication(dash: str) -> None:
    with httpx.Client(base_url=dash, timeout=20) as client:
        response = client.get("/api/v1/coffees")
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
        assert "Bearer" in response.json()["detail"]
        assert client.get("/api/v1/coffees", headers={"authorization": "Bearer csk_not-a-token"}).status_code == 401
        assert client.get("/health").status_code == 200  # operators' endpoints stay open


def test_user_api_tokens_from_the_account_page(dash: str, operator: httpx.Client) -> None:
    page = operator.get("/account")
    created = operator.post("/account/tokens", data={"name": "ci", "csrf_token": csrf_of(page.text)})
    assert created.status_code == 200
    secret = created.text.split('id="new-token">', 1)[1].split("<", 1)[0]
    assert secret.startswith("csk_")
    with httpx.Client(base_url=dash, timeout=20, headers={"authorization": f"Bearer {secret}"}) as bot:
        me = bot.get("/api/v1/me").json()
        assert me == {"username": "operator", "role": "operator", "via": "user_token"}
        assert bot.get("/api/v1/users").status_code == 403  # acts with its user's role
        listed = bot.get("/api/v1/tokens").json()
        token_id = next(t["id"] for t in listed if t["name"] == "ci")
        assert secret not in json.dumps(listed)
        assert operator.get("/account").text.count(secret) == 0  # shown once only
        revoke = operator.post(f"/account/tokens/{token_id}/revoke", data={"csrf_token": csrf_of(page.text)})
        assert revoke.status_code == 200 and "revoked" in revoke.text
        assert bot.get("/api/v1/me").status_code == 401


def test_configured_api_token_acts_as_operator(seeded: Seeded) -> None:
    settings = seeded.settings.model_copy(update={"api_token": SecretStr("configured-token-123")})
    with serve_in_thread(create_app(settings)) as port:
        headers = {"authorization": "Bearer configured-token-123"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20, headers=headers) as client:
            assert client.get("/api/v1/me").json() == {"username": "api-token", "role": "operator", "via": "api_token"}
            assert client.get("/api/v1/roasters").status_code == 200
            assert client.get("/api/v1/users").status_code == 403
            wrong = client.get("/api/v1/me", headers={"authorization": "Bearer configured-token-124"})
            assert wrong.status_code == 401


def test_admin_manages_users_over_the_api(admin: httpx.Client, dash: str) -> None:
    token = csrf_of(admin.get("/").text)
    headers = {"x-csrf-token": token}
    created = admin.post("/api/v1/users", json={"username": "newbie", "password": "newbie-pass-1"}, headers=headers)
    assert created.status_code == 201 and created.json()["role"] == "viewer"
    again = admin.post("/api/v1/users", json={"username": "NEWBIE", "password": "newbie-pass-1"}, headers=headers)
    assert again.status_code == 409
    user_id = created.json()["id"]
    promoted = admin.patch(f"/api/v1/users/{user_id}", json={"role": "operator"}, headers=headers)
    assert promoted.status_code == 200 and promoted.json()["role"] == "operator"
    newbie = login(dash, "newbie", "newbie-pass-1")
    assert newbie.get("/api/v1/me").json()["role"] == "operator"
    disabled = admin.patch(f"/api/v1/users/{user_id}", json={"active": False}, headers=headers)
    assert disabled.status_code == 200
    assert newbie.get("/api/v1/me").status_code == 401  # disabling ended the session
    newbie.close()


def test_users_cli_adds_lists_and_makes_tokens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from coffee_scraper.cli import app

    monkeypatch.setenv("COFFEE_SCRAPER_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("COFFEE_SCRAPER_LOG_DIR", str(tmp_path / "logs"))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        added = runner.invoke(app, ["users", "add", "alice", "--role", "admin", "--password", "alice-pass-1"])
        assert added.exit_code == 0, added.output
        generated = runner.invoke(app, ["users", "add", "bob", "--role", "viewer", "--json"])
        assert generated.exit_code == 0 and len(json.loads(generated.output)["password"]) >= 12
        bad = runner.invoke(app, ["users", "add", "carol", "--role", "root", "--password", "carol-pass-1"])
        assert bad.exit_code == 2 and "unknown role" in bad.output
        dup = runner.invoke(app, ["users", "add", "alice", "--password", "alice-pass-1"])
        assert dup.exit_code == 2 and "already exists" in dup.output
        listed = json.loads(runner.invoke(app, ["users", "list", "--json"]).output)
        assert [(u["username"], u["role"]) for u in listed] == [("alice", "admin"), ("bob", "viewer")]
        token = json.loads(runner.invoke(app, ["users", "token", "alice", "ci", "--json"]).output)
        assert token["token"].startswith("csk_")
        last_admin = runner.invoke(app, ["users", "update", "alice", "--role", "viewer"])
        assert last_admin.exit_code == 2 and "last active admin" in last_admin.output
        engine = db.make_engine(f"sqlite:///{tmp_path / 'cli.db'}")
        with db.session_factory(engine)() as session:
            found = accounts.token_user(session, token["token"], now=datetime.now(UTC))
            assert found is not None and isinstance(found[0], User) and found[0].username == "alice"
        engine.dispose()
    finally:
        get_settings.cache_clear()


def test_incident_api_accepts_dashboard_sessions_with_the_right_role(
    viewer: httpx.Client, operator: httpx.Client
) -> None:
    """web/auth.py's TokenAuth (incident endpoints) takes a dashboard session: viewers read, operators write."""
    listed = viewer.get("/api/v1/incidents")
    assert listed.status_code == 200, listed.text
    viewer_token = csrf_of(viewer.get("/").text)
    denied = viewer.post("/api/v1/incidents/INC-20990101-001/ack", json={}, headers={"x-csrf-token": viewer_token})
    assert denied.status_code == 403 and "operator role" in denied.text
    no_csrf = operator.post("/api/v1/incidents/INC-20990101-001/ack", json={})
    assert no_csrf.status_code == 403 and "CSRF" in no_csrf.text
    token = csrf_of(operator.get("/").text)
    passed = operator.post("/api/v1/incidents/INC-20990101-001/ack", json={}, headers={"x-csrf-token": token})
    assert passed.status_code == 404  # authorized: the incident simply does not exist
