"""Fixtures of the dashboard tests: a catalog filled by real scrapes of demo shops, users of each role, the app
served by uvicorn on 127.0.0.1, and logged-in HTTP clients.

The seeded catalog is built once per test session (two full runs of two demo shops, prices changed between them,
one product quarantined, one product whose title is an XSS payload); tests that change data make their own rows.
The scheduler is off in these apps: nothing fetches a shop unless a test asks for it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from coffee_scraper.accounts import service as accounts
from coffee_scraper.catalog import db, service
from coffee_scraper.demo.catalog import make_shopify_products, make_woocommerce_products, mutate_prices
from coffee_scraper.demo.server import DemoServer, DemoShop
from coffee_scraper.pipeline.run import run_many
from coffee_scraper.settings import Settings
from coffee_scraper.web import create_app
from tests.support import fast_settings, serve_in_thread

# The normalizer strips tags from titles; what it keeps ("<3", "&", quotes) and the raw JSON of a quarantined
# product (shown on the run page) reach the pages as shop text, and must render as text.
XSS_TITLE = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2"> Evil Estate <3 & "co"'
PASSWORDS = {"admin": "admin-password-1", "operator": "operator-password-1", "viewer": "viewer-password-1"}
REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts"


@dataclass
class Seeded:
    url: str
    settings: Settings
    shop_names: list[str]  # roaster names of the scraped demo shops
    xss_coffee_id: int
    quarantine_run_id: int
    roaster_id: int  # of the first shop


def dashboard_settings(url: str, tmp: Path, **extra: Any) -> Settings:
    """Fast politeness for loopback shops, no scheduler, logs in the test's directory."""
    return fast_settings(url, log_dir=tmp / "logs", scheduler_mode="off", **extra)


def add_users(url: str) -> None:
    engine = db.make_engine(url)
    now = datetime.now(UTC)
    with db.session_scope(db.session_factory(engine)) as session:
        for role, password in PASSWORDS.items():
            accounts.create_user(session, role, password, role, now=now)
    engine.dispose()


def seed_catalog(url: str, settings: Settings) -> Seeded:
    """Two demo shops scraped twice (prices changed in between): coffees, variants, price history, runs."""
    shopify = make_shopify_products(30, seed=11, vendor="Seeded Shopify")
    shopify[0] = {**shopify[0], "title": XSS_TITLE}
    shopify[1] = {**shopify[1], "title": XSS_TITLE, "variants": []}  # quarantined: no variants
    woo = make_woocommerce_products(20, seed=12)
    engine = db.make_engine(url)
    factory = db.session_factory(engine)
    names = ["Seeded Shopify", "Seeded Woo"]
    with DemoServer([DemoShop("s", "shopify", shopify), DemoShop("w", "woocommerce", woo)]) as demo:
        with db.session_scope(factory) as session:
            roaster_id = service.add_roaster(session, names[0], demo.url("s"), platform="auto", currency="INR").id
            service.add_roaster(session, names[1], demo.url("w"), platform="auto")
        first = asyncio.run(run_many(names, "full", settings=settings, factory=factory))
        demo.set_products("s", mutate_prices(shopify, fraction=0.5, seed=3))
        demo.set_products("w", mutate_prices(woo, fraction=0.5, seed=4))
        asyncio.run(run_many(names, "full", settings=settings, factory=factory))
    with factory() as session:
        stmt = service.coffees_query(search="evil estate")
        xss = session.scalars(stmt).first()
        assert xss is not None, "the XSS product was not stored"
        xss_id = xss.id
    engine.dispose()
    return Seeded(url, settings, names, xss_id, first[0].run_id, roaster_id)


@pytest.fixture(scope="session")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    tmp = tmp_path_factory.mktemp("dashboard")
    url = f"sqlite:///{tmp / 'catalog.db'}"
    db.upgrade(url)
    add_users(url)
    settings = dashboard_settings(url, tmp)
    return seed_catalog(url, settings)


@pytest.fixture(scope="session")
def dash(seeded: Seeded) -> Iterator[str]:
    """The app on the seeded database, served on 127.0.0.1; yields its base URL."""
    with serve_in_thread(create_app(seeded.settings)) as port:
        yield f"http://127.0.0.1:{port}"


CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def login(base: str, username: str, password: str | None = None) -> httpx.Client:
    """An httpx client logged in through the real login form (cookie jar kept)."""
    client = httpx.Client(base_url=base, timeout=20, headers={"accept": "text/html"})
    form = client.get("/login")
    assert form.status_code == 200
    response = client.post(
        "/login",
        data={
            "username": username,
            "password": password or PASSWORDS[username],
            "csrf_token": csrf_of(form.text),
            "next": "/",
        },
    )
    assert response.status_code == 303, response.text[:500]
    return client


@pytest.fixture
def admin(dash: str) -> Iterator[httpx.Client]:
    client = login(dash, "admin")
    yield client
    client.close()


@pytest.fixture
def operator(dash: str) -> Iterator[httpx.Client]:
    client = login(dash, "operator")
    yield client
    client.close()


@pytest.fixture
def viewer(dash: str) -> Iterator[httpx.Client]:
    client = login(dash, "viewer")
    yield client
    client.close()
