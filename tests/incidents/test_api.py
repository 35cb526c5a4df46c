"""The receivers and the incidents REST API of the real app (``create_app``) over real HTTP on 127.0.0.1.

Auth (401 without/with a wrong token, 503 when none is configured), the 512 KB limit (413, also chunked),
400 with the list of problems and no partial writes, PagerDuty's 202/400/429 answers, the incident operations,
silences and maintenance windows, and the OpenAPI schema.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from coffee_scraper.web import create_app
from tests.incidents.core_support import T0, Store, am_alert, am_body, api_settings, pd_event, prom_alert
from tests.support import serve_in_thread

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Served:
    base: str
    clock: Clock
    store: Store
    client: httpx.Client

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.client.post(self.base + path, json=body, headers=AUTH if headers is None else headers)

    def get(self, path: str, headers: dict[str, str] | None = None, **params: Any) -> httpx.Response:
        return self.client.get(self.base + path, params=params, headers=AUTH if headers is None else headers)


def serve(url: str, tmp_path: Path, **extra: Any) -> Iterator[Served]:
    store = Store(url)
    app = create_app(api_settings(url, tmp_path, **extra))
    clock = Clock(T0)
    app.state.incident_clock = clock
    with serve_in_thread(app) as port, httpx.Client(timeout=30) as client:
        yield Served(f"http://127.0.0.1:{port}", clock, store, client)
    store.close()


@pytest.fixture
def served(sqlite_url: str, tmp_path: Path) -> Iterator[Served]:
    yield from serve(sqlite_url, tmp_path, incident_pagerduty_rate_per_min=5)


@pytest.fixture
def served_any(db_url: str, tmp_path: Path) -> Iterator[Served]:
    yield from serve(db_url, tmp_path)


# --- auth, size, validation -----------------------------------------------------------------------------------


def test_receivers_need_the_token(served: Served) -> None:
    body = [prom_alert("A", ends=T0 + timedelta(minutes=1))]
    for path, payload in (
        ("/api/v2/alerts", body),
        ("/api/v1/alerts/alertmanager", am_body(am_alert("A"))),
        ("/api/v1/alerts/pagerduty", pd_event()),
    ):
        missing = served.post(path, payload, headers={})
        assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
        wrong = served.post(path, payload, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "wrong API token" in wrong.json()["detail"]
        assert TOKEN not in wrong.text
    assert served.store.counts()["incident_alerts"] == 0
    basic = base64.b64encode(f"prometheus:{TOKEN}".encode()).decode()
    assert served.post("/api/v2/alerts", body, headers={"Authorization": f"Basic {basic}"}).status_code == 200
    assert served.get("/api/v1/incidents", headers={}).status_code == 401  # reads need it too by default


def test_without_a_configured_token_writes_are_refused(sqlite_url: str, tmp_path: Path) -> None:
    for s in serve(sqlite_url, tmp_path, api_token=None, api_read_requires_token=False):
        r = s.post("/api/v2/alerts", [prom_alert("A")], headers={})
        assert r.status_code == 503 and "COFFEE_SCRAPER_API_TOKEN" in r.json()["detail"]
        assert s.post("/api/v1/incidents", {"title": "x", "severity": "P1"}, headers={}).status_code == 503
        assert s.get("/api/v1/incidents", headers={}).status_code == 200  # open reads when configured so


def test_bodies_over_512_kb_are_refused_with_413_also_when_chunked(served: Served) -> None:
    big = [prom_alert("A", ends=T0 + timedelta(minutes=1), blob="x" * 1000) for _ in range(600)]
    data = json.dumps(big).encode()
    assert len(data) > 512 * 1024
    r = httpx.post(served.base + "/api/v2/alerts", content=data, headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 413 and "larger than 524288 bytes" in r.json()["detail"]

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(data), 64 * 1024):
            yield data[i : i + 64 * 1024]

    chunked = httpx.post(
        served.base + "/api/v1/alerts/alertmanager",
        content=chunks(),
        headers={**AUTH, "content-type": "application/json"},
        timeout=30,
    )
    assert chunked.status_code == 413
    assert served.store.counts()["incident_alerts"] == 0
    small = json.dumps([prom_alert("A", ends=T0 + timedelta(minutes=1))]).encode()
    ok = httpx.post(
        served.base + "/api/v2/alerts",
        content=iter([small[:10], small[10:]]),
        headers={**AUTH, "content-type": "application/json"},
    )
    assert ok.status_code == 200


def test_invalid_bodies_get_400_with_every_problem_and_write_nothing(served: Served) -> None:
    before = served.store.counts()
    r = served.post("/api/v2/alerts", [prom_alert("ok"), {"labels": {"severity": "P1"}}, {"labels": 3}])
    assert r.status_code == 400
    problems = r.json()["problems"]
    assert any("[1].labels.alertname: required" in p for p in problems) and any("[2].labels" in p for p in problems)
    r = served.post("/api/v1/alerts/alertmanager", {"version": "4", "alerts": [am_alert("A"), {"status": "x"}]})
    assert r.status_code == 400 and len(r.json()["problems"]) >= 2
    r = httpx.post(served.base + "/api/v2/alerts", content=b"{not json", headers=AUTH)
    assert r.status_code == 400 and "not valid JSON" in r.json()["problems"][0]
    assert served.store.counts() == before


# --- receivers ------------------------------------------------------------------------------------------------


def test_pagerduty_answers_in_its_own_shapes(served: Served) -> None:
    r = served.post("/api/v1/alerts/pagerduty", pd_event(severity="critical"))
    assert r.status_code == 202
    body = r.json()
    assert body["status"] == "success" and body["message"] == "Event processed" and len(body["dedup_key"]) == 32
    same = served.post("/api/v1/alerts/pagerduty/v2/enqueue", pd_event(dedup_key=body["dedup_key"]))
    assert same.status_code == 202 and same.json()["dedup_key"] == body["dedup_key"]
    bad = served.post("/api/v1/alerts/pagerduty", {**pd_event(), "routing_key": "short"})
    assert bad.status_code == 400
    assert bad.json() == {
        "status": "invalid event",
        "message": "Event object is invalid",
        "errors": ["Length of 'routing_key' is incorrect (should be 32 characters)"],
    }
    assert len(served.store.incidents()) == 1 and served.store.alerts()[0].receive_count == 2
    # the rate limit is per routing key (5/min in this fixture): 2 used, 3 more pass, the 6th is throttled
    codes = [served.post("/api/v1/alerts/pagerduty", pd_event(dedup_key=f"k{i}")).status_code for i in range(4)]
    assert codes == [202, 202, 202, 429]
    throttled = served.post("/api/v1/alerts/pagerduty", pd_event(dedup_key="k9"))
    assert throttled.json()["status"] == "throttle event" and throttled.headers["retry-after"] == "60"
    assert served.post("/api/v1/alerts/pagerduty", pd_event(routing_key="Z" * 32)).status_code == 202
    change = served.post(
        "/api/v1/alerts/pagerduty/v2/change/enqueue",
        {"routing_key": "C" * 32, "payload": {"summary": "Deployed 1.4", "source": "ci"}},
    )
    assert change.status_code == 202
    opened = served.store.incidents()[0].id
    assert "Deployed 1.4" in served.store.detail(opened)["timeline"][-1]["message"]


def test_alerts_in_incidents_out_over_http(served_any: Served) -> None:
    s = served_any
    r = s.post("/api/v1/alerts/alertmanager", am_body(am_alert("HighErrorRate", severity="P1", component="fetch")))
    assert r.status_code == 200
    assert r.json()["results"] == {"opened": 1} and len(r.json()["incidents"]) == 1
    incident_id = r.json()["incidents"][0]
    for _ in range(3):  # at-least-once: the same webhook again
        assert s.post(
            "/api/v1/alerts/alertmanager", am_body(am_alert("HighErrorRate", severity="P1", component="fetch"))
        ).json()["results"] == {"duplicate": 1}
    listed = s.get("/api/v1/incidents", open="true").json()
    assert listed["count"] == 1 and listed["incidents"][0]["id"] == incident_id
    assert listed["incidents"][0]["alerts_firing"] == 1
    s.clock.now = T0 + timedelta(minutes=3)
    resolved = am_body(
        am_alert("HighErrorRate", severity="P1", component="fetch", status="resolved", ends=T0 + timedelta(minutes=2))
    )
    assert s.post("/api/v1/alerts/alertmanager", resolved).json()["results"] == {"resolved": 1}
    detail = s.get(f"/api/v1/incidents/{incident_id}").json()
    assert detail["resolve_pending"] is True and detail["alerts"][0]["receive_count"] == 5
    assert [e["kind"] for e in detail["timeline"]] == ["opened", "alert_firing", "alert_resolved", "resolve_pending"]
    metrics = httpx.get(s.base + "/metrics").text
    assert 'coffee_scraper_alerts_received_total{result="duplicate",source="alertmanager"}' in metrics
    assert 'coffee_scraper_open_incidents{severity="P1"}' in metrics


# --- incidents API --------------------------------------------------------------------------------------------


def test_the_incident_operations(served: Served) -> None:
    r = served.post(
        "/api/v1/incidents", {"title": "Catalog stale", "severity": "P1", "impact": "old prices", "actor": "alice"}
    )
    assert r.status_code == 201
    iid = r.json()["id"]
    assert r.json()["timeline"][0]["actor"] == "alice"
    served.clock.now = T0 + timedelta(minutes=5)
    ack = served.post(f"/api/v1/incidents/{iid}/ack", {"actor": "bob"})
    assert ack.status_code == 200 and ack.json()["acknowledged_by"] == "bob" and ack.json()["owner"] == "bob"
    upd = served.post(
        f"/api/v1/incidents/{iid}/update",
        {"status": "working", "actions_taken": "restarted", "next_steps": "watch", "eta": "11:00"},
    )
    assert upd.status_code == 200 and upd.json()["status"] == "working"
    assert upd.json()["timeline"][-1]["actor"] == "api"  # the configured token's actor unless one is given
    sev = served.post(f"/api/v1/incidents/{iid}/severity", {"severity": "P0", "reason": "all shops affected"})
    assert sev.json()["severity"] == "P0" and sev.json()["severity_reason"] == "all shops affected"
    assert served.post(f"/api/v1/incidents/{iid}/comments", {"text": "looking at the DB"}).status_code == 201
    missing = served.post(f"/api/v1/incidents/{iid}/resolve", {"root_cause": "x"})
    assert missing.status_code == 400
    assert {p.split(":")[0] for p in missing.json()["problems"]} == {"resolution", "prevention"}
    done = served.post(
        f"/api/v1/incidents/{iid}/resolve",
        {"root_cause": "disk", "resolution": "cleaned", "prevention": "alert at 85%"},
    )
    assert done.status_code == 200 and done.json()["status"] == "resolved"
    again = served.post(f"/api/v1/incidents/{iid}/resolve", {"root_cause": "a", "resolution": "b", "prevention": "c"})
    assert again.status_code == 409
    assert served.post(f"/api/v1/incidents/{iid}/update", {"eta": "later"}).status_code == 409
    assert served.post(f"/api/v1/incidents/{iid}/reopen", {"reason": "back"}).json()["status"] == "investigating"
    kinds = [e["kind"] for e in served.get(f"/api/v1/incidents/{iid}").json()["timeline"]]
    assert kinds == [
        "opened",
        "acknowledged",
        "owner_changed",
        "status_update",
        "severity_changed",
        "comment",
        "resolved",
        "reopened",
    ]
    assert served.get("/api/v1/incidents/INC-20990101-001").status_code == 404
    assert served.get("/api/v1/incidents/not-an-id").status_code == 404
    assert served.post("/api/v1/incidents", {"title": "x", "severity": "P9"}).status_code == 400
    assert served.post("/api/v1/incidents", {"title": "x", "severity": "P1", "extra": 1}).status_code == 400
    stats = served.get("/api/v1/incidents/stats", drills="true").json()
    assert stats["incidents"] == 1 and stats["mtta_s"]["mean"] == 300


def test_silences_and_maintenance_over_http(served: Served) -> None:
    r = served.post(
        "/api/v1/silences",
        {
            "matchers": [{"name": "alertname", "value": "Noisy"}],
            "duration_s": 3600,
            "created_by": "alice",
            "comment": "known",
        },
    )
    assert r.status_code == 201 and r.json()["state"] == "active"
    sid = r.json()["id"]
    res = served.post("/api/v1/alerts/alertmanager", am_body(am_alert("Noisy")))
    assert res.json()["results"] == {"silenced": 1} and res.json()["incidents"] == []
    assert [x["id"] for x in served.get("/api/v1/silences").json()] == [sid]
    bad = served.post(
        "/api/v1/silences",
        {
            "matchers": [{"name": "a", "value": "(", "is_regex": True}],
            "duration_s": 60,
            "created_by": "a",
            "comment": "c",
        },
    )
    assert bad.status_code == 400 and "regular expression" in bad.json()["detail"]
    assert (
        served.post(
            "/api/v1/silences", {"matchers": [], "duration_s": 60, "created_by": "a", "comment": "c"}
        ).status_code
        == 400
    )
    assert httpx.delete(f"{served.base}/api/v1/silences/{sid}", headers=AUTH).json()["state"] == "expired"
    assert httpx.delete(f"{served.base}/api/v1/silences/999", headers=AUTH).status_code == 404
    w = served.post(
        "/api/v1/maintenance",
        {
            "components": ["db"],
            "ends_at": (T0 + timedelta(hours=1)).isoformat(),
            "created_by": "bob",
            "comment": "upgrade",
        },
    )
    assert w.status_code == 201 and w.json()["components"] == ["db"]
    res = served.post("/api/v1/alerts/alertmanager", am_body(am_alert("Other", component="db")))
    assert res.json()["results"] == {"silenced": 1}
    assert httpx.delete(f"{served.base}/api/v1/maintenance/{w.json()['id']}", headers=AUTH).status_code == 200
    assert served.get("/api/v1/maintenance").json() == []


def test_the_openapi_schema_documents_every_operation(served: Served) -> None:
    schema = httpx.get(served.base + "/openapi.json").json()
    paths = schema["paths"]
    for path in (
        "/api/v2/alerts",
        "/api/v1/alerts/alertmanager",
        "/api/v1/alerts/pagerduty",
        "/api/v1/incidents",
        "/api/v1/incidents/{incident_id}",
        "/api/v1/incidents/{incident_id}/ack",
        "/api/v1/incidents/{incident_id}/update",
        "/api/v1/incidents/{incident_id}/resolve",
        "/api/v1/silences",
        "/api/v1/maintenance",
    ):
        assert path in paths, path
    prom_body = paths["/api/v2/alerts"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert prom_body["type"] == "array" and "labels" in prom_body["items"]["properties"]
    am = paths["/api/v1/alerts/alertmanager"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "$ref" not in json.dumps(am) and am["properties"]["alerts"]["items"]["properties"]["status"]
    pd = paths["/api/v1/alerts/pagerduty"]["post"]
    assert set(pd["responses"]) >= {"202", "400", "429"}
    assert pd["security"] == [{"apiToken": []}]
    ok = paths["/api/v1/incidents/{incident_id}"]["get"]["responses"]["200"]["content"]["application/json"]
    assert ok["schema"]["$ref"] == "#/components/schemas/IncidentDetailOut"
    assert "timeline" in schema["components"]["schemas"]["IncidentDetailOut"]["properties"]
