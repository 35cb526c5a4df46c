"""Structured logs: every line of a roaster run carries roaster and run_id; secrets are masked; ./logs fallback."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from coffee_scraper.catalog import db, service
from coffee_scraper.demo.catalog import make_shopify_products
from coffee_scraper.demo.server import DemoServer, DemoShop
from coffee_scraper.observability.logging import configure_logging, get_logger
from coffee_scraper.pipeline.run import run_many
from coffee_scraper.settings import Settings


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_run_lines_carry_roaster_and_run_id(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    settings = Settings(
        database_url=url,
        log_dir=tmp_path / "logs",
        log_format="json",
        allow_private_addresses=True,
        request_delay_s=0.01,
        request_jitter_s=0.0,
        max_attempts=2,
        shopify_page_limit=25,
    )
    assert configure_logging(settings) == (tmp_path / "logs").absolute()
    db.upgrade(url)
    engine = db.make_engine(url)
    factory = db.session_factory(engine)
    name = f"log-{uuid.uuid4().hex[:8]}"
    with DemoServer([DemoShop(name, "shopify", make_shopify_products(30, seed=3))]) as shop:
        with db.session_scope(factory) as session:
            service.add_roaster(session, name, shop.url(name), platform="shopify", currency="INR")
        [report] = asyncio.run(run_many([name], "full", settings=settings, factory=factory))
    engine.dispose()
    assert report.status == "ok", report.errors
    get_logger("app").info("after_the_run")

    records = lines(tmp_path / "logs" / "app.log")
    ours = [r for r in records if r.get("roaster") == name]
    events = [r["event"] for r in ours]
    assert "run_started" in events and "run_finished" in events, records
    assert all(r["run_id"] == report.run_id for r in ours)
    finished = next(r for r in ours if r["event"] == "run_finished")
    assert finished["status"] == "ok" and finished["pages"] == report.pages and finished["level"] == "info"
    # the binding ends with the run
    after = next(r for r in records if r["event"] == "after_the_run")
    assert "roaster" not in after and "run_id" not in after


def test_secrets_in_log_fields_are_masked(tmp_path: Path) -> None:
    configure_logging(Settings(log_dir=tmp_path / "logs", log_format="json"))
    get_logger("app").info(
        "connecting",
        token="tok-abc-123",
        password="pw-xyz-789",
        sentry_dsn="https://key:dsn-pass-456@sentry.example/1",
        database="postgresql+psycopg://scraper:db-pass-000@db.internal/catalog",
        shop="https://beans.example/products.json",
    )
    text = (tmp_path / "logs" / "app.log").read_text()
    for secret in ("tok-abc-123", "pw-xyz-789", "dsn-pass-456", "db-pass-000"):
        assert secret not in text
    [record] = [r for r in lines(tmp_path / "logs" / "app.log") if r["event"] == "connecting"]
    assert record["token"] == record["password"] == record["sentry_dsn"] == "***"
    assert record["database"] == "postgresql+psycopg://scraper:***@db.internal/catalog"
    assert record["shop"] == "https://beans.example/products.json"


def test_unwritable_log_dir_falls_back_to_cwd_logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a regular file: nothing can be created below it")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    used = configure_logging(Settings(log_dir=blocker / "logs", log_format="json"))
    assert used == cwd / "logs"
    get_logger("app").info("fell_back")
    assert any(r["event"] == "fell_back" for r in lines(cwd / "logs" / "app.log"))
    assert blocker.is_file()
