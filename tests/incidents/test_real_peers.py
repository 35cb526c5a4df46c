"""Real peers: Debian's Prometheus (and Alertmanager) evaluate the generated rules and post to the real app.

Scenario, run twice — Prometheus posting straight to ``POST /api/v2/alerts`` (``alerting.alertmanagers`` pointed
at the app, ``path_prefix: /``, bearer token), and Prometheus → a real Alertmanager → the v4 webhook
``POST /api/v1/alerts/alertmanager`` (bearer token in ``http_config``):

1. Prometheus scrapes two targets of the app's job (``component: app``) on ports where nothing listens, so the
   generated ``SystemDown`` rule (``up{job="coffee-scraper"} == 0``, its ``for`` set to 0s) fires for both
   instances: one incident appears with both alerts in it (same rule + component: grouped).
2. The condition clears for real: small HTTP servers start answering /metrics on both ports, ``up`` becomes 1,
   the senders post the resolves, the incident becomes resolve-pending and the app's own sweep loop
   auto-resolves it after the (shortened) quiet period.

Without the binaries the tests skip, except under CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from coffee_scraper.incidents.alert_config import AlertSettings, load_alert_config
from coffee_scraper.incidents.prometheus_rules import render_rules
from coffee_scraper.web import create_app
from tests.incidents.core_support import Store, api_settings
from tests.support import free_port, serve_in_thread

pytestmark = [pytest.mark.slow]

JOB = "coffee-scraper"
TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WAIT_S = 90.0


def binary(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        message = f"{name} is not installed (Debian: apt-get install {package})"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must run the real-peer incident tests")
        pytest.skip(message)
    return found


def wait_for(what: str, predicate: Callable[[], Any], timeout_s: float = WAIT_S, logs: Callable[[], str] = str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}\n{logs()}")
        time.sleep(0.25)


@contextmanager
def process(args: list[str], log: Path, ready_url: str) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 20
            while True:
                assert proc.poll() is None, log.read_text()[-3000:]
                try:
                    if httpx.get(ready_url, timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"{args[0]} did not become ready\n{log.read_text()[-3000:]}"
                time.sleep(0.1)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class MetricsHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"# TYPE fake_target_up gauge\nfake_target_up 1\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return


@contextmanager
def answering(ports: list[int]) -> Iterator[None]:
    servers = [ThreadingHTTPServer(("127.0.0.1", port), MetricsHandler) for port in ports]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    try:
        yield
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()


def rules_with_zero_for() -> str:
    rendered = yaml.safe_load(render_rules(load_alert_config(AlertSettings(prometheus_job=JOB, _env_file=None))))
    for group in rendered["groups"]:
        for rule in group["rules"]:
            rule["for"] = "0s"
    return str(yaml.safe_dump(rendered, sort_keys=False, width=1000))


@pytest.fixture
def app(sqlite_url: str, tmp_path: Path) -> Iterator[tuple[str, Store]]:
    store = Store(sqlite_url)
    settings = api_settings(sqlite_url, tmp_path, incident_sweep_interval_s=0.5, incident_quiet_period_s=2.0)
    with serve_in_thread(create_app(settings)) as port:
        yield f"127.0.0.1:{port}", store
    store.close()


def system_down(app_addr: str) -> list[dict[str, Any]]:
    listed = httpx.get(f"http://{app_addr}/api/v1/incidents", headers=AUTH, timeout=5).json()["incidents"]
    return [i for i in listed if i["rule"] == "SystemDown"]


def incident_detail(app_addr: str, incident_id: str) -> dict[str, Any]:
    return dict(httpx.get(f"http://{app_addr}/api/v1/incidents/{incident_id}", headers=AUTH, timeout=5).json())


@pytest.mark.parametrize("path", ["direct", "alertmanager"])
def test_real_prometheus_alerts_open_group_and_resolve_an_incident(app: tuple[str, Store], path: str) -> None:
    prometheus = binary("prometheus", "prometheus")
    app_addr, _store = app
    tmp = Path(tempfile.mkdtemp(prefix="coffee-scraper-peers-"))
    dead = [free_port(), free_port()]
    logs: list[Path] = []

    def tail() -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in logs if p.exists())

    try:
        with ExitStack() as stack:
            if path == "alertmanager":
                alertmanager = binary("prometheus-alertmanager", "prometheus-alertmanager")
                am_port = free_port()
                am_config = {
                    "route": {
                        "receiver": "app",
                        "group_by": ["alertname"],
                        "group_wait": "1s",
                        "group_interval": "2s",
                        "repeat_interval": "1m",
                    },
                    "receivers": [
                        {
                            "name": "app",
                            "webhook_configs": [
                                {
                                    "url": f"http://{app_addr}/api/v1/alerts/alertmanager",
                                    "send_resolved": True,
                                    "http_config": {"authorization": {"type": "Bearer", "credentials": TOKEN}},
                                }
                            ],
                        }
                    ],
                }
                (tmp / "am.yml").write_text(yaml.safe_dump(am_config))
                amtool = shutil.which("amtool")
                if amtool:
                    checked = subprocess.run([amtool, "check-config", str(tmp / "am.yml")], capture_output=True)
                    assert checked.returncode == 0, checked.stdout + checked.stderr
                logs.append(tmp / "alertmanager.log")
                stack.enter_context(
                    process(
                        [
                            alertmanager,
                            f"--config.file={tmp / 'am.yml'}",
                            f"--storage.path={tmp / 'am-data'}",
                            f"--web.listen-address=127.0.0.1:{am_port}",
                            "--cluster.listen-address=",
                        ],
                        logs[-1],
                        f"http://127.0.0.1:{am_port}/-/ready",
                    )
                )
                target: dict[str, Any] = {"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}
            else:
                target = {
                    "static_configs": [{"targets": [app_addr]}],
                    "authorization": {"type": "Bearer", "credentials": TOKEN},
                }
            (tmp / "rules.yml").write_text(rules_with_zero_for())
            config = {
                "global": {"scrape_interval": "1s", "scrape_timeout": "500ms", "evaluation_interval": "1s"},
                "rule_files": [str(tmp / "rules.yml")],
                "scrape_configs": [
                    {
                        "job_name": JOB,
                        "static_configs": [
                            {"targets": [f"127.0.0.1:{p}" for p in dead], "labels": {"component": "app"}}
                        ],
                    }
                ],
                "alerting": {"alertmanagers": [{"api_version": "v2", "path_prefix": "/", "timeout": "5s", **target}]},
            }
            (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
            prom_port = free_port()
            logs.append(tmp / "prometheus.log")
            stack.enter_context(
                process(
                    [
                        prometheus,
                        f"--config.file={tmp / 'prometheus.yml'}",
                        f"--storage.tsdb.path={tmp / 'data'}",
                        f"--web.listen-address=127.0.0.1:{prom_port}",
                        "--rules.alert.resend-delay=1s",
                    ],
                    logs[-1],
                    f"http://127.0.0.1:{prom_port}/-/ready",
                )
            )

            # 1. both targets down: one incident holding both SystemDown alerts
            def grouped() -> dict[str, Any] | None:
                found = system_down(app_addr)
                if len(found) == 1 and found[0]["alerts_firing"] == 2:
                    return found[0]
                return None

            incident = wait_for("one SystemDown incident with two firing alerts", grouped, logs=tail)
            assert incident["severity"] == "P0" and incident["component"] == "app"
            assert incident["source"] == ("alertmanager" if path == "alertmanager" else "prometheus")
            assert incident["category"] == "System Down"
            detail = incident_detail(app_addr, incident["id"])
            assert {a["labels"]["instance"] for a in detail["alerts"]} == {f"127.0.0.1:{p}" for p in dead}
            assert len(system_down(app_addr)) == 1  # repeats did not open more incidents

            # 2. the condition clears: the targets answer, up == 1, the resolves arrive, the loop auto-resolves
            with answering(dead):

                def resolved() -> dict[str, Any] | None:
                    d = incident_detail(app_addr, incident["id"])
                    return d if d["status"] == "resolved" else None

                final = wait_for("the incident to be auto-resolved after the condition cleared", resolved, logs=tail)
                # counted while the targets still answer: once they stop, Prometheus fires again (a new incident)
                assert len(system_down(app_addr)) == 1
            kinds = [e["kind"] for e in final["timeline"]]
            assert kinds[:3] == ["opened", "alert_firing", "alert_firing"]
            assert kinds.count("alert_resolved") == 2 and kinds[-2:] == ["resolve_pending", "resolved"]
            assert all(a["status"] == "resolved" and a["resolved_by"] == "sender" for a in final["alerts"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
