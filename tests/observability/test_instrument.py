"""Fetch events, page commits and runs → metric updates; the psutil collector reads live values.

REGISTRY is process-global, so every assertion is on a delta (after minus before) or on labels unique to a test.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session, sessionmaker

from coffee_scraper.catalog import db, service
from coffee_scraper.demo.catalog import make_shopify_products
from coffee_scraper.demo.server import DemoServer, DemoShop, Fault
from coffee_scraper.observability import instrument
from coffee_scraper.observability.metrics import REGISTRY
from coffee_scraper.observability.system import SystemCollector, watched_paths
from coffee_scraper.pipeline.run import run_many
from coffee_scraper.settings import Settings
from coffee_scraper.storefronts.types import RequestEvent
from tests.support import fast_settings


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def factory(sqlite_url: str) -> Any:
    db.upgrade(sqlite_url)
    engine = db.make_engine(sqlite_url)
    yield db.session_factory(engine)
    engine.dispose()


def _event(origin: str, result: str, **kw: Any) -> RequestEvent:
    base: dict[str, Any] = dict(
        origin=origin, url=origin + "/products.json", status=200, elapsed_s=0.2, bytes=0, attempt=1
    )
    base.update(kw)
    return RequestEvent(result=result, **base)  # type: ignore[arg-type]


def test_request_events_update_fetch_metrics_under_the_roaster_name() -> None:
    name = f"r-{uuid.uuid4().hex[:8]}"
    origin = f"http://{name}.test:8080"
    instrument.label_shop(origin + "/", name, "shopify")
    before = value("coffee_scraper_fetch_duration_seconds_count", roaster=name)
    instrument.record_request_event(_event(origin, "ok", bytes=1234))
    instrument.record_request_event(_event(origin, "retry", status=503, retry_after_s=0.5))
    instrument.record_request_event(_event(origin, "rate_limited", status=429, retry_after_s=1.0))
    instrument.record_request_event(_event(origin, "rate_limited", status=429))  # last try: not retried
    instrument.record_request_event(
        _event(origin, "rate_limited", status=429, retry_after_s=9999.0, error="retry_after_too_long")
    )
    assert value("coffee_scraper_fetch_requests_total", roaster=name, platform="shopify", result="ok") == 1
    assert value("coffee_scraper_fetch_requests_total", roaster=name, platform="shopify", result="rate_limited") == 3
    assert value("coffee_scraper_fetch_bytes_total", roaster=name) == 1234
    assert value("coffee_scraper_fetch_retries_total", roaster=name) == 2
    assert value("coffee_scraper_fetch_rate_limited_total", roaster=name) == 3
    assert value("coffee_scraper_fetch_duration_seconds_count", roaster=name) - before == 5


def test_unlabelled_origin_falls_back_to_its_host() -> None:
    host = f"h{uuid.uuid4().hex[:8]}.test"
    instrument.record_request_event(_event(f"https://{host}", "error", status=None, error="ConnectError"))
    assert value("coffee_scraper_fetch_requests_total", roaster=host, platform="unknown", result="error") == 1


def test_storage_operation_counts_errors_and_reraises() -> None:
    op = f"op-{uuid.uuid4().hex[:6]}"
    with instrument.storage_operation(op):
        pass
    with pytest.raises(RuntimeError), instrument.storage_operation(op):
        raise RuntimeError("disk full")
    assert value("coffee_scraper_storage_operations_total", operation=op, result="ok") == 1
    assert value("coffee_scraper_storage_operations_total", operation=op, result="error") == 1


def _register(factory: sessionmaker[Session], server: DemoServer, shop: str, name: str) -> None:
    with db.session_scope(factory) as session:
        service.add_roaster(session, name, server.url(shop), platform="auto", currency="INR")


def test_pipeline_counts_products_runs_and_fetches(factory: sessionmaker[Session], sqlite_url: str) -> None:
    name = f"metrics-{uuid.uuid4().hex[:8]}"
    products = make_shopify_products(30, seed=5)
    bad = {**products[3], "title": "  "}  # fails validation: quarantined
    shop = DemoShop(
        "s",
        "shopify",
        [*products[:3], bad, *products[4:]],
        faults=[Fault("status", path_prefix="/products.json", times=1, status=503)],
    )
    commits = value("coffee_scraper_storage_operations_total", operation="page_commit", result="ok")
    finishes = value("coffee_scraper_storage_operations_total", operation="run_finish", result="ok")
    durations = value("coffee_scraper_run_duration_seconds_count", mode="full")
    with DemoServer([shop]) as server:
        _register(factory, server, "s", name)
        report = asyncio.run(run_many([name], "full", settings=fast_settings(sqlite_url), factory=factory))[0]
        # the same catalog again: everything unchanged
        again = asyncio.run(run_many([name], "full", settings=fast_settings(sqlite_url), factory=factory))[0]
    assert report.status == "partial" and report.new == 29 and report.quarantined == 1, report.errors
    assert again.unchanged == 29
    assert value("coffee_scraper_products_processed_total", roaster=name, outcome="stored") == 29
    assert value("coffee_scraper_products_processed_total", roaster=name, outcome="unchanged") == 29
    assert value("coffee_scraper_products_processed_total", roaster=name, outcome="quarantined") == 2
    assert value("coffee_scraper_validation_errors_total", roaster=name) == 2
    assert value("coffee_scraper_runs_total", roaster=name, mode="full", status="partial") == 2
    assert value("coffee_scraper_run_duration_seconds_count", mode="full") - durations == 2
    assert value("coffee_scraper_circuit_state", roaster=name) == 0
    assert value("coffee_scraper_fetch_requests_total", roaster=name, platform="shopify", result="ok") > 0
    assert value("coffee_scraper_fetch_retries_total", roaster=name) >= 1  # the one 503
    assert value("coffee_scraper_storage_operations_total", operation="page_commit", result="ok") - commits >= 4
    assert value("coffee_scraper_storage_operations_total", operation="run_finish", result="ok") - finishes == 2


def test_failed_page_commit_counts_an_error_and_is_a_run_error(
    factory: sessionmaker[Session], sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"broken-{uuid.uuid4().hex[:8]}"

    def boom(*_a: Any, **_kw: Any) -> Any:
        raise RuntimeError("database is locked")

    monkeypatch.setattr(service, "upsert_products", boom)
    errors = value("coffee_scraper_storage_operations_total", operation="page_commit", result="error")
    with DemoServer([DemoShop("s", "shopify", make_shopify_products(5, seed=2))]) as server:
        _register(factory, server, "s", name)
        report = asyncio.run(run_many([name], "full", settings=fast_settings(sqlite_url), factory=factory))[0]
    assert report.status == "fail"
    assert report.errors[0]["kind"] == "internal" and "database is locked" in report.errors[0]["message"]
    assert value("coffee_scraper_storage_operations_total", operation="page_commit", result="error") - errors == 1
    assert value("coffee_scraper_runs_total", roaster=name, mode="full", status="fail") == 1
    assert value("coffee_scraper_products_processed_total", roaster=name, outcome="stored") == 0
    assert value("coffee_scraper_last_success_timestamp_seconds", roaster=name) == 0


def test_system_collector_reads_live_values(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'data' / 'x.db'}", log_dir=tmp_path / "logs")
    paths = watched_paths(settings)
    assert paths == [str(tmp_path / "data"), str(tmp_path / "logs"), "/"]  # need not exist yet
    collector = SystemCollector(paths=paths)
    samples = {(s.name, s.labels.get("path")): s.value for family in collector.collect() for s in family.samples}
    assert samples[("coffee_scraper_process_resident_memory_bytes", None)] > 0
    assert samples[("coffee_scraper_process_cpu_seconds_total", None)] > 0
    assert 0 < samples[("coffee_scraper_host_memory_usage_ratio", None)] < 1
    for path in paths:
        assert 0 < samples[("coffee_scraper_host_disk_usage_ratio", path)] <= 1


def test_registry_exposition_parses_and_has_system_gauges() -> None:
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(REGISTRY).decode())}
    assert families["coffee_scraper_process_resident_memory_bytes"].samples[0].value > 0
    assert "coffee_scraper_process_cpu_seconds" in families
    assert families["coffee_scraper_process_cpu_seconds"].type == "counter"
