"""The runbook drill, end to end against the real components: break the database, watch the P0 incident open,
notify Slack and GitHub, escalate on schedule, take status updates, resolve with the resolution notice.

Real: the catalog on a PostgreSQL cluster the test stops and restarts; the incident store on SQLite; the web app
(``create_app``) on real HTTP for the REST API; the watchdog loop and the incident runner loop (the ones
``serve`` runs) in their threads; Slack (incoming webhook) and GitHub (REST v3 issues) as local peers on
127.0.0.1. Injected: one clock shared by the app, the watchdog and the runner, advanced by the test so ``for``
durations and the 30-minute escalation take seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from coffee_scraper.catalog import db
from coffee_scraper.catalog.models import utcnow
from coffee_scraper.incidents.runner import IncidentRunner
from coffee_scraper.incidents.store import incident_store_settings
from coffee_scraper.incidents.watchdog import Watchdog
from coffee_scraper.web import create_app
from tests.incidents.notify.peers import GitHubPeer, SlackPeer
from tests.incidents.watchdog_support import Clock, PgCluster, watchdog_settings
from tests.support import serve_in_thread

pytestmark = [pytest.mark.pg, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
TOKEN = "drill-api-token-0123456789"


def wait_for(what: str, predicate: Callable[[], Any], *, tick: Callable[[], None] | None = None,
             timeout_s: float = 60.0) -> Any:  # fmt: skip
    """Poll ``predicate`` (calling ``tick`` between polls, e.g. to advance the clock) until it is truthy."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        if tick is not None:
            tick()
        time.sleep(0.25)


@pytest.fixture
def cluster() -> Iterator[PgCluster]:
    try:
        c = PgCluster()
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"cannot start a throwaway PostgreSQL cluster: {exc}")
    try:
        yield c
    finally:
        c.close()


def test_database_outage_drill(cluster: PgCluster, tmp_path: Path) -> None:
    db.upgrade(cluster.url)
    slack, github = SlackPeer(), GitHubPeer()
    with serve_in_thread(slack.app) as slack_port, serve_in_thread(github.app) as github_port:
        settings = watchdog_settings(
            cluster.url,
            tmp_path,
            slack_webhook_url=SecretStr(f"http://127.0.0.1:{slack_port}{SlackPeer.path}"),
            github_api_url=f"http://127.0.0.1:{github_port}",
            github_repo=f"{github.owner}/{github.repo}",
            github_token=SecretStr(GitHubPeer.token),
            api_token=SecretStr(TOKEN),
            oncall_file=ROOT / "oncall.example.toml",
            watchdog_interval_s=0.2,
            incident_runner_interval_s=0.2,
            incident_sweep_interval_s=0.5,
        )
        db.upgrade(settings.incidents_database_url or "")
        clock = Clock(utcnow())
        app = create_app(settings)  # watchdog/runner of the lifespan off: the test runs them on its clock
        app.state.incident_clock = clock
        watchdog = Watchdog(settings, now=clock)
        runner = IncidentRunner(incident_store_settings(settings), now=clock)
        with serve_in_thread(app) as port:
            api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN}"},
                               timeout=10)  # fmt: skip
            watchdog.start()
            runner.start()
            try:
                _drill(cluster, clock, api, slack, github, watchdog)
            finally:
                watchdog.stop()
                runner.stop()
                watchdog.close()
                api.close()


def _drill(
    cluster: PgCluster, clock: Clock, api: httpx.Client, slack: SlackPeer, github: GitHubPeer, watchdog: Watchdog
) -> None:
    wait_for("the first watchdog pass", lambda: watchdog.last is not None)

    def step() -> None:
        clock.advance(seconds=30)

    def open_p0() -> dict[str, Any] | None:
        items = api.get("/api/v1/incidents", params={"open": "true"}).json()["incidents"]
        return next((i for i in items if i.get("rule") == "DatabaseDown" and i.get("severity") == "P0"), None)

    # 1. break the database
    cluster.stop()
    incident = wait_for("the P0 incident", open_p0, tick=step)
    incident_id = incident["id"]
    assert incident["status"] == "investigating" and incident["source"] == "watchdog"

    # 2. Slack and GitHub are notified (🚨 INCIDENT template; GitHub issue labelled incident + P0)
    alert = wait_for("the Slack incident message", lambda: [t for t in slack.texts() if incident_id in t])
    assert alert[0].startswith("🚨 INCIDENT: P0") and "Incident ID: " + incident_id in alert[0]
    issue = wait_for("the GitHub issue", lambda: next((i for i in github.issues.values() if incident_id in i.title
                                                       or incident_id in i.body), None))  # fmt: skip
    assert {"incident", "P0"} <= set(issue.labels) and issue.state == "open"

    # 3. a status update over the REST API (📊 Status Update to Slack, a comment on the issue)
    answer = api.post(f"/api/v1/incidents/{incident_id}/update", json={
        "status": "working", "actions_taken": "PostgreSQL found stopped on db-1", "next_steps": "restart it",
        "eta": "10 minutes", "owner": "system-owner"})  # fmt: skip
    assert answer.status_code == 200, answer.text
    update = wait_for("the Slack status update", lambda: [t for t in slack.texts() if t.startswith("📊 Status Update")
                                                          and "PostgreSQL found stopped" in t])  # fmt: skip
    assert incident_id in update[0] and "Current Status: Working" in update[0]
    wait_for("the GitHub comment", lambda: any("PostgreSQL found stopped" in c for c in issue.comments))

    # 4. escalation on schedule: unresolved after 30 minutes → level 2 (Senior Engineer)
    clock.advance(minutes=31)
    wait_for("the escalation", lambda: any(e["kind"] == "escalated" for e in _timeline(api, incident_id)))
    escalated = [e for e in _timeline(api, incident_id) if e["kind"] == "escalated"]
    assert "Senior Engineer" in escalated[0]["message"] or escalated[0]["data"].get("level") == 2

    # 5. the database comes back: the alert resolves, the incident waits for confirmation
    cluster.start()
    wait_for("the alert to resolve", lambda: api.get(f"/api/v1/incidents/{incident_id}").json()
             .get("resolve_pending_since"), tick=step)  # fmt: skip

    # 6. resolved with the runbook's resolution notice (✅ RESOLVED to Slack, the GitHub issue closed)
    answer = api.post(f"/api/v1/incidents/{incident_id}/resolve", json={
        "root_cause": "PostgreSQL was stopped by an operator", "resolution": "PostgreSQL restarted",
        "prevention": "alert on pg_ctl stop; restrict shell access"})  # fmt: skip
    assert answer.status_code == 200, answer.text
    resolved = wait_for(
        "the Slack resolution notice", lambda: [t for t in slack.texts() if t.startswith("✅ RESOLVED")]
    )
    assert incident_id in resolved[0] and "Root Cause: PostgreSQL was stopped by an operator" in resolved[0]
    wait_for("the GitHub issue to close", lambda: issue.state == "closed")
    assert api.get(f"/api/v1/incidents/{incident_id}").json()["status"] == "resolved"
    kinds = [e["kind"] for e in _timeline(api, incident_id)]
    for kind in ("opened", "status_update", "escalated", "alert_resolved", "resolved"):
        assert kind in kinds, kinds


def _timeline(api: httpx.Client, incident_id: str) -> list[dict[str, Any]]:
    body = api.get(f"/api/v1/incidents/{incident_id}").json()
    return list(body.get("timeline", []))
