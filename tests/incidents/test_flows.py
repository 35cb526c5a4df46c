"""Alerts → incidents on real SQLite and PostgreSQL: idempotency, grouping, ordering, flapping, resolve →
resolve-pending → auto-resolve, severity, silences and maintenance, response deadlines, MTTA/MTTR.

Time is injected (``now=``); payloads are the senders' real shapes (``core_support``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from coffee_scraper.incidents import flows, service, silences
from coffee_scraper.incidents.errors import Conflict, IncidentError, NotFound
from tests.incidents.core_support import POLICY, T0, Store, am_alert, am_body, pd_event, prom_alert

M = timedelta(minutes=1)
S = timedelta(seconds=1)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    yield s
    s.close()


# --- idempotency ------------------------------------------------------------------------------------------


def test_the_same_alert_posted_five_times_is_one_alert_and_one_incident(store: Store) -> None:
    body = am_body(am_alert("DiskUsageWarning", severity="P1", component="db", fingerprint="0123456789abcdef"))
    results = [store.am(body, T0 + i * S) for i in range(5)]
    assert [r.counts() for r in results] == [{"opened": 1}] + [{"duplicate": 1}] * 4
    (alert,) = store.alerts()
    (incident,) = store.incidents()
    assert alert.receive_count == 5 and alert.fingerprint == "0123456789abcdef"
    assert alert.incident_id == incident.id and incident.severity == "P1"
    assert incident.id == "INC-20261130-001"
    assert store.kinds(incident.id) == ["opened", "alert_firing"]  # repeats write nothing to the timeline


def test_prometheus_repeats_refresh_the_expiry_and_write_nothing_else(store: Store) -> None:
    store.prom([prom_alert("HighErrorRate", ends=T0 + 8 * S)], T0)
    store.prom([prom_alert("HighErrorRate", ends=T0 + 68 * S)], T0 + M)
    (alert,) = store.alerts()
    assert alert.receive_count == 2 and alert.ends_at == T0 + 68 * S and alert.status == "firing"
    (incident,) = store.incidents()
    assert store.kinds(incident.id) == ["opened", "alert_firing"]


def test_a_prometheus_alert_without_ends_at_expires_after_the_resolve_timeout(store: Store) -> None:
    store.prom([prom_alert("HighErrorRate")], T0)
    (alert,) = store.alerts()
    assert alert.ends_at == T0 + POLICY.limits.resolve_timeout


# --- grouping ---------------------------------------------------------------------------------------------


def test_alerts_of_one_rule_and_component_group_into_one_incident(store: Store) -> None:
    store.am(am_body(am_alert("HighErrorRate", component="fetcher", instance="a")), T0)
    r = store.am(am_body(am_alert("HighErrorRate", component="fetcher", instance="b")), T0 + M)
    assert r.counts() == {"grouped": 1}
    store.am(am_body(am_alert("HighErrorRate", component="db", instance="a")), T0 + 2 * M)  # other component
    store.am(am_body(am_alert("DiskUsageWarning", component="fetcher")), T0 + 3 * M)  # other rule
    incidents = store.incidents()
    assert len(incidents) == 3
    first = store.detail(incidents[0].id)
    assert (first["rule"], first["component"], first["alerts_firing"]) == ("HighErrorRate", "fetcher", 2)
    joined = [e for e in first["timeline"] if e["kind"] == "alert_firing"][1]
    assert "same rule" in joined["data"]["reason"]  # explainable grouping


def test_grouping_window_is_rolling_on_alert_activity(store: Store) -> None:
    store.am(am_body(am_alert("HighErrorRate", component="fetcher", instance="a")), T0)
    # still firing: repeats keep the incident's activity fresh, so a sibling 2 h later joins it
    store.am(am_body(am_alert("HighErrorRate", component="fetcher", instance="a")), T0 + 90 * M)
    store.am(am_body(am_alert("HighErrorRate", component="fetcher", instance="b")), T0 + 120 * M)
    assert len(store.incidents()) == 1
    # no activity for longer than the window: a new alert of the same group opens a new incident
    store.am(am_body(am_alert("HighErrorRate", component="fetcher", instance="c")), T0 + 190 * M)
    assert len(store.incidents()) == 2


def test_alerts_without_alertname_grouping_key_never_collapse(store: Store) -> None:
    """PagerDuty events without ``class`` have no rule: each opens its own incident."""
    store.pd(pd_event(dedup_key="a", summary="one"), T0)
    store.pd(pd_event(dedup_key="b", summary="two"), T0 + S)
    assert len(store.incidents()) == 2


def test_a_mixed_alertmanager_body_is_applied_item_by_item(store: Store) -> None:
    store.am(am_body(am_alert("A", component="x"), am_alert("B", component="x")), T0)
    mixed = am_body(am_alert("A", component="x", status="resolved", ends=T0 + M), am_alert("B", component="x"))
    assert mixed["status"] == "firing"
    r = store.am(mixed, T0 + 2 * M)
    assert sorted(o.result for o in r.outcomes) == ["duplicate", "resolved"]
    by_name = {a.alertname: a.status for a in store.alerts()}
    assert by_name == {"A": "resolved", "B": "firing"}


# --- ordering ---------------------------------------------------------------------------------------------


def test_a_late_firing_of_an_activation_the_sender_resolved_is_stale(store: Store) -> None:
    store.am(am_body(am_alert("A")), T0)
    store.am(am_body(am_alert("A", status="resolved", ends=T0 + M)), T0 + 2 * M)
    r = store.am(am_body(am_alert("A")), T0 + 3 * M)  # delayed duplicate of the first delivery
    assert r.counts() == {"stale": 1}
    (alert,) = store.alerts()
    assert alert.status == "resolved"
    # a new activation (new startsAt) fires again
    r = store.am(am_body(am_alert("A", starts=T0 + 4 * M)), T0 + 4 * M)
    assert r.counts() == {"refired": 1}


def test_a_resolve_before_any_firing_is_kept_so_the_late_firing_is_ignored(store: Store) -> None:
    assert store.am(am_body(am_alert("A", status="resolved", ends=T0 + M)), T0 + 2 * M).counts() == {"stored": 1}
    assert store.am(am_body(am_alert("A")), T0 + 3 * M).counts() == {"stale": 1}
    assert store.incidents() == []


def test_expiry_resolves_an_unrefreshed_prometheus_alert_and_a_later_refresh_revives_it(store: Store) -> None:
    store.prom([prom_alert("HighErrorRate", ends=T0 + 8 * S)], T0)
    assert store.sweep(T0 + 5 * S).expired == 0
    swept = store.sweep(T0 + 30 * S)
    assert swept.expired == 1 and swept.resolve_pending == 1
    (incident,) = store.incidents()
    assert incident.resolve_pending_since == T0 + 30 * S
    # Prometheus was only late: the same activation arrives again and is taken (expiry is not the sender's word)
    r = store.prom([prom_alert("HighErrorRate", ends=T0 + 90 * S)], T0 + 60 * S)
    assert r.counts() == {"refired": 1}
    assert store.kinds(incident.id)[-3:] == ["resolve_pending", "reopened", "alert_firing"]


# --- resolve → pending → auto-resolve ----------------------------------------------------------------------


def test_resolve_pending_then_auto_resolve_after_the_quiet_period(store: Store) -> None:
    store.am(am_body(am_alert("A", component="x", instance="1"), am_alert("A", component="x", instance="2")), T0)
    store.am(am_body(am_alert("A", component="x", instance="1", status="resolved", ends=T0 + M)), T0 + M)
    (incident,) = store.incidents()
    assert incident.resolve_pending_since is None  # instance 2 still fires
    store.am(am_body(am_alert("A", component="x", instance="2", status="resolved", ends=T0 + 2 * M)), T0 + 2 * M)
    (incident,) = store.incidents()
    assert incident.resolve_pending_since == T0 + 2 * M and incident.status == "investigating"
    assert store.sweep(T0 + 11 * M).auto_resolved == []  # 9 min quiet < 10
    assert store.sweep(T0 + 12 * M).auto_resolved == [incident.id]
    detail = store.detail(incident.id)
    assert detail["status"] == "resolved" and detail["resolved_at"] is not None
    assert detail["resolution"].startswith("Auto-resolved")
    assert [k for k in store.kinds(incident.id) if k in ("resolve_pending", "resolved")] == [
        "resolve_pending",
        "resolved",
    ]
    assert store.sweep(T0 + 20 * M).auto_resolved == []  # idempotent


def test_an_alert_firing_again_during_the_quiet_period_reopens_the_incident(store: Store) -> None:
    store.am(am_body(am_alert("A", component="x")), T0)
    store.am(am_body(am_alert("A", component="x", status="resolved", ends=T0 + M)), T0 + M)
    r = store.am(am_body(am_alert("A", component="x", starts=T0 + 5 * M)), T0 + 5 * M)
    assert r.counts() == {"refired": 1}
    (incident,) = store.incidents()
    assert incident.resolve_pending_since is None and incident.status == "investigating"
    assert "reopened" in store.kinds(incident.id)
    assert store.sweep(T0 + 30 * M).auto_resolved == []


def test_a_new_alert_of_the_group_after_auto_resolve_opens_a_new_incident(store: Store) -> None:
    store.am(am_body(am_alert("A", component="x")), T0)
    store.am(am_body(am_alert("A", component="x", status="resolved", ends=T0 + M)), T0 + M)
    store.sweep(T0 + 15 * M)
    r = store.am(am_body(am_alert("A", component="x", starts=T0 + 20 * M)), T0 + 20 * M)
    assert r.counts() == {"refired": 1}
    first, second = store.incidents()
    assert first.status == "resolved" and second.status == "investigating"
    assert store.alerts()[0].incident_id == second.id
    # the first incident still lists the alert it had (linked through its timeline)
    assert [a["id"] for a in store.detail(first.id)["alerts"]] == [store.alerts()[0].id]


def test_auto_resolve_can_be_turned_off(db_url: str) -> None:
    store = Store(db_url, flows.Policy(auto_resolve=False))
    try:
        store.am(am_body(am_alert("A")), T0)
        store.am(am_body(am_alert("A", status="resolved", ends=T0 + M)), T0 + M)
        assert store.sweep(T0 + 5 * 60 * M).auto_resolved == []
        (incident,) = store.incidents()
        assert incident.resolve_pending_since is not None and incident.status == "investigating"
    finally:
        store.close()


# --- flapping --------------------------------------------------------------------------------------------


def test_a_flapping_alert_stops_writing_the_timeline_and_holds_the_incident_open(store: Store) -> None:
    t = T0
    store.am(am_body(am_alert("Flappy", starts=t)), t)
    (incident,) = store.incidents()
    for cycle in range(1, 6):  # resolve after 1 min, fire again 1 min later, five times
        t += M
        store.am(am_body(am_alert("Flappy", starts=t - M, status="resolved", ends=t)), t)
        t += M
        store.am(am_body(am_alert("Flappy", starts=t)), t)
        assert store.alerts()[0].flap_count == cycle
    kinds = store.kinds(incident.id)
    # entries stop once flapping is reached (the 3rd re-fire, recorded with a flapping note); the quiet-period
    # reopen during the first cycles is recorded
    assert kinds.count("alert_firing") == 1 + 3
    flapping_entry = [e for e in store.detail(incident.id)["timeline"] if e["kind"] == "alert_firing"][-1]
    assert flapping_entry["data"]["flapping"] is True and "flapping" in flapping_entry["message"]
    # its resolve does not make the incident resolve-pending at once ...
    t += M
    store.am(am_body(am_alert("Flappy", starts=t - M, status="resolved", ends=t)), t)
    (incident,) = store.incidents()
    assert incident.resolve_pending_since is None
    assert store.sweep(t + 5 * M).resolve_pending == 0
    # ... only after it stayed resolved for the flap window
    assert store.sweep(t + 11 * M).resolve_pending == 1
    assert store.sweep(t + 22 * M).auto_resolved == [incident.id]


def test_a_refire_long_after_the_resolve_resets_the_flap_count(store: Store) -> None:
    store.am(am_body(am_alert("A")), T0)
    store.am(am_body(am_alert("A", status="resolved", ends=T0 + M)), T0 + M)
    store.am(am_body(am_alert("A", starts=T0 + 2 * M)), T0 + 2 * M)
    assert store.alerts()[0].flap_count == 1
    store.am(am_body(am_alert("A", starts=T0 + 2 * M, status="resolved", ends=T0 + 3 * M)), T0 + 3 * M)
    store.am(am_body(am_alert("A", starts=T0 + 60 * M)), T0 + 60 * M)
    assert store.alerts()[0].flap_count == 0


# --- severity ----------------------------------------------------------------------------------------------


def test_incident_severity_is_the_highest_of_its_alerts(store: Store) -> None:
    store.am(am_body(am_alert("HighErrorRate", severity="P2", component="x", instance="a")), T0)
    store.am(am_body(am_alert("HighErrorRate", severity="P0", component="x", instance="b")), T0 + M)
    store.am(am_body(am_alert("HighErrorRate", severity="P3", component="x", instance="c")), T0 + 2 * M)
    (incident,) = store.incidents()
    assert incident.severity == "P0"
    assert incident.response_due_at == T0 + timedelta(minutes=15)  # the P0 response time from alert_config
    changed = [e for e in store.detail(incident.id)["timeline"] if e["kind"] == "severity_changed"]
    assert [(e["data"]["from"], e["data"]["to"], e["data"]["automatic"]) for e in changed] == [("P2", "P0", True)]


def test_a_person_lowers_the_severity_with_a_reason_and_repeats_do_not_undo_it(store: Store) -> None:
    store.am(am_body(am_alert("HighErrorRate", severity="P0", component="x")), T0)
    (incident,) = store.incidents()
    with pytest.raises(IncidentError, match="reason"):
        store.tx(lambda s: flows.change_severity(s, incident.id, severity="P2", reason=" ", actor="alice", now=T0))
    store.tx(
        lambda s: flows.change_severity(
            s, incident.id, severity="P2", reason="only the staging shop", actor="alice", now=T0 + M
        )
    )
    store.am(am_body(am_alert("HighErrorRate", severity="P0", component="x")), T0 + 2 * M)  # a repeat
    detail = store.detail(incident.id)
    assert detail["severity"] == "P2" and detail["severity_reason"] == "only the staging shop"
    assert detail["response_due_at"] == (T0 + timedelta(hours=2)).isoformat()
    # a new, higher alert raises it again
    store.am(am_body(am_alert("HighErrorRate", severity="P1", component="x", instance="b")), T0 + 3 * M)
    assert store.detail(incident.id)["severity"] == "P1"


def test_severity_labels_map_to_the_runbook_levels(store: Store) -> None:
    store.am(am_body(am_alert("DatabaseDown", severity="critical")), T0)  # known P0 rule
    store.am(am_body(am_alert("DiskUsageWarning", severity="critical")), T0)  # known P1 rule
    store.am(am_body(am_alert("SomethingElse", severity="warning")), T0)
    assert [a.severity for a in store.alerts()] == ["P0", "P1", "P2"]
    assert store.incidents()[0].category == "Database Failure"


# --- silences and maintenance ----------------------------------------------------------------------------------


def test_a_silenced_alert_is_stored_but_opens_nothing_and_resolves_still_count(store: Store) -> None:
    silence = store.tx(
        lambda s: (
            silences.add_silence(
                s,
                [silences.parse_matcher("alertname=DiskUsageWarning"), silences.parse_matcher("component=~db.*")],
                starts_at=T0,
                ends_at=T0 + 60 * M,
                created_by="alice",
                comment="disk being replaced",
                now=T0,
            ).id
        )
    )
    r = store.am(
        am_body(am_alert("DiskUsageWarning", component="db1"), am_alert("DiskUsageWarning", component="web")), T0 + M
    )
    assert sorted(o.result for o in r.outcomes) == ["opened", "silenced"]
    muted = next(a for a in store.alerts() if a.labels["component"] == "db1")
    assert muted.silenced_by == f"silence:{silence}" and muted.incident_id is None
    assert len(store.incidents()) == 1
    # the silence expires while the alert still fires: the next repeat opens an incident
    store.tx(lambda s: silences.expire_silence(s, silence, now=T0 + 30 * M))
    r = store.am(am_body(am_alert("DiskUsageWarning", component="db1")), T0 + 31 * M)
    assert r.counts() == {"opened": 1}
    assert len(store.incidents()) == 2


def test_matchers_follow_alertmanager_semantics() -> None:
    assert silences.parse_matcher('instance=~"web-.*"').matches({"instance": "web-1"})
    assert not silences.parse_matcher("instance=~web").matches({"instance": "web-1"})  # anchored
    assert silences.parse_matcher("team!=db").matches({})  # a missing label is ""
    with pytest.raises(IncidentError, match="everything"):
        silences.check_matchers([silences.parse_matcher("team!=db")])
    with pytest.raises(IncidentError, match="regular expression"):
        silences.parse_matcher("a=~(")
    with pytest.raises(IncidentError, match="NAME=VALUE"):
        silences.parse_matcher("no operator")


def test_maintenance_windows_mute_their_components_only_while_they_last(store: Store) -> None:
    store.tx(
        lambda s: silences.add_maintenance(
            s,
            starts_at=T0 + 10 * M,
            ends_at=T0 + 70 * M,
            components=["db"],
            comment="PostgreSQL upgrade",
            created_by="alice",
            now=T0,
        )
    )
    before = store.am(am_body(am_alert("A", component="db")), T0 + 5 * M)
    inside = store.am(am_body(am_alert("B", component="db"), am_alert("C", component="web")), T0 + 20 * M)
    after = store.am(am_body(am_alert("D", component="db")), T0 + 80 * M)
    assert before.counts() == {"opened": 1} and after.counts() == {"opened": 1}
    assert sorted(o.result for o in inside.outcomes) == ["opened", "silenced"]
    assert next(a for a in store.alerts() if a.alertname == "B").silenced_by.startswith("maintenance:")


def test_a_window_without_components_mutes_everything(store: Store) -> None:
    store.tx(
        lambda s: silences.add_maintenance(
            s, starts_at=T0, ends_at=T0 + 60 * M, components=[], comment="datacentre move", created_by="bob", now=T0
        )
    )
    assert store.am(am_body(am_alert("A"), am_alert("B", component="x")), T0 + M).counts() == {"silenced": 2}
    with pytest.raises(IncidentError, match="past"):
        store.tx(
            lambda s: silences.add_maintenance(
                s, starts_at=T0 - 60 * M, ends_at=T0 - M, components=[], comment="x", created_by="bob", now=T0
            )
        )


# --- PagerDuty semantics -----------------------------------------------------------------------------------


def test_pagerduty_trigger_ack_resolve_by_dedup_key(store: Store) -> None:
    r, key = store.pd(pd_event(), T0)  # no dedup_key: one is generated and answered
    assert r.counts() == {"opened": 1} and key and len(key) == 32
    r, _ = store.pd(pd_event(dedup_key=key), T0 + M)
    assert r.counts() == {"duplicate": 1}
    other_route = pd_event("acknowledge", dedup_key=key, routing_key="X" * 32)
    assert store.pd(other_route, T0 + M)[0].counts() == {"dropped": 1}  # keys are scoped to the routing key
    assert store.pd(pd_event("acknowledge", dedup_key=key), T0 + 2 * M)[0].counts() == {"acknowledged": 1}
    (incident,) = store.incidents()
    assert incident.acknowledged_at == T0 + 2 * M and incident.owner is None
    assert store.pd(pd_event("resolve", dedup_key=key), T0 + 3 * M)[0].counts() == {"resolved": 1}
    assert store.pd(pd_event("resolve", dedup_key=key), T0 + 4 * M)[0].counts() == {"dropped": 1}
    assert store.pd(pd_event("resolve", dedup_key="never-seen"), T0 + 4 * M)[0].counts() == {"dropped": 1}
    # after resolve, a trigger with the same key is a new alert activation (same row, fired again)
    assert store.pd(pd_event(dedup_key=key), T0 + 30 * M)[0].counts() == {"refired": 1}
    assert len(store.alerts()) == 1


# --- people: declare, ack, update, resolve ------------------------------------------------------------------


def test_the_runbook_lifecycle_by_hand(store: Store) -> None:
    incident_id = store.tx(
        lambda s: (
            flows.declare(
                s, title="Catalog not updating", severity="P1", impact="prices stale", actor="alice", now=T0
            ).id
        )
    )
    store.tx(lambda s: flows.ack(s, incident_id, actor="bob", now=T0 + 5 * M))
    assert store.tx(lambda s: flows.ack(s, incident_id, actor="carol", now=T0 + 6 * M))[1] is False  # idempotent
    store.tx(
        lambda s: flows.update(
            s,
            incident_id,
            actor="bob",
            now=T0 + 10 * M,
            status="working",
            actions_taken="restarted the worker",
            next_steps="watch the queue",
            eta="11:00 UTC",
        )
    )
    with pytest.raises(IncidentError, match="root cause"):
        store.tx(
            lambda s: flows.resolve(
                s, incident_id, root_cause="", resolution="r", prevention="p", actor="bob", now=T0 + 20 * M
            )
        )
    store.tx(
        lambda s: flows.resolve(
            s,
            incident_id,
            root_cause="disk full",
            resolution="cleaned /tmp",
            prevention="disk alert at 85%",
            actor="bob",
            now=T0 + 40 * M,
        )
    )
    d = store.detail(incident_id)
    assert (d["status"], d["owner"], d["acknowledged_by"], d["eta"]) == ("resolved", "bob", "bob", "11:00 UTC")
    assert d["working_at"] == (T0 + 10 * M).isoformat()
    assert [e["kind"] for e in d["timeline"]] == [
        "opened",
        "acknowledged",
        "owner_changed",
        "status_update",
        "resolved",
    ]
    assert d["timeline"][-1]["data"]["duration_s"] == 40 * 60
    assert d["version"] == 5  # one bump per timeline entry
    with pytest.raises(Conflict, match="already resolved"):
        store.tx(
            lambda s: flows.resolve(
                s, incident_id, root_cause="a", resolution="b", prevention="c", actor="x", now=T0 + 41 * M
            )
        )
    with pytest.raises(Conflict, match="reopen"):
        store.tx(lambda s: flows.update(s, incident_id, actor="x", now=T0 + 41 * M, eta="soon"))
    store.tx(lambda s: flows.reopen(s, incident_id, actor="alice", reason="it came back", now=T0 + 50 * M))
    assert store.detail(incident_id)["status"] == "investigating"


def test_update_validates_and_acknowledges_implicitly(store: Store) -> None:
    incident_id = store.tx(lambda s: flows.declare(s, title="x", severity="P2", actor="a", now=T0).id)
    with pytest.raises(IncidentError, match="resolve"):
        store.tx(lambda s: flows.update(s, incident_id, actor="a", now=T0, status="resolved"))
    with pytest.raises(IncidentError, match="nothing to update"):
        store.tx(lambda s: flows.update(s, incident_id, actor="a", now=T0))
    with pytest.raises(NotFound):
        store.tx(lambda s: flows.ack(s, "INC-20000101-001", actor="a", now=T0))
    with pytest.raises(IncidentError, match="P0, P1"):
        store.tx(lambda s: flows.declare(s, title="x", severity="P5", actor="a", now=T0))
    store.tx(lambda s: flows.update(s, incident_id, actor="dave", now=T0 + M, next_steps="look at logs"))
    d = store.detail(incident_id)
    assert d["acknowledged_by"] == "dave" and d["last_status_update_at"] == (T0 + M).isoformat()


def test_a_manual_resolve_resolves_the_firing_alerts_with_it(store: Store) -> None:
    store.am(am_body(am_alert("A", component="x")), T0)
    (incident,) = store.incidents()
    store.tx(
        lambda s: flows.resolve(s, incident.id, root_cause="a", resolution="b", prevention="c", actor="bob", now=T0 + M)
    )
    (alert,) = store.alerts()
    assert (alert.status, alert.resolved_by) == ("resolved", "manual")
    # the condition persists: Prometheus' next repeat of the same activation opens a new incident (honest)
    assert store.am(am_body(am_alert("A", component="x")), T0 + 2 * M).counts() == {"refired": 1}
    assert len(store.incidents()) == 2


# --- response deadlines, MTTA / MTTR ------------------------------------------------------------------------


def test_response_deadline_breach_is_recorded_once(store: Store) -> None:
    incident_id = store.tx(lambda s: flows.declare(s, title="db down", severity="P0", actor="a", now=T0).id)
    assert store.sweep(T0 + 14 * M).breached == []
    assert store.sweep(T0 + 16 * M).breached == [incident_id]
    assert store.sweep(T0 + 17 * M).breached == []
    store.tx(lambda s: flows.ack(s, incident_id, actor="bob", now=T0 + 20 * M))
    d = store.detail(incident_id)
    assert d["response_breached_at"] == (T0 + 15 * M).isoformat()
    assert store.kinds(incident_id).count("response_breached") == 1


def test_a_late_ack_records_the_breach_even_without_a_sweep(store: Store) -> None:
    late = store.tx(lambda s: flows.declare(s, title="late", severity="P1", actor="a", now=T0).id)
    on_time = store.tx(lambda s: flows.declare(s, title="on time", severity="P1", actor="a", now=T0).id)
    store.tx(lambda s: flows.ack(s, late, actor="bob", now=T0 + 31 * M))
    store.tx(lambda s: flows.ack(s, on_time, actor="bob", now=T0 + 29 * M))
    assert store.kinds(late)[:2] == ["opened", "response_breached"]
    assert "response_breached" not in store.kinds(on_time)
    assert store.sweep(T0 + 60 * M).breached == []


def test_mtta_and_mttr(store: Store) -> None:
    def run(title: str, opened_min: int, ack_min: int | None, resolve_min: int | None, drill: bool = False) -> None:
        opened = T0 + opened_min * M
        iid = store.tx(lambda s: flows.declare(s, title=title, severity="P2", actor="a", now=opened, is_drill=drill).id)
        if ack_min is not None:
            store.tx(lambda s: flows.ack(s, iid, actor="b", now=opened + ack_min * M))
        if resolve_min is not None:
            store.tx(
                lambda s: flows.resolve(
                    s, iid, root_cause="r", resolution="r", prevention="p", actor="b", now=opened + resolve_min * M
                )
            )

    run("one", 0, 2, 30)
    run("two", 10, 4, 60)
    run("three", 20, 12, None)
    run("a drill", 30, 100, 200, drill=True)
    with store.factory() as session:
        stats = service.stats(session)
        with_drills = service.stats(session, include_drills=True)
    assert stats["incidents"] == 3 and stats["open"] == 1 and with_drills["incidents"] == 4
    assert stats["mtta_s"]["mean"] == 6 * 60 and stats["mtta_s"]["median"] == 4 * 60
    assert stats["mttr_s"]["mean"] == 45 * 60 and stats["mttr_s"]["n"] == 2
    assert stats["by_severity"]["P2"]["mtta_s"]["n"] == 3 and stats["by_severity"]["P0"]["incidents"] == 0
    with store.factory() as session:
        assert service.stats(session, since=T0 + 5 * M)["incidents"] == 2


def test_the_timeline_is_append_only_and_reactions_run_in_the_same_transaction(store: Store) -> None:
    """A failing reaction rolls the whole change back: no event without its consequences, and vice versa."""
    incident_id = store.tx(lambda s: flows.declare(s, title="x", severity="P3", actor="a", now=T0).id)
    before = store.counts()

    def comment_then_fail(session: object) -> None:
        flows.comment(session, incident_id, body="will be rolled back", actor="a", now=T0 + M)  # type: ignore[arg-type]
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.tx(comment_then_fail)
    assert store.counts() == before
    store.tx(lambda s: flows.comment(s, incident_id, body="kept", actor="a", now=T0 + 2 * M))
    ids = [e["id"] for e in store.detail(incident_id)["timeline"]]
    assert ids == sorted(ids) and len(ids) == 2
