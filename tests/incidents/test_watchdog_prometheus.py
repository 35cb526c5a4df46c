"""Monitoring-issue rules of the watchdog against a real Prometheus (Debian's binary): scrapes of the app's job
failing (target down) → MetricsScrapeFlaky; no target for the job, or Prometheus itself not answering →
MetricsTargetMissing. Without a Prometheus URL both rules show "no data: skipped" (see test_watchdog_store).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from coffee_scraper.catalog import db
from coffee_scraper.incidents.alert_config import AlertSettings
from coffee_scraper.incidents.watchdog import Clear, Firing
from tests.incidents.watchdog_support import Clock, drive, incidents_of, make_watchdog, watchdog_settings
from tests.support import free_port

pytestmark = [pytest.mark.slow]
JOB = "coffee-scraper"


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        message = "prometheus is not installed (Debian: apt-get install prometheus)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must run the real-Prometheus watchdog test")
        pytest.skip(message)
    return found


@pytest.fixture
def prometheus() -> Iterator[str]:
    """A real Prometheus scraping job coffee-scraper at a port where nothing listens (every scrape fails)."""
    binary = prometheus_binary()
    tmp = Path(tempfile.mkdtemp(prefix="coffee-scraper-wdprom-"))
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "500ms", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [f"127.0.0.1:{free_port()}"]}]}],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:  # ready, and a few failed scrapes recorded
            assert proc.poll() is None, (tmp / "prometheus.log").read_text()[-2000:]
            try:
                body = httpx.get(f"{base}/api/v1/query", params={"query": f'count_over_time(up{{job="{JOB}"}}[1m])'},
                                 timeout=1).json()  # fmt: skip
                if body["data"]["result"] and float(body["data"]["result"][0]["value"][1]) >= 3:
                    break
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            assert time.monotonic() < deadline, "prometheus did not scrape its target"
            time.sleep(0.2)
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


@pytest.fixture
def catalog(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    db.upgrade(url)
    return url


def test_failing_scrapes_fire_metrics_scrape_flaky_p2(prometheus: str, catalog: str, tmp_path: Path) -> None:
    settings = watchdog_settings(catalog, tmp_path, prometheus_url=prometheus)
    clock = Clock()
    alerts = AlertSettings(prometheus_job=JOB, _env_file=None)  # type: ignore[call-arg]
    watchdog = make_watchdog(
        settings, clock, alert_settings=alerts, only=("MetricsScrapeFlaky", "MetricsTargetMissing")
    )
    try:
        evaluations = drive(watchdog, clock, seconds=630, step_s=60)
    finally:
        watchdog.close()
    fired = evaluations[-1].verdict("MetricsScrapeFlaky")
    assert isinstance(fired, Firing) and fired.value == 0.0, fired  # avg_over_time(up[30m]) asked from Prometheus
    assert isinstance(evaluations[-1].verdict("MetricsTargetMissing"), Clear)  # the target exists, it just fails
    assert [i.severity for i in incidents_of(settings, "MetricsScrapeFlaky")] == ["P2"]


def test_no_target_for_the_job_fires_metrics_target_missing_p2(prometheus: str, catalog: str, tmp_path: Path) -> None:
    settings = watchdog_settings(catalog, tmp_path, prometheus_url=prometheus)
    clock = Clock()
    alerts = AlertSettings(prometheus_job="coffee-scraper-prod", _env_file=None)  # type: ignore[call-arg]
    watchdog = make_watchdog(settings, clock, alert_settings=alerts, only=("MetricsTargetMissing",))
    try:
        evaluations = drive(watchdog, clock, seconds=630, step_s=60)
    finally:
        watchdog.close()
    fired = evaluations[-1].verdict("MetricsTargetMissing")
    assert isinstance(fired, Firing) and "coffee-scraper-prod" in fired.detail
    assert [i.severity for i in incidents_of(settings, "MetricsTargetMissing")] == ["P2"]


def test_prometheus_not_answering_fires_metrics_target_missing(catalog: str, tmp_path: Path) -> None:
    settings = watchdog_settings(catalog, tmp_path, prometheus_url=f"http://127.0.0.1:{free_port()}")
    clock = Clock()
    watchdog = make_watchdog(settings, clock, only=("MetricsTargetMissing",), for_zero=True)
    try:
        evaluation = watchdog.run_once()
    finally:
        watchdog.close()
    assert isinstance(evaluation.verdict("MetricsTargetMissing"), Firing)
    assert "did not answer" in evaluation.measurements.errors["prometheus"]
