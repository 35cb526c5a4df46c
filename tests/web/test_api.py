"""``/api/v1`` for roasters, runs, coffees, prices, users and tokens: filters against the data, run-now against a
real demo shop, both databases for the catalog queries, and schemathesis against ``/openapi.json`` (no 500s).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from coffee_scraper.accounts import service as accounts
from coffee_scraper.catalog import db, service
from coffee_scraper.demo.catalog import make_shopify_products
from coffee_scraper.demo.server import DemoServer, DemoShop
from coffee_scraper.pipeline.run import run_many
from coffee_scraper.web import create_app
from tests.support import serve_in_thread
from tests.web.conftest import Seeded, csrf_of, dashboard_settings

MY_PATHS = r"^/api/v1/(coffees|roasters|runs|overview|me|users|tokens)"


def api_token(url: str, username: str) -> str:
    engine = db.make_engine(url)
    with db.session_scope(db.session_factory(engine)) as session:
        user = accounts.get_user(session, username)
        token = accounts.create_api_token(session, user, f"test-{time.monotonic_ns()}", now=datetime.now(UTC))
    engine.dispose()
    return token.secret


@pytest.fixture
def bot(dash: str, seeded: Seeded) -> Iterator[httpx.Client]:
    """An operator's API token client (no cookies, no CSRF)."""
    headers = {"authorization": f"Bearer {api_token(seeded.url, 'operator')}"}
    with httpx.Client(base_url=dash, timeout=30, headers=headers) as client:
        yield client


def test_coffee_filters_match_the_data(bot: httpx.Client) -> None:
    everything = bot.get("/api/v1/coffees", params={"limit": 500}).json()
    items = everything["items"]
    assert everything["total"] == len(items) > 20
    process = next(c["process"] for c in items if c["process"])
    only = bot.get("/api/v1/coffees", params={"process": process, "limit": 500}).json()
    assert {c["id"] for c in only["items"]} == {c["id"] for c in items if c["process"] == process}
    in_stock = bot.get("/api/v1/coffees", params={"in_stock": True, "limit": 500}).json()["items"]
    assert in_stock and all(c["in_stock"] for c in in_stock)

    per_250 = sorted(c["per_250g_minor"] for c in items if c["per_250g_minor"])
    low, high = per_250[len(per_250) // 4], per_250[3 * len(per_250) // 4]
    ranged = bot.get(
        "/api/v1/coffees", params={"min_per_250g": low / 100, "max_per_250g": high / 100, "limit": 500}
    ).json()["items"]
    assert ranged
    for c in ranged:  # some active variant with a known weight lies within the bounds
        detail = bot.get(f"/api/v1/coffees/{c['id']}").json()
        assert any(
            v["per_250g_minor"] is not None and low - 1 <= v["per_250g_minor"] <= high + 1
            for v in detail["variants"]
            if v["status"] == "active"
        )
    outside = {c["id"] for c in items} - {c["id"] for c in ranged}
    for coffee_id in list(outside)[:10]:
        detail = bot.get(f"/api/v1/coffees/{coffee_id}").json()
        assert not any(
            v["per_250g_minor"] is not None and low + 1 <= v["per_250g_minor"] <= high - 1
            for v in detail["variants"]
            if v["status"] == "active" and v["price_minor"] > 0
        )
    cheapest_first = bot.get("/api/v1/coffees", params={"sort": "price_250", "limit": 500}).json()["items"]
    keys = [c["per_250g_minor"] for c in cheapest_first if c["per_250g_minor"] is not None]
    assert keys == sorted(keys)
    page2 = bot.get("/api/v1/coffees", params={"limit": 10, "offset": 10, "sort": "name"}).json()
    page1 = bot.get("/api/v1/coffees", params={"limit": 10, "sort": "name"}).json()
    assert not {c["id"] for c in page1["items"]} & {c["id"] for c in page2["items"]}


def test_coffee_detail_and_price_history(bot: httpx.Client, seeded: Seeded) -> None:
    items = bot.get("/api/v1/coffees", params={"limit": 500}).json()["items"]
    changed = None
    for c in items:
        prices = bot.get(f"/api/v1/coffees/{c['id']}/prices").json()
        if len(prices) > len({p["variant_id"] for p in prices}):
            changed = (c, prices)
            break
    assert changed is not None, "the seeded second run changed some prices"
    coffee, prices = changed
    detail = bot.get(f"/api/v1/coffees/{coffee['id']}").json()
    variant_ids = {v["id"] for v in detail["variants"]}
    assert {p["variant_id"] for p in prices} <= variant_ids
    for v in detail["variants"]:
        history = [p for p in prices if p["variant_id"] == v["id"]]
        if history and v["status"] == "active":
            assert history[-1]["price_minor"] == v["price_minor"]  # the newest observation is the current price
    assert bot.get("/api/v1/coffees/999999").status_code == 404
    assert bot.get("/api/v1/coffees/99999999999").status_code == 422


def test_runs_and_roasters(bot: httpx.Client, seeded: Seeded) -> None:
    roasters = bot.get("/api/v1/roasters").json()
    seeded_rows = [r for r in roasters if r["name"] in seeded.shop_names]
    assert len(seeded_rows) == 2
    for r in seeded_rows:
        assert r["last_run"]["status"] in {"ok", "partial"} and r["coffees"] > 0
        assert r["robots_allowed"] is True and r["circuit_state"] == "closed"
        assert r["full_cadence"] == seeded.settings.full_cadence and r["next_full_run_at"] is not None
    runs = bot.get("/api/v1/runs", params={"limit": 100}).json()
    assert len(runs) >= 4 and runs == sorted(runs, key=lambda r: -r["id"])
    partial = bot.get("/api/v1/runs", params={"status": "partial"}).json()
    assert seeded.quarantine_run_id in {r["id"] for r in partial}
    detail = bot.get(f"/api/v1/runs/{seeded.quarantine_run_id}").json()
    assert detail["pages"] and all(p["status"] == 200 for p in detail["pages"] if p["kind"] == "products")
    assert detail["quarantined_products"][0]["raw"]["title"].startswith("<script>")
    assert bot.get("/api/v1/runs/999999").status_code == 404


def test_add_pause_and_run_a_roaster_against_a_demo_shop(bot: httpx.Client) -> None:
    products = make_shopify_products(12, seed=21)
    with DemoServer([DemoShop("api", "shopify", products)]) as demo:
        created = bot.post("/api/v1/roasters", json={"url": demo.url("api"), "name": "API Roaster", "currency": "INR"})
        assert created.status_code == 201, created.text
        roaster = created.json()
        assert roaster["base_url"] == demo.url("api").rstrip("/") and roaster["last_run"] is None
        assert bot.post("/api/v1/roasters", json={"url": demo.url("api")}).status_code == 409
        assert bot.post("/api/v1/roasters", json={"url": "ftp://x"}).status_code == 400
        assert bot.post("/api/v1/roasters", json={"url": "x.example", "currency": "I1R"}).status_code == 400

        paused = bot.post(f"/api/v1/roasters/{roaster['id']}/pause", json={"reason": "maintenance"}).json()
        assert paused["active"] is False and paused["paused_reason"] == "maintenance"
        refused = bot.post(f"/api/v1/roasters/{roaster['id']}/run", json={"mode": "full"})
        assert refused.status_code == 409 and "paused" in refused.json()["detail"]
        assert bot.post(f"/api/v1/roasters/{roaster['id']}/resume").json()["active"] is True

        started = bot.post(f"/api/v1/roasters/{roaster['id']}/run", json={"mode": "full"})
        assert started.status_code == 202 and started.json()["started"] is True
        finished = None
        for _ in range(300):  # the run happens in the background; look until it is recorded as finished
            runs = bot.get("/api/v1/runs", params={"roaster_id": roaster["id"]}).json()
            if runs and runs[0]["status"] != "running":
                finished = runs[0]
                break
            time.sleep(0.1)
        assert finished is not None and finished["status"] == "ok", finished
        assert finished["products_seen"] == 12
        after = bot.get(f"/api/v1/roasters/{roaster['id']}").json()
        assert after["last_run"]["id"] == finished["id"] and after["platform"] == "shopify"
        coffees = bot.get("/api/v1/coffees", params={"roaster": "API Roaster", "include_all": True}).json()
        assert coffees["total"] == 12


def test_token_endpoints(bot: httpx.Client, admin: httpx.Client, seeded: Seeded) -> None:
    made = bot.post("/api/v1/tokens", json={"name": "nightly", "expires_in_days": 7})
    assert made.status_code == 201
    secret = made.json()["token"]
    mine = bot.get("/api/v1/tokens").json()
    assert {t["user"] for t in mine} == {"operator"} and "nightly" in {t["name"] for t in mine}
    assert secret not in str(mine)
    api_token(seeded.url, "viewer")
    everyone = admin.get("/api/v1/tokens").json()
    foreign = next(t for t in everyone if t["user"] == "viewer")
    assert bot.delete(f"/api/v1/tokens/{foreign['id']}").status_code == 404  # only their own
    revoked = bot.delete(f"/api/v1/tokens/{made.json()['id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    with httpx.Client(base_url=str(bot.base_url), headers={"authorization": f"Bearer {secret}"}) as gone:
        assert gone.get("/api/v1/me").status_code == 401
    token = csrf_of(admin.get("/").text)
    assert admin.delete("/api/v1/tokens/999999", headers={"x-csrf-token": token}).status_code == 404


def _seed_small(url: str, tmp: Path) -> None:
    settings = dashboard_settings(url, tmp)
    engine = db.make_engine(url)
    factory = db.session_factory(engine)
    with DemoServer([DemoShop("pg", "shopify", make_shopify_products(15, seed=5))]) as demo:
        with db.session_scope(factory) as session:
            service.add_roaster(session, "Both DBs", demo.url("pg"), currency="INR")
            accounts.create_user(session, "root", "root-password-1", "admin", now=datetime.now(UTC))
        asyncio.run(run_many(["Both DBs"], "full", settings=settings, factory=factory))
    engine.dispose()


def test_catalog_api_on_both_databases(db_url: str, tmp_path: Path) -> None:
    db.upgrade(db_url)
    _seed_small(db_url, tmp_path)
    token = api_token(db_url, "root")
    with serve_in_thread(create_app(dashboard_settings(db_url, tmp_path))) as port:
        headers = {"authorization": f"Bearer {token}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30) as client:
            page = client.get("/api/v1/coffees", params={"sort": "price_250", "max_per_250g": 100000}).json()
            assert page["total"] > 0 and page["items"][0]["roaster"] == "Both DBs"
            keys = [c["per_250g_minor"] for c in page["items"] if c["per_250g_minor"] is not None]
            assert keys == sorted(keys)
            assert client.get("/api/v1/coffees", params={"q": "\x00"}).status_code == 422
            coffee = page["items"][0]["id"]
            assert client.get(f"/api/v1/coffees/{coffee}/prices").json()
            roasters = client.get("/api/v1/roasters").json()
            assert roasters[0]["last_run"]["status"] == "ok"
            run = client.get(f"/api/v1/runs/{roasters[0]['last_run']['id']}").json()
            assert run["pages_fetched"] >= 1 and run["pages"]
            overview = client.get("/api/v1/overview").json()
            assert overview["checks"]["database"]["ok"] and overview["coffees_active"] == page["total"]
            assert overview["roasters_total"] == 1 and overview["last_runs"][0]["roaster"] == "Both DBs"
            html = client.get("/catalog", headers={"accept": "text/html"})
            assert html.status_code == 200 and "Both DBs" in html.text  # a bearer token opens the pages too


# --- schemathesis against /openapi.json ---------------------------------------------------------------------


def test_api_never_answers_500(seeded: Seeded) -> None:
    """Every operation of ours in /openapi.json, fuzzed from its schema (valid and odd inputs): no 5xx.

    Run-now is left out: generated roaster URLs must never be fetched. Run in-process through ASGI.
    """
    app = create_app(seeded.settings)
    headers = {"Authorization": f"Bearer {api_token(seeded.url, 'admin')}"}
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    schema = schema.include(path_regex=MY_PATHS).exclude(path_regex=r"/run$")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15, [str(o) for o in operations]
    negative_runs = 0
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(mode))
            @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
            def fuzz(case: Any) -> None:
                response = case.call(headers=headers)
                case.validate_response(response, checks=[not_a_server_error])

            try:
                fuzz()
            except Unsatisfiable:
                if mode is GenerationMode.POSITIVE:
                    raise
                continue  # an operation without parameters or body has nothing invalid to send
            negative_runs += mode is GenerationMode.NEGATIVE
    assert negative_runs >= 10
