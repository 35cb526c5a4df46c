"""The operators' endpoints over real HTTP: /metrics after a real demo scrape, /health, /health/ready.

REGISTRY is process-global: /metrics assertions compare two scrapes (after minus before) or use labels
unique to the test.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from coffee_scraper.catalog import db, service
from coffee_scraper.demo.catalog import make_shopify_products
from coffee_scraper.demo.server import DemoServer, DemoShop
from coffee_scraper.pipeline.run import run_many
from coffee_scraper.settings import Settings
from coffee_scraper.web import create_app
from tests.support import free_port, serve_in_thread

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(exposition: str) -> Samples:
    """Every sample of a Prometheus text exposition; raises when the text does not parse."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
    }


def get(values: Samples, name: str, **labels: str) -> float:
    return values.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Settings]]:
    """create_app on a migrated SQLite database, served by uvicorn on 127.0.0.1 in a thread."""
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'data' / 'catalog.db'}", log_dir=tmp_path / "logs")
    db.upgrade(settings.database_url)
    with serve_in_thread(create_app(settings)) as port:
        yield f"http://127.0.0.1:{port}", settings


def test_metrics_after_a_real_demo_scrape(served: tuple[str, Settings]) -> None:
    base, settings = served
    name = f"web-{uuid.uuid4().hex[:8]}"
    products = make_shopify_products(40, seed=9)
    scrape_settings = settings.model_copy(
        update={
            "allow_private_addresses": True,
            "request_delay_s": 0.01,
            "request_jitter_s": 0.0,
            "shopify_page_limit": 25,
        }
    )
    with httpx.Client(base_url=base, timeout=10) as client:
        first = client.get("/metrics")
        assert first.status_code == 200 and first.headers["content-type"] == CONTENT_TYPE_LATEST
        before = samples(first.text)
        engine = db.make_engine(settings.database_url)
        factory = db.session_factory(engine)
        with DemoServer([DemoShop("s", "shopify", products)]) as demo:
            with db.session_scope(factory) as session:
                service.add_roaster(session, name, demo.url("s"), platform="auto", currency="INR")
            reports = asyncio.run(run_many([name], "full", settings=scrape_settings, factory=factory))
        engine.dispose()
        assert reports[0].status == "ok", reports[0].errors
        after = samples(client.get("/metrics").text)

    def delta(metric: str, **labels: str) -> float:
        return get(after, metric, **labels) - get(before, metric, **labels)

    assert delta("coffee_scraper_fetch_requests_total", roaster=name, platform="shopify", result="ok") > 0
    assert delta("coffee_scraper_fetch_bytes_total", roaster=name) > 0
    assert delta("coffee_scraper_fetch_duration_seconds_count", roaster=name) > 0
    assert delta("coffee_scraper_products_processed_total", roaster=name, outcome="stored") == len(products)
    assert delta("coffee_scraper_runs_total", roaster=name, mode="full", status="ok") == 1
    assert delta("coffee_scraper_storage_operations_total", operation="page_commit", result="ok") >= 2
    assert get(after, "coffee_scraper_last_success_timestamp_seconds", roaster=name) > time.time() - 120
    assert get(after, "coffee_scraper_circuit_state", roaster=name) == 0
    assert get(after, "coffee_scraper_process_resident_memory_bytes") > 0
    assert 0 < get(after, "coffee_scraper_host_memory_usage_ratio") < 1
    data_dir = str((Path(settings.database_url.removeprefix("sqlite:///"))).parent.absolute())
    for path in (data_dir, str(settings.log_dir.absolute()), "/"):
        assert 0 < get(after, "coffee_scraper_host_disk_usage_ratio", path=path) <= 1


def test_health_and_ready_over_http(served: tuple[str, Settings]) -> None:
    base, _ = served
    assert httpx.get(f"{base}/health", timeout=5).json() == {"status": "ok"}
    ready = httpx.get(f"{base}/health/ready", timeout=5)
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ok" and body["failed"] == []
    assert body["checks"]["database"]["ok"] is True and body["checks"]["database"]["latency_ms"] >= 0
    migrations = body["checks"]["migrations"]
    assert migrations["ok"] is True and migrations["current"] == migrations["head"] == db.head_revision()


def test_ready_fails_on_an_unmigrated_database(tmp_path: Path) -> None:
    app: FastAPI = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'empty.db'}", log_dir=tmp_path / "l"))
    with TestClient(app) as client:
        answer = client.get("/health/ready")
    assert answer.status_code == 503
    body = answer.json()
    assert body["status"] == "fail" and body["failed"] == ["migrations"]
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["migrations"]["current"] is None and body["checks"]["migrations"]["head"]
    assert "db upgrade" in body["checks"]["migrations"]["error"]


def test_ready_fails_fast_when_postgresql_is_gone(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there any more
    settings = Settings(database_url=f"postgresql://postgres@127.0.0.1:{port}/coffee", log_dir=tmp_path / "l")
    with TestClient(create_app(settings)) as client:
        started = time.monotonic()
        answer = client.get("/health/ready")
        elapsed = time.monotonic() - started
        assert client.get("/health").status_code == 200  # liveness does not depend on the database
    assert elapsed < 5
    assert answer.status_code == 503
    body: dict[str, Any] = answer.json()
    assert body["status"] == "fail" and "database" in body["failed"]
    assert body["checks"]["database"]["ok"] is False and body["checks"]["database"]["error"]


def test_cli_serve_migrates_and_answers(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "COFFEE_SCRAPER_DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}",
        "COFFEE_SCRAPER_LOG_DIR": str(tmp_path / "logs"),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "coffee_scraper.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.communicate()[1].decode()
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.1)
        assert health.json() == {"status": "ok"}
        ready = httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=5)
        assert ready.status_code == 200, ready.text  # serve migrated the fresh database first
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert get(samples(metrics.text), "coffee_scraper_process_resident_memory_bytes") > 0
    finally:
        proc.terminate()
        proc.communicate(timeout=15)
    assert "serve_start" in (tmp_path / "logs" / "app.log").read_text()


def test_multiprocess_mode_serves_every_process_values(tmp_path: Path) -> None:
    """With PROMETHEUS_MULTIPROC_DIR, /metrics merges the values other processes wrote there."""
    mp = tmp_path / "mp"
    mp.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(mp)}
    writer = "from coffee_scraper.observability.metrics import RUNS\nRUNS.labels('mp-roaster', 'full', 'ok').inc(3)\n"
    subprocess.run([sys.executable, "-c", writer], env=env, check=True, timeout=60)
    reader = (
        "import sys\n"
        "from fastapi.testclient import TestClient\n"
        "from coffee_scraper.settings import Settings\n"
        "from coffee_scraper.web import create_app\n"
        f"app = create_app(Settings(database_url='sqlite:///{tmp_path / 'x.db'}', log_dir='{tmp_path / 'logs'}'))\n"
        "sys.stdout.write(TestClient(app).get('/metrics').text)\n"
    )
    done = subprocess.run([sys.executable, "-c", reader], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    values = samples(done.stdout)
    assert get(values, "coffee_scraper_runs_total", roaster="mp-roaster", mode="full", status="ok") == 3
    assert get(values, "coffee_scraper_process_resident_memory_bytes") > 0


def test_metrics_gzip_and_identity_bodies_parse_and_match(tmp_path: Path) -> None:
    """/metrics honours Accept-Encoding: gzip; both bodies are the same valid Prometheus text."""
    from coffee_scraper.observability import metrics as m

    roaster = f"gzip-{uuid.uuid4().hex[:8]}"
    m.FETCH_REQUESTS.labels(roaster, "shopify", "ok").inc(7)
    m.FETCH_DURATION.labels(roaster).observe(0.3)
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'c.db'}", log_dir=tmp_path / "logs")
    with TestClient(create_app(settings)) as client:
        zipped = client.get("/metrics", headers={"Accept-Encoding": "gzip"})
        plain = client.get("/metrics", headers={"Accept-Encoding": "identity"})
    assert zipped.status_code == plain.status_code == 200
    assert zipped.headers["content-encoding"] == "gzip"
    assert "content-encoding" not in plain.headers
    assert zipped.headers["content-type"] == plain.headers["content-type"] == CONTENT_TYPE_LATEST
    for response in (zipped, plain):
        values = samples(response.text)
        assert get(values, "coffee_scraper_fetch_requests_total", roaster=roaster, platform="shopify", result="ok") == 7
        assert get(values, "coffee_scraper_fetch_duration_seconds_bucket", roaster=roaster, le="0.5") == 1
        assert get(values, "coffee_scraper_fetch_duration_seconds_count", roaster=roaster) == 1
