"""Pure parsing of the three payload shapes into AlertEvents, and the problems that make a 400."""

from __future__ import annotations

import json
from datetime import timedelta

from coffee_scraper.incidents import receivers as r
from tests.incidents.core_support import ROUTING_KEY, T0, am_alert, am_body, iso, pd_event, prom_alert


def test_alertmanager_items_become_events_with_fingerprint_and_status() -> None:
    body = am_body(
        am_alert("DiskUsageWarning", severity="P1", fingerprint="ABCDEF0123456789", component="db"),
        am_alert("HighErrorRate", status="resolved", ends=T0 + timedelta(minutes=3), severity="warning"),
    )
    parsed = r.parse_alertmanager(body, received_at=T0 + timedelta(minutes=5))
    assert parsed.ok and parsed.truncated_alerts == 0
    firing, resolved = parsed.events
    assert (firing.source, firing.action, firing.dedup_key, firing.severity) == (
        "alertmanager",
        "trigger",
        "abcdef0123456789",
        "P1",
    )
    assert firing.ends_at is None and firing.started_at == T0  # the zero endsAt means "none"
    assert firing.title == "DiskUsageWarning summary" and firing.description == "DiskUsageWarning description"
    assert {link["text"] for link in firing.links} == {"Prometheus", "Alertmanager"}
    assert firing.route_key == "coffee-scraper" and firing.group_key == '{}:{alertname="X"}'
    assert firing.raw["group"]["receiver"] == "coffee-scraper" and "alerts" not in firing.raw["group"]
    assert (resolved.action, resolved.severity, resolved.ends_at) == ("resolve", "P2", T0 + timedelta(minutes=3))
    assert resolved.dedup_key == r.labels_hash(resolved.labels)  # no fingerprint: hash of the sorted labels


def test_prometheus_status_comes_from_ends_at() -> None:
    now = T0 + timedelta(minutes=10)
    parsed = r.parse_prometheus(
        [
            prom_alert("A", ends=now + timedelta(seconds=8)),
            prom_alert("B", ends=now - timedelta(seconds=1)),
            prom_alert("C"),
        ],
        received_at=now,
        source_ref="Prometheus/2.42.0+ds 127.0.0.1",
    )
    assert parsed.ok
    a, b, c = parsed.events
    assert (a.action, b.action, c.action) == ("trigger", "resolve", "trigger")
    assert c.ends_at == now + r.Limits().resolve_timeout
    assert a.dedup_key == r.labels_hash({"alertname": "A", "severity": "P1"})
    assert a.source_ref == "Prometheus/2.42.0+ds 127.0.0.1"


def test_the_label_hash_is_order_independent_and_label_sensitive() -> None:
    assert r.labels_hash({"a": "1", "b": "2"}) == r.labels_hash({"b": "2", "a": "1"})
    assert r.labels_hash({"a": "1", "b": "2"}) != r.labels_hash({"a": "1", "b": "3"})
    assert r.labels_hash({"a": "1b", "c": ""}) != r.labels_hash({"a": "1", "bc": ""})


def test_missing_alertname_and_wrong_types_are_listed_as_problems() -> None:
    bad = [{"labels": {"severity": "P1"}}, {"labels": "x"}, prom_alert("ok")]
    parsed = r.parse_prometheus(bad, received_at=T0)
    assert not parsed.ok and parsed.events == []
    assert any("[0].labels.alertname: required" in p for p in parsed.problems)
    assert any(p.startswith("[1].labels") for p in parsed.problems)
    assert r.parse_prometheus({"labels": {}}, received_at=T0).problems == [
        "body must be a JSON array of alerts (Prometheus' POST /api/v2/alerts)"
    ]
    am = r.parse_alertmanager({"version": "4", "alerts": [{"status": "pending", "labels": {}}]}, received_at=T0)
    assert any(p.startswith("alerts.0.status") or p.startswith("alerts[0].status") for p in am.problems)
    assert r.parse_alertmanager({"alerts": [{"status": "firing", "labels": {}}]}, received_at=T0).problems == [
        "alerts[0].labels.alertname: required (every alert needs an alertname label)"
    ]


def test_decode_json_refuses_non_json_nan_and_deep_nesting() -> None:
    assert r.decode_json(b"") == (None, ["body is empty; send a JSON document"])
    assert r.decode_json(b"[1, 2]") == ([1, 2], [])
    assert "not valid JSON" in r.decode_json(b"{")[1][0]
    assert "not valid JSON" in r.decode_json(b'{"a": NaN}')[1][0]
    assert "not valid JSON" in r.decode_json(b"\xff\xfe\x00")[1][0]
    assert r.decode_json(b"[" * 100_000 + b"]" * 100_000)[1]  # too deep, not a crash


def test_text_is_sanitised_and_capped() -> None:
    limits = r.Limits(text_max_chars=50, raw_max_bytes=300)
    alert = prom_alert("Nul\x00Name", ends=T0 + timedelta(minutes=1))
    alert["annotations"] = {"summary": "bad \ud800 surrogate", "description": "x" * 500}
    (event,) = r.parse_prometheus([alert], received_at=T0, limits=limits).events
    assert event.labels["alertname"] == "NulName"
    assert "\ud800" not in event.title and event.title.startswith("bad ")
    assert len(event.description or "") == 50
    stored = r.cap_raw(event.raw, limits.raw_max_bytes)  # raw is kept as received until it is stored
    assert stored["truncated"] is True and len(json.dumps(stored)) < 600
    assert "\x00" not in json.dumps(r.cap_raw({"a\x00": "b\x00"}, 1000))
    assert r.clean_json({"a": float("nan"), "b": [float("inf"), 1.5]}) == {"a": None, "b": [None, 1.5]}


def test_severity_mapping() -> None:
    assert r.map_severity("P0") == "P0" and r.map_severity("p3") == "P3"
    assert r.map_severity("critical", "DatabaseDown") == "P0"  # a P0 rule
    assert r.map_severity("critical", "DiskUsageWarning") == "P1"  # a P1 rule
    assert r.map_severity("critical", "RoasterStale") == "P1"  # a P3 rule: critical is still at least P1
    assert r.map_severity("critical", "Unknown") == "P0"  # unknown: assume the higher
    assert (r.map_severity("error"), r.map_severity("warning"), r.map_severity("info")) == ("P1", "P2", "P3")
    assert r.map_severity(None, "RoasterStale") == "P3" and r.map_severity("whatever") == "P1"


def test_pagerduty_trigger_fields() -> None:
    body = pd_event(
        dedup_key="disk-db1",
        severity="warning",
        component="postgres",
        group="app-stack",
        custom_details={"free_gb": 3, "note": "growing", "nested": {"x": 1}},
        timestamp=iso(T0),
        **{"class": "disk"},
    )
    body["links"] = [{"href": "https://grafana/d/1", "text": "Dashboard"}]
    body["client"], body["client_url"] = "Nagios", "https://nagios/1"
    (event,) = r.parse_pagerduty(body, received_at=T0 + timedelta(minutes=1)).events
    assert event.source == "pagerduty" and event.action == "trigger" and event.reply_key == "disk-db1"
    assert event.severity == "P2" and event.title == "Disk on db1 at 96%" and event.started_at == T0
    assert event.labels == {
        "free_gb": "3",
        "note": "growing",
        "source": "db1.example",
        "component": "postgres",
        "group": "app-stack",
        "class": "disk",
        "alertname": "disk",
    }
    assert event.route_key == r.sha256_hex(ROUTING_KEY) and "routing_key" not in event.raw
    assert ROUTING_KEY not in json.dumps(event.raw)  # the integration key is a secret
    assert {link["text"] for link in event.links} == {"Dashboard", "Nagios"}
    assert '"free_gb": 3' in (event.description or "")


def test_pagerduty_errors_are_phrased_for_its_400() -> None:
    def problems(body: object) -> list[str]:
        return r.parse_pagerduty(body, received_at=T0).problems

    assert problems({**pd_event(), "routing_key": "short"}) == [
        "Length of 'routing_key' is incorrect (should be 32 characters)"
    ]
    assert problems(pd_event("acknowledge")) == ["'dedup_key' is required for event_action acknowledge"]
    assert "'event_action' is invalid" in problems({**pd_event(), "event_action": "explode"})[0]
    trigger = pd_event()
    trigger["payload"] = {"summary": "", "severity": "fatal"}
    assert problems(trigger) == [
        "'payload.summary' is missing or blank",
        "'payload.source' is missing or blank",
        "'payload.severity' is invalid (must be one of critical, error, warning, info)",
    ]
    assert problems({"event_action": "trigger"})[0].startswith("'routing_key'")
    assert problems([1]) == ["Event object must be a JSON object"]


def test_pagerduty_legacy_v1_and_change_events() -> None:
    v1 = {"service_key": ROUTING_KEY, "event_type": "trigger", "incident_key": "old-1", "description": "Old tool"}
    (event,) = r.parse_pagerduty(v1, received_at=T0).events
    assert (event.reply_key, event.title, event.severity) == ("old-1", "Old tool", "P1")
    change = {"routing_key": ROUTING_KEY, "payload": {"summary": "Deployed v1.2", "source": "ci"}}
    parsed = r.parse_pagerduty_change(change, received_at=T0)
    assert parsed.ok and parsed.events == [] and parsed.change_events[0]["summary"] == "Deployed v1.2"
    assert not r.parse_pagerduty_change({"routing_key": ROUTING_KEY}, received_at=T0).ok


def test_watchdog_events_use_the_rule() -> None:
    event = r.watchdog_event("DiskUsageCritical", firing=True, at=T0, labels={"component": "data"}, value=0.97)
    assert event.source == "watchdog" and event.severity == "P0" and event.labels["alertname"] == "DiskUsageCritical"
    assert event.labels["category"] == "Disk Usage Critical" and event.action == "trigger"
