"""The incident pages over real HTTP on the seeded dashboard: incidents opened through the incidents core (alerts
ingested by ``flows.ingest``, incidents declared by ``flows.declare``), every page renders, alert text (untrusted)
is escaped, the list filters filter, every action works through its form with the CSRF token and only for
operators; the insights numbers on both databases; notifications per channel from a real delivery to local peers
with the incidents in their own database; schemathesis on the new API operations.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from sqlalchemy import select

from coffee_scraper.catalog import db, service
from coffee_scraper.demo.catalog import make_shopify_products
from coffee_scraper.demo.server import DemoServer, DemoShop
from coffee_scraper.incidents import flows
from coffee_scraper.incidents.models import Incident, Silence
from coffee_scraper.incidents.notify import config as notify_config
from coffee_scraper.incidents.receivers import parse_alertmanager
from coffee_scraper.pipeline.run import run_many
from coffee_scraper.web import create_app
from coffee_scraper.web.api.insights import fetch_errors_per_day, incident_weeks, response_clock
from tests.incidents.notify.peers import SlackPeer, WebhookPeer
from tests.support import free_port, serve_in_thread
from tests.web.conftest import Seeded, add_users, csrf_of, dashboard_settings, login

XSS = '<script>window.__xss = 3</script><img src=x onerror="window.__xss = 4">'
RAW_MARKUP = ("<script>window.__xss", "<img src=x", 'href="javascript:', "<svg onload")
ZERO = "0001-01-01T00:00:00Z"


def am_body(name: str, *, severity: str = "warning", summary: str | None = None, **extra: Any) -> dict[str, Any]:
    """An Alertmanager webhook body (version 4) with one firing alert."""
    labels = {"alertname": name, "severity": severity, "component": extra.pop("component", "pages-test")}
    alert = {
        "status": "firing",
        "labels": labels,
        "annotations": {"summary": summary or f"{name} summary", "description": f"{name} description",
                        **extra.pop("annotations", {})},
        "startsAt": datetime.now(UTC).isoformat(),
        "endsAt": ZERO,
        "generatorURL": extra.pop("generator", "http://prometheus.example:9090/graph?g0.expr=up"),
    }  # fmt: skip
    return {"version": "4", "groupKey": "{}", "truncatedAlerts": 0, "status": "firing", "receiver": "pages",
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am.example",
            "alerts": [alert]}  # fmt: skip


def ingest(url: str, body: dict[str, Any], now: datetime | None = None) -> str:
    """Alerts in through the receivers' parser and ``flows.ingest`` (as POST /api/v1/alerts/alertmanager does)."""
    now = now or datetime.now(UTC)
    parsed = parse_alertmanager(body, received_at=now)
    assert parsed.ok, parsed.problems
    engine = db.make_engine(url)
    with flows.write_lock(engine), db.session_scope(db.session_factory(engine)) as session:
        result = flows.ingest(session, parsed.events, now=now)
    engine.dispose()
    assert result.incident_ids, result.counts()
    return result.incident_ids[0]


def declare(url: str, title: str, severity: str = "P2", *, is_drill: bool = False, now: datetime | None = None) -> str:
    engine = db.make_engine(url)
    with flows.write_lock(engine), db.session_scope(db.session_factory(engine)) as session:
        incident = flows.declare(session, title=title, severity=severity, actor="tests", now=now or datetime.now(UTC),
                                 is_drill=is_drill)  # fmt: skip
        incident_id = incident.id
    engine.dispose()
    return incident_id


def resolve(url: str, incident_id: str) -> None:
    engine = db.make_engine(url)
    with flows.write_lock(engine), db.session_scope(db.session_factory(engine)) as session:
        flows.resolve(session, incident_id, root_cause="test", resolution="test", prevention="test", actor="tests",
                      now=datetime.now(UTC))  # fmt: skip
    engine.dispose()


def incident_row(url: str, incident_id: str) -> Incident:
    engine = db.make_engine(url)
    with db.session_factory(engine)() as session:
        incident = session.get(Incident, incident_id)
        assert incident is not None
    engine.dispose()
    return incident


def kinds(api: dict[str, Any]) -> list[str]:
    return [e["kind"] for e in api["timeline"]]


def error_of(html: str) -> str:
    match = re.search(r'<p class="alert error" role="alert">([^<]*)</p>', html)
    assert match, "no error message on the page"
    return unescape(match.group(1))


# --- rendering and escaping -----------------------------------------------------------------------------------


def test_every_incident_page_renders_for_a_viewer(viewer: httpx.Client, seeded: Seeded) -> None:
    incident_id = ingest(seeded.url, am_body("PagesRender", severity="critical"))
    pages = {
        "/incidents": ["Incidents", incident_id, "Response"],
        "/incidents?state=all": [incident_id],
        f"/incidents/{incident_id}": ["Current Status", "Actions Taken", "Next Steps", "ETA", "Owner", "Timeline",
                                      "Linked alerts (1)", "Notifications", "Diagnostics", "Postmortem",
                                      "Post-incident checklists", "PagesRender"],
        "/silences": ["Silences", "Active and pending", "Maintenance windows"],
        "/insights": ["Incidents per week by severity", "Time to acknowledge (MTTA)", "Time to resolve (MTTR)",
                      "Fetch error rate per day", "Response times, last 30 days"],
        "/": ["Open incidents", incident_id],
    }  # fmt: skip
    for path, expected in pages.items():
        response = viewer.get(path)
        assert response.status_code == 200, (path, response.text[:300])
        for text in expected:
            assert text in response.text, (path, text)
        assert "unsafe-inline" not in response.headers["content-security-policy"]
        assert 'href="#main"' in response.text
    detail = viewer.get(f"/incidents/{incident_id}").text
    assert 'id="ack-form"' not in detail and 'id="resolve-form"' not in detail  # a viewer sees no actions
    nav = detail.split('<nav aria-label="Main">', 1)[1].split("</nav>", 1)[0]
    assert re.findall(r'<a href="([^"]+)"', nav) == ["/", "/incidents", "/scraping", "/catalog", "/insights"]
    assert viewer.get("/incidents/new").status_code == 403
    assert viewer.get("/incidents/INC-19990101-999").status_code == 404
    assert viewer.get("/incidents/not-an-id").status_code == 404


def test_alert_text_is_escaped_everywhere(viewer: httpx.Client, seeded: Seeded) -> None:
    body = am_body(
        "PagesXss",
        summary=f"{XSS} disk full",
        component="<b>comp</b>",
        annotations={"description": f"{XSS} description", "runbook_url": "javascript:window.__xss = 6",
                     "custom": "<svg onload=alert(1)>"},
        generator="javascript:window.__xss = 5",
    )  # fmt: skip
    incident_id = ingest(seeded.url, body)
    api = viewer.get(f"/api/v1/incidents/{incident_id}").json()
    assert api["title"].startswith("<script>window.__xss = 3</script>")  # stored as sent: it is text
    pages = [
        viewer.get(p).text
        for p in (f"/incidents/{incident_id}", "/incidents", "/", f"/incidents/{incident_id}/timeline")
    ]
    for html in pages:
        for markup in RAW_MARKUP:
            assert markup not in html
    detail = pages[0]
    assert "&lt;script&gt;window.__xss = 3&lt;/script&gt;" in detail and "&lt;b&gt;comp&lt;/b&gt;" in detail
    assert "&lt;svg onload=alert(1)&gt;" in detail
    assert unescape(detail.split('<span class="incident-title">', 1)[1].split("</span>", 1)[0]) == api["title"]
    links = detail.split('<p class="links">', 1)[1].split("</p>", 1)[0]
    assert ">javascript:window.__xss = 5</code>" in unescape(links) and 'href="javascript' not in links  # text only
    assert '<a href="http://am.example" rel="noopener noreferrer nofollow"' in links


def test_list_filters_by_state_severity_and_drill(viewer: httpx.Client, seeded: Seeded) -> None:
    p0 = declare(seeded.url, "Filter P0", "P0")
    p3 = declare(seeded.url, "Filter P3", "P3")
    drill = declare(seeded.url, "Filter drill", "P3", is_drill=True)
    done = declare(seeded.url, "Filter resolved", "P0")
    resolve(seeded.url, done)

    def ids(**params: Any) -> set[str]:
        html = viewer.get("/incidents", params=params).text
        return set(re.findall(r'class="incident-link">(INC-[\d-]+)<', html)) & {p0, p3, drill, done}

    assert ids() == {p0, p3, drill}  # open is the default
    assert ids(state="all") == {p0, p3, drill, done}
    assert ids(state="all", severity="P0") == {p0, done}
    assert ids(severity=["P0", "P3"]) == {p0, p3, drill}
    assert ids(severity="P3", drills="exclude") == {p3}
    bad = viewer.get("/incidents", params={"state": "sometimes", "severity": "P9", "page": "x"})
    assert bad.status_code == 200
    assert "state must be open or all" in bad.text and "severity &#39;P9&#39; is not one of" in bad.text
    assert "page must be a number" in bad.text
    fragment = viewer.get("/incidents", params={"severity": "P0"}, headers={"hx-request": "true"}).text
    assert fragment.lstrip().startswith('<section id="incident-results"') and "<html" not in fragment
    assert p0 in fragment and p3 not in fragment
    assert 'hx-get="/incidents?state=open&amp;severity=P0"' in fragment  # the refresh keeps the filters


def test_countdown_and_breach_marker(viewer: httpx.Client, seeded: Seeded) -> None:
    fresh = declare(seeded.url, "Countdown fresh", "P0")
    late = declare(seeded.url, "Countdown late", "P0", now=datetime.now(UTC) - timedelta(hours=2))
    html = viewer.get("/incidents", params={"severity": "P0"}).text
    row_fresh = html.split(f">{fresh}<", 1)[1].split("</tr>", 1)[0]
    row_late = html.split(f">{late}<", 1)[1].split("</tr>", 1)[0]
    assert "response due in" in row_fresh and "breached" not in row_fresh
    assert "breached" in row_late and "response overdue by 1 h 45 min" in row_late  # P0: 15 minutes to respond
    clock = response_clock(incident_row(seeded.url, late), datetime.now(UTC))
    assert clock.state == "overdue" and clock.breached


# --- actions through the forms ---------------------------------------------------------------------------------


def test_operator_runs_an_incident_through_the_forms(operator: httpx.Client, seeded: Seeded) -> None:
    incident_id = ingest(seeded.url, am_body("PagesForms", severity="critical"))
    path = f"/incidents/{incident_id}"
    token = csrf_of(operator.get(path).text)

    acked = operator.post(f"{path}/ack", data={"csrf_token": token, "message": "on it"})
    assert acked.status_code == 303 and acked.headers["location"].startswith(f"{path}?done=")
    again = operator.post(f"{path}/ack", data={"csrf_token": token})
    assert again.status_code == 303 and "already+acknowledged" in again.headers["location"]

    update = {"status": "working", "actions_taken": "Restarted the <worker>", "next_steps": "Watch the queue",
              "eta": "30 min", "owner": "@operator-two", "csrf_token": token}  # fmt: skip
    assert operator.post(f"{path}/update", data=update).status_code == 303
    nothing = operator.post(f"{path}/update", data={"status": "working", "csrf_token": token})
    assert nothing.status_code == 400 and "nothing to update" in error_of(nothing.text)

    no_reason = operator.post(f"{path}/severity", data={"severity": "P2", "reason": "", "csrf_token": token})
    assert no_reason.status_code == 400 and "a reason is required" in error_of(no_reason.text)
    assert operator.post(f"{path}/severity", data={"severity": "P2", "reason": "one shop only",
                                                   "csrf_token": token}).status_code == 303  # fmt: skip

    partial = {"root_cause": "", "resolution": "Cleared the disk", "prevention": "Alert earlier", "csrf_token": token}
    refused = operator.post(f"{path}/resolve", data=partial)
    assert refused.status_code == 400 and "root cause is required" in error_of(refused.text)
    assert ">Cleared the disk</textarea>" in refused.text  # the form comes back as typed
    assert operator.post(f"{path}/comment", data={"text": "Customer told", "csrf_token": token}).status_code == 303
    full = {**partial, "root_cause": "Logs filled the disk"}
    assert operator.post(f"{path}/resolve", data=full).status_code == 303
    twice = operator.post(f"{path}/resolve", data=full)
    assert twice.status_code == 409 and "already resolved" in error_of(twice.text)

    api = operator.get(f"/api/v1/incidents/{incident_id}").json()
    assert api["status"] == "resolved" and api["severity"] == "P2" and api["severity_reason"] == "one shop only"
    assert api["acknowledged_by"] == "operator" and api["owner"] == "@operator-two"
    assert (api["actions_taken"], api["next_steps"], api["eta"]) == (
        "Restarted the <worker>",
        "Watch the queue",
        "30 min",
    )
    assert (api["root_cause"], api["resolution"], api["prevention"]) == (
        "Logs filled the disk",
        "Cleared the disk",
        "Alert earlier",
    )
    timeline = kinds(api)
    for kind in ("opened", "alert_firing", "acknowledged", "status_update", "severity_changed", "comment", "resolved"):
        assert kind in timeline
    assert timeline.index("acknowledged") < timeline.index("status_update") < timeline.index("resolved")
    actors = {e["kind"]: e["actor"] for e in api["timeline"]}
    assert actors["acknowledged"] == actors["resolved"] == "operator"

    page = operator.get(path).text
    assert "Restarted the &lt;worker&gt;" in page and "Logs filled the disk" in page and 'id="reopen-form"' in page
    assert 'id="resolve-form"' not in page
    assert operator.post(f"{path}/reopen", data={"reason": "It came back", "csrf_token": token}).status_code == 303
    assert operator.get(f"/api/v1/incidents/{incident_id}").json()["status"] == "investigating"


def test_declare_from_the_page(operator: httpx.Client, seeded: Seeded) -> None:
    token = csrf_of(operator.get("/incidents/new").text)
    missing = operator.post("/incidents", data={"title": " ", "severity": "P1", "impact": "kept", "csrf_token": token})
    assert (
        missing.status_code == 400
        and "a title is required" in error_of(missing.text)
        and ">kept</textarea>" in missing.text
    )
    wrong = operator.post("/incidents", data={"title": "x", "severity": "P7", "csrf_token": token})
    assert wrong.status_code == 400 and "is not one of P0, P1, P2, P3" in error_of(wrong.text)
    form = {"title": "Prices <stale>", "severity": "P1", "impact": "Shoppers", "component": "pipeline", "is_drill": "1"}
    made = operator.post("/incidents", data={**form, "csrf_token": token})
    assert made.status_code == 303
    incident_id = made.headers["location"].rsplit("/", 1)[1]
    api = operator.get(f"/api/v1/incidents/{incident_id}").json()
    assert (api["title"], api["severity"], api["impact"], api["component"]) == (
        "Prices <stale>",
        "P1",
        "Shoppers",
        "pipeline",
    )
    assert api["is_drill"] is True and api["source"] == "drill"
    assert api["timeline"][0]["actor"] == "operator" and api["timeline"][0]["message"].startswith("DRILL: ")
    page = operator.get(made.headers["location"]).text
    assert "Prices &lt;stale&gt;" in page and ">drill</span>" in page


def test_silence_from_an_incident(operator: httpx.Client, seeded: Seeded) -> None:
    incident_id = ingest(seeded.url, am_body("PagesSilence", component="queue"))
    detail = operator.get(f"/incidents/{incident_id}").text
    link = unescape(re.search(r'<a href="(/silences\?[^"]+)">Silence these alerts', detail).group(1))  # type: ignore[union-attr]
    prefilled = operator.get(link).text
    assert "alertname=PagesSilence\ncomponent=queue</textarea>" in unescape(prefilled)
    token = csrf_of(prefilled)
    bad = operator.post(
        "/silences", data={"matchers": "alertname", "duration": "2h", "comment": "x", "csrf_token": token}
    )
    assert bad.status_code == 400 and "is not NAME=VALUE" in error_of(bad.text)
    everything = operator.post("/silences", data={"matchers": "alertname=~.*", "duration": "2h", "comment": "x",
                                                  "csrf_token": token})  # fmt: skip
    assert everything.status_code == 400 and "match alerts without those labels" in error_of(everything.text)
    added = operator.post("/silences", data={"matchers": "alertname=PagesSilence\ncomponent=queue", "duration": "1h",
                                             "comment": f"{incident_id} known", "csrf_token": token})  # fmt: skip
    assert added.status_code == 303
    silences = operator.get("/api/v1/silences").json()
    mine = next(s for s in silences if s["comment"] == f"{incident_id} known")
    assert mine["matchers_text"] == "alertname=PagesSilence, component=queue" and mine["created_by"] == "operator"
    assert abs(
        datetime.fromisoformat(mine["ends_at"]) - datetime.fromisoformat(mine["starts_at"]) - timedelta(hours=1)
    ) < timedelta(seconds=1)
    resolve(seeded.url, incident_id)
    muted = parse_alertmanager(am_body("PagesSilence", component="queue"), received_at=datetime.now(UTC))
    engine = db.make_engine(seeded.url)
    with flows.write_lock(engine), db.session_scope(db.session_factory(engine)) as session:
        assert flows.ingest(session, muted.events, now=datetime.now(UTC)).counts() == {"silenced": 1}
    engine.dispose()
    assert operator.post(f"/silences/{mine['id']}/expire", data={"csrf_token": token}).status_code == 303
    assert all(s["id"] != mine["id"] for s in operator.get("/api/v1/silences").json())


def test_writes_need_the_operator_role_and_the_csrf_token(
    viewer: httpx.Client, operator: httpx.Client, dash: str, seeded: Seeded
) -> None:
    incident_id = declare(seeded.url, "Role check", "P3")
    path = f"/incidents/{incident_id}"
    viewer_token = csrf_of(viewer.get(path).text)
    actions: list[tuple[str, dict[str, str]]] = [
        ("ack", {}),
        ("update", {"eta": "soon"}),
        ("resolve", {"root_cause": "a", "resolution": "b", "prevention": "c"}),
        ("severity", {"severity": "P0", "reason": "r"}),
        ("diagnostics", {}),
    ]
    for action, data in actions:
        denied = viewer.post(f"{path}/{action}", data={**data, "csrf_token": viewer_token})
        assert denied.status_code == 403 and "this needs the operator role" in denied.text, action
    assert (
        viewer.post("/incidents", data={"title": "x", "severity": "P1", "csrf_token": viewer_token}).status_code == 403
    )
    assert (
        viewer.post("/silences", data={"matchers": "a=b", "comment": "c", "csrf_token": viewer_token}).status_code
        == 403
    )
    no_csrf = operator.post(f"{path}/ack", data={})
    assert no_csrf.status_code == 403 and "CSRF" in no_csrf.text
    forged = operator.post(f"{path}/ack", data={"csrf_token": viewer_token})  # another session's token
    assert forged.status_code == 403
    with httpx.Client(base_url=dash, timeout=10, headers={"accept": "text/html"}) as anonymous:
        assert anonymous.get("/incidents").headers["location"] == "/login?next=/incidents"
        assert anonymous.post(f"{path}/ack").status_code == 303  # to the login page
    api = viewer.get(f"/api/v1/incidents/{incident_id}").json()
    assert api["acknowledged_at"] is None and api["severity"] == "P3" and api["status"] == "investigating"


def test_checklists_postmortem_and_diagnostics(operator: httpx.Client, seeded: Seeded) -> None:
    incident_id = declare(seeded.url, "Follow-up pages", "P1")
    path = f"/incidents/{incident_id}"
    token = csrf_of(operator.get(path).text)
    assert "They start when the incident is resolved." in operator.get(path).text
    ran = operator.post(f"{path}/diagnostics", data={"csrf_token": token})
    assert ran.status_code == 303 and "Diagnostics+ran" in ran.headers["location"]
    page = operator.get(path).text
    section = page.split('id="h-diagnostics"', 1)[1].split("</section>", 1)[0]
    for check in ("database", "disk", "logs", "roasters"):
        assert f"<td>{check}</td>" in section
    resolve(seeded.url, incident_id)
    if 'id="checklists-form"' in operator.get(path).text:  # unless the recovery loop of the server was faster
        assert operator.post(f"{path}/checklist", data={"csrf_token": token}).status_code == 303
    page = operator.get(path).text
    assert "1. Immediate Actions (0-1 hour)" in page and "<code>immediate.4</code>" in page
    assert operator.post(f"{path}/checklist/immediate.4", data={"csrf_token": token, "done": "1"}).status_code == 303
    checklist = operator.get(f"/api/v1/incidents/{incident_id}/checklist").json()
    item = next(r for r in checklist if r["item"] == "immediate.4")
    assert item["done_at"] is not None and item["done_by"] == "operator"
    assert operator.post(f"{path}/checklist/immediate.4", data={"csrf_token": token, "done": "0"}).status_code == 303
    unknown = operator.post(f"{path}/checklist/nope.9", data={"csrf_token": token})
    assert unknown.status_code == 400 and "no checklist item" in error_of(unknown.text)
    assert operator.post(f"{path}/postmortem", data={"csrf_token": token}).status_code == 303
    postmortem = operator.get(f"/api/v1/incidents/{incident_id}/postmortem").json()
    assert postmortem["required"] is True and postmortem["markdown"]
    page = operator.get(path).text
    assert "severity P1" in page and 'class="raw postmortem"' in page and "Follow-up pages" in page
    api = operator.get(f"/api/v1/incidents/{incident_id}").json()
    assert (
        "diagnostic" in kinds(api) and sum(1 for e in api["timeline"] if "checklist immediate.4" in e["message"]) == 2
    )


def test_create_checklists_through_the_api(seeded: Seeded, dash: str) -> None:
    from tests.web.test_api import api_token

    headers = {"authorization": f"Bearer {api_token(seeded.url, 'operator')}"}
    open_one = declare(seeded.url, "Checklists API open", "P2")
    done = declare(seeded.url, "Checklists API resolved", "P2")
    resolve(seeded.url, done)
    with httpx.Client(base_url=dash, timeout=20, headers=headers) as bot:
        refused = bot.post(f"/api/v1/incidents/{open_one}/checklist")
        assert refused.status_code == 409 and "not resolved" in refused.json()["detail"]
        first = bot.post(f"/api/v1/incidents/{done}/checklist").json()
        again = bot.post(f"/api/v1/incidents/{done}/checklist").json()
        assert first["created"] >= 20 or again["created"] == 0  # the recovery loop may have been first
        assert again == {"incident_id": done, "created": 0}
        assert len(bot.get(f"/api/v1/incidents/{done}/checklist").json()) >= 20
        assert bot.post("/api/v1/incidents/INC-19990101-001/checklist").status_code == 404
    viewer_headers = {"authorization": f"Bearer {api_token(seeded.url, 'viewer')}"}
    assert httpx.post(f"{dash}/api/v1/incidents/{done}/checklist", headers=viewer_headers).status_code == 403


# --- insights on both databases --------------------------------------------------------------------------------


def test_insights_numbers_on_both_databases(db_url: str, tmp_path: Path) -> None:
    db.upgrade(db_url)
    engine = db.make_engine(db_url)
    factory = db.session_factory(engine)
    now = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)  # a Wednesday
    last_monday = datetime(2026, 2, 23, 9, 0, tzinfo=UTC)

    def run(fn: Any) -> Any:
        with flows.write_lock(engine), db.session_scope(factory) as session:
            return fn(session)

    def incident(opened: datetime, severity: str, ack_min: float | None, resolve_h: float | None,
                 drill: bool = False) -> None:  # fmt: skip
        incident_id = run(lambda s: flows.declare(s, title="t", severity=severity, actor="a", now=opened,
                                                  is_drill=drill).id)  # fmt: skip
        if ack_min is not None:
            run(lambda s: flows.ack(s, incident_id, actor="a", now=opened + timedelta(minutes=ack_min)))
        if resolve_h is not None:
            run(lambda s: flows.resolve(s, incident_id, root_cause="r", resolution="r", prevention="r", actor="a",
                                        now=opened + timedelta(hours=resolve_h)))  # fmt: skip

    incident(last_monday, "P0", 20, 1)
    incident(last_monday + timedelta(days=2), "P0", 10, None)
    incident(last_monday + timedelta(days=3), "P2", None, None)
    incident(now - timedelta(hours=5), "P1", 5, 2)
    incident(now - timedelta(hours=4), "P3", 1, 1, drill=True)
    incident(now - timedelta(weeks=10), "P1", 1, 1)  # outside three weeks
    with factory() as session:
        per_severity, response = incident_weeks(session, now, weeks=3)
        with_drills, _ = incident_weeks(session, now, weeks=3, include_drills=True)
    assert [w.week_start.isoformat() for w in per_severity] == ["2026-02-16", "2026-02-23", "2026-03-02"]
    assert [w.counts for w in per_severity] == [
        {"P0": 0, "P1": 0, "P2": 0, "P3": 0},
        {"P0": 2, "P1": 0, "P2": 1, "P3": 0},
        {"P0": 0, "P1": 1, "P2": 0, "P3": 0},
    ]
    assert with_drills[2].counts["P3"] == 1
    week = response[1]
    assert (week.incidents, week.acknowledged, week.resolved) == (3, 2, 1)
    assert (week.mtta_mean_s, week.mtta_median_s, week.mttr_mean_s) == (900.0, 900.0, 3600.0)
    assert response[2].mtta_mean_s == 300.0 and response[2].mttr_median_s == 7200.0
    assert response[0].mtta_mean_s is None and response[0].incidents == 0

    # fetch errors: real runs of a demo shop (ok) and of a shop on a closed port (unreachable), on two days
    with DemoServer([DemoShop("ok", "shopify", make_shopify_products(3, seed=5))]) as demo:
        with db.session_scope(factory) as session:
            service.add_roaster(session, "Fine", demo.url("ok"), platform="shopify", currency="INR")
            service.add_roaster(session, "Gone", f"http://127.0.0.1:{free_port()}", platform="shopify", currency="INR")
        fast = dashboard_settings(db_url, tmp_path)
        for day in (now - timedelta(days=1), now):
            reports = asyncio.run(
                run_many(["Fine", "Gone"], "full", settings=fast, factory=factory, now=lambda d=day: d)
            )
            assert sorted(r.status for r in reports) == ["fail", "ok"]
        asyncio.run(run_many(["Gone"], "full", settings=fast, factory=factory, now=lambda: now))
    with factory() as session:
        days = fetch_errors_per_day(session, now, days=3)
    assert [(d.runs, d.fetch_errors) for d in days] == [(0, 0), (2, 1), (3, 2)]
    assert days[0].rate is None and days[2].rate == pytest.approx(2 / 3, abs=1e-4)
    engine.dispose()


# --- notifications, with the incidents in their own database ------------------------------------------------------


@dataclass
class NotifyDash:
    url: str
    catalog_url: str
    incidents_url: str
    slack: SlackPeer
    hook: WebhookPeer
    hook_origin: str


@pytest.fixture(scope="module")
def notify_dash(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NotifyDash]:
    """A second app: Slack (answering 500) and a webhook (answering 204) configured, incidents in their own
    SQLite file beside the catalog's; its incident runner delivers for real."""
    tmp = tmp_path_factory.mktemp("notify-dash")
    catalog_url, incidents_url = f"sqlite:///{tmp / 'catalog.db'}", f"sqlite:///{tmp / 'incidents.db'}"
    db.upgrade(catalog_url)
    db.upgrade(incidents_url)
    add_users(catalog_url)
    slack, hook = SlackPeer(), WebhookPeer()
    slack.down = True
    with serve_in_thread(slack.app) as slack_port, serve_in_thread(hook.app) as hook_port:
        settings_ = dashboard_settings(
            catalog_url, tmp, incidents_database_url=incidents_url,
            slack_webhook_url=f"http://127.0.0.1:{slack_port}{slack.path}", webhook_url=f"http://127.0.0.1:{hook_port}/hook",
            incident_runner_interval_s=0.05, outbox_backoff_base_s=60.0, recovery_interval_s=0, watchdog_enabled=False,
        )  # fmt: skip
        try:
            with serve_in_thread(create_app(settings_)) as port:
                yield NotifyDash(
                    f"http://127.0.0.1:{port}", catalog_url, incidents_url, slack, hook, f"http://127.0.0.1:{hook_port}"
                )
        finally:
            notify_config.reset()


def test_notifications_per_channel_and_a_separate_incident_store(notify_dash: NotifyDash) -> None:
    operator = login(notify_dash.url, "operator")
    token = csrf_of(operator.get("/incidents/new").text)
    made = operator.post("/incidents", data={"title": "Notify me", "severity": "P1", "csrf_token": token})
    assert made.status_code == 303
    incident_id = made.headers["location"].rsplit("/", 1)[1]
    deadline = time.monotonic() + 15
    while True:
        summary = operator.get(f"/api/v1/incidents/{incident_id}/notifications").json()
        channels = {c["channel"]: c for c in summary["channels"]}
        if channels.get("webhook", {}).get("delivered") and channels.get("slack", {}).get("failed"):
            break
        assert time.monotonic() < deadline, summary
        time.sleep(0.1)
    assert channels["slack"]["delivered"] == 0 and notify_dash.hook.received
    webhook_rows = [n for n in summary["notifications"] if n["channel"] == "webhook"]
    assert webhook_rows[0]["target"] == f"{notify_dash.hook_origin}/…"  # never the whole URL (it may hold a secret)
    slack_rows = [n for n in summary["notifications"] if n["channel"] == "slack"]
    assert slack_rows[0]["status"] == "failed" and "500" in (slack_rows[0]["last_error"] or "")
    page = operator.get(f"/incidents/{incident_id}").text
    slack_row = page.split('<tr data-channel="slack">', 1)[1].split("</tr>", 1)[0]
    hook_row = page.split('<tr data-channel="webhook">', 1)[1].split("</tr>", 1)[0]
    assert re.findall(r'<td class="num[^"]*">(\d+)</td>', slack_row)[:2] == ["0", "1"]
    assert re.findall(r'<td class="num[^"]*">(\d+)</td>', hook_row)[0] == "1"
    assert ">delivered</span>" in page and ">failed</span>" in page
    # the incident lives in the incident store only, and the overview panel reads it from there
    for url, present in ((notify_dash.incidents_url, True), (notify_dash.catalog_url, False)):
        engine = db.make_engine(url)
        with db.session_factory(engine)() as session:
            assert (session.get(Incident, incident_id) is not None) is present
        engine.dispose()
    overview = operator.get("/").text.split('data-slot="incidents"', 1)[1].split("</section>", 1)[0]
    assert incident_id in overview and "Notify me" in overview
    token = csrf_of(operator.get("/silences").text)
    assert (
        operator.post("/silences", data={"matchers": "alertname=X", "comment": "c", "csrf_token": token}).status_code
        == 303
    )
    engine = db.make_engine(notify_dash.incidents_url)
    with db.session_factory(engine)() as session:
        assert session.scalars(select(Silence.comment)).all() == ["c"]
    engine.dispose()
    operator.close()


# --- schemathesis on the new operations ----------------------------------------------------------------------------


def test_new_api_operations_never_answer_500(seeded: Seeded) -> None:
    """``/api/v1/insights``, ``/api/v1/incidents/{id}/notifications`` and ``.../checklist`` fuzzed from /openapi.json:
    no 5xx."""
    from tests.web.test_api import api_token

    incident_id = declare(seeded.url, "Fuzzed", "P3")
    app = create_app(seeded.settings)
    headers = {"Authorization": f"Bearer {api_token(seeded.url, 'operator')}"}
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    schema = schema.include(path_regex=r"^/api/v1/(insights|incidents/\{incident_id\}/(notifications|checklist))$")
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [o for o in operations if not (o.method.upper() == "GET" and o.path.endswith("/checklist"))]  # E's
    assert len(operations) == 3, [str(o) for o in operations]
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(mode))
            @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
            def fuzz(case: Any) -> None:
                response = case.call(headers=headers)
                case.validate_response(response, checks=[not_a_server_error])

            try:
                fuzz()
            except Unsatisfiable:
                continue
    assert asyncio.run(_get(app, f"/api/v1/incidents/{incident_id}/notifications", headers)) == 200


async def _get(app: Any, path: str, headers: dict[str, str]) -> int:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app", headers=headers) as c:
        return (await c.get(path)).status_code
