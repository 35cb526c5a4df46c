"""A real Prometheus scrapes the real app and fires the runbook's P0 alert on a real database failure.

The app (``create_app``) is served by uvicorn on 127.0.0.1; Debian's ``prometheus`` scrapes its /metrics every
second and evaluates the rules rendered from ``load_alert_config`` (default thresholds, every ``for`` set to 0s
so the test needs no minutes of waiting). The condition is injected for real: demo-shop scrapes write into a
PostgreSQL database that is then switched to ``default_transaction_read_only`` (the pool is emptied, as after a
failover to a read-only replica), so every run's first write fails inside ``instrument.storage_operation``,
``coffee_scraper_storage_operations_total{result="error"}`` rises, and the runs end as reported failures.

Without ``prometheus`` on PATH the test skips, except under CI (``CI`` set), where it fails.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from coffee_scraper.catalog import db, service
from coffee_scraper.demo.catalog import make_shopify_products
from coffee_scraper.demo.server import DemoServer, DemoShop
from coffee_scraper.incidents.alert_config import AlertSettings, load_alert_config
from coffee_scraper.incidents.prometheus_rules import render_rules
from coffee_scraper.observability import instrument
from coffee_scraper.observability.metrics import REGISTRY
from coffee_scraper.pipeline.run import run_many
from coffee_scraper.settings import Settings
from coffee_scraper.web import create_app
from tests.support import fast_settings, free_port, serve_in_thread

pytestmark = [pytest.mark.slow, pytest.mark.pg]

JOB = "coffee-scraper"
ALERT = "DatabaseDown"
FIRE_TIMEOUT_S = 60.0


def prometheus_binary() -> str:
    found = shutil.which("prometheus") or ("/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None)
    if found is None:
        message = "prometheus is not installed (Debian: apt-get install prometheus)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must run the real-Prometheus alert test")
        pytest.skip(message)
    return found


def rules_with_zero_for() -> tuple[str, int]:
    """rules.yml from the alert config (default thresholds) with every rule's ``for`` set to 0s."""
    rendered = yaml.safe_load(render_rules(load_alert_config(AlertSettings(prometheus_job=JOB, _env_file=None))))
    rules = [rule for group in rendered["groups"] for rule in group["rules"]]
    for rule in rules:
        rule["for"] = "0s"
    return yaml.safe_dump(rendered, sort_keys=False, width=1000), len(rules)


@pytest.fixture
def app_url(pg_url: str, tmp_path: Path) -> Iterator[str]:
    settings = Settings(database_url=pg_url, log_dir=tmp_path / "logs")
    with serve_in_thread(create_app(settings)) as port:
        yield f"127.0.0.1:{port}"


@pytest.fixture
def prometheus(app_url: str) -> Iterator[str]:
    binary = prometheus_binary()
    tmp = Path(tempfile.mkdtemp(prefix="coffee-scraper-prom-"))
    rules, _n = rules_with_zero_for()
    (tmp / "rules.yml").write_text(rules)
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp / "rules.yml")],
        "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [app_url]}]}],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--rules.alert.resend-delay=1s",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, (tmp / "prometheus.log").read_text()[-3000:]
            try:
                if httpx.get(f"{base}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "prometheus did not become ready"
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def query(base: str, promql: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{base}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def alerts(base: str, name: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{base}/api/v1/alerts", timeout=5).json()
    return [a for a in body["data"]["alerts"] if a["labels"].get("alertname") == name]


def storage_errors() -> float:
    return sum(
        REGISTRY.get_sample_value(
            "coffee_scraper_storage_operations_total", {"operation": operation, "result": "error"}
        )
        or 0.0
        for operation in instrument.STORAGE_OPERATION_NAMES
    )


def wait_for(predicate: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout_s:g} s waiting for {what}"
        time.sleep(0.25)


def test_real_prometheus_fires_p0_when_database_turns_read_only(pg_url: str, prometheus: str) -> None:
    db.upgrade(pg_url)
    engine = db.make_engine(pg_url)
    factory = db.session_factory(engine)
    name = f"prom-{uuid.uuid4().hex[:8]}"
    settings = fast_settings(pg_url)
    database = make_url(pg_url).database
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    rules_loaded = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
    assert any(r["name"] == ALERT and r["duration"] == 0 for g in rules_loaded for r in g["rules"]), rules_loaded

    with DemoServer([DemoShop(name, "shopify", make_shopify_products(30, seed=5))]) as shop:
        with db.session_scope(factory) as session:
            service.add_roaster(session, name, shop.url(name), platform="shopify", currency="INR")
        # A healthy run first: storage_operations{result="ok"} exists (and then stays flat).
        healthy = asyncio.run(run_many([name], "full", settings=settings, factory=factory))
        assert healthy[0].status == "ok", healthy[0].errors
        # The error series exist at 0 from start-up (instrument.py), so the first failure is an increase rate() sees.

        # Control: Prometheus scrapes the app and evaluates the rules, and the alert is not firing.
        wait_for(lambda: query(prometheus, f'up{{job="{JOB}"}} == 1'), 15, "the first successful scrape")
        time.sleep(3)  # several scrapes and rule evaluations with the healthy values
        assert query(prometheus, 'coffee_scraper_storage_operations_total{operation="page_commit",result="ok"}')
        assert alerts(prometheus, ALERT) == []
        assert alerts(prometheus, "HighRPCErrorRate") == []

        # Injection: the database turns read-only (as after a failover to a read-only replica) and the pool is
        # emptied, so every new transaction's first write fails — from the run's own bookkeeping on.
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on'))
        engine.dispose()
        errors_before = storage_errors()
        for _ in range(3):  # each failure is reported, not raised
            reports = asyncio.run(run_many([name], "full", settings=settings, factory=factory))
            assert reports[0].status == "fail" and reports[0].errors[0]["kind"] == "storage"
            assert "read-only transaction" in reports[0].errors[0]["message"]
        assert storage_errors() >= errors_before + 3

        started = time.monotonic()
        firing = wait_for(
            lambda: [a for a in alerts(prometheus, ALERT) if a["state"] == "firing"],
            FIRE_TIMEOUT_S,
            f"{ALERT} to fire",
        )
        fired_after_s = time.monotonic() - started
    assert firing[0]["labels"]["severity"] == "P0", firing
    assert firing[0]["labels"]["category"] == "Database Failure"
    assert float(firing[0]["value"]) >= 1.0
    series = query(prometheus, f'ALERTS{{alertname="{ALERT}",alertstate="firing"}}')
    assert series and series[0]["metric"]["severity"] == "P0"
    print(f"{ALERT} fired {fired_after_s:.1f} s after the injected failure")
    engine.dispose()
    admin.dispose()
