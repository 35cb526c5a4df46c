"""Hypothesis against every receiver (and the write endpoints of the incidents API) over real HTTP.

Bodies are arbitrary bytes, arbitrary JSON, and near-valid payloads of each shape with fields of the wrong type,
odd timestamps (year 1, year 9999 with offsets, nanoseconds), NUL bytes and lone surrogates. The app must never
answer 5xx, and a refused body (4xx) must leave every incident table exactly as it was (no partial writes).
Runs on SQLite and on PostgreSQL (whose text columns refuse NUL bytes, unlike SQLite's).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from coffee_scraper.web import create_app
from tests.incidents.core_support import ROUTING_KEY, Store, api_settings
from tests.support import serve_in_thread

AUTH = {"Authorization": "Bearer test-token-0123456789", "content-type": "application/json"}
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))

texts = st.text(max_size=12) | st.sampled_from(["", "\x00", "a\x00b", "\ud800", "é", "P0", "critical", "x" * 300])
scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | texts
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=25,
)
timestamps = st.one_of(
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
    st.sampled_from(
        [
            "0001-01-01T00:00:00Z",
            "0001-01-01T00:00:00+05:00",
            "9999-12-31T23:59:59-05:00",
            "2026-11-30T10:00:00.123456789Z",
            "2026-11-30",
            "not a time",
            "",
        ]
    ),
    st.integers(-(2**40), 2**40),
    texts,
)
label_maps = st.dictionaries(texts, texts, max_size=5).map(lambda d: {"alertname": "Fuzz", **d}) | st.dictionaries(
    texts, json_values, max_size=4
)
annotations = st.dictionaries(texts, texts | json_values, max_size=4)
prom_alerts = st.fixed_dictionaries(
    {"labels": label_maps},
    optional={"annotations": annotations, "startsAt": timestamps, "endsAt": timestamps, "generatorURL": texts},
)
am_items = st.fixed_dictionaries(
    {"status": st.sampled_from(["firing", "resolved", "pending"]) | texts, "labels": label_maps},
    optional={
        "annotations": annotations,
        "startsAt": timestamps,
        "endsAt": timestamps,
        "fingerprint": st.text("0123456789abcdef", min_size=1, max_size=70) | texts,
    },
)
am_bodies = st.fixed_dictionaries(
    {"alerts": st.lists(am_items, max_size=5)},
    optional={
        "version": st.just("4") | texts,
        "groupKey": texts,
        "truncatedAlerts": st.integers(-5, 5) | texts,
        "receiver": texts,
        "externalURL": texts,
        "commonLabels": label_maps,
        "status": texts,
    },
)
pd_payloads = st.fixed_dictionaries(
    {},
    optional={
        "summary": texts,
        "source": texts,
        "severity": st.sampled_from(["critical", "error", "info", "x"]),
        "timestamp": timestamps,
        "component": texts,
        "group": texts,
        "class": texts,
        "custom_details": json_values,
    },
)
pd_bodies = st.fixed_dictionaries(
    {
        "routing_key": st.just(ROUTING_KEY) | texts,
        "event_action": st.sampled_from(["trigger", "acknowledge", "resolve"]) | texts,
    },
    optional={
        "dedup_key": st.sampled_from(["k1", "k2", ""]) | texts,
        "payload": pd_payloads | json_values,
        "links": st.lists(st.fixed_dictionaries({"href": texts}, optional={"text": texts}), max_size=2),
        "images": st.lists(st.fixed_dictionaries({"src": texts}), max_size=2),
        "client": texts,
    },
)
declare_bodies = st.fixed_dictionaries(
    {"title": texts, "severity": st.sampled_from(["P0", "P1", "P2", "P3", "P9"]) | texts},
    optional={"impact": texts | json_values, "owner": texts, "is_drill": st.booleans() | texts, "actor": texts},
)


class Target:
    def __init__(self, base: str, store: Store) -> None:
        self.base = base
        self.store = store
        self.client = httpx.Client(timeout=30)  # one client: a new one per call costs ~150 ms (TLS context)

    def check(self, path: str, content: bytes) -> None:
        before = self.store.counts()
        r = self.client.post(self.base + path, content=content, headers=AUTH)
        assert r.status_code < 500, (r.status_code, r.text[:500], content[:300])
        if r.status_code >= 400:
            after = self.store.counts()
            assert after == before, (r.status_code, r.text[:300], self.store.latest_events(3))
        r.json()  # every answer is JSON

    def post_json(self, path: str, value: Any) -> None:
        self.check(path, json.dumps(value).encode("utf-8", "surrogatepass"))


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    admin = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp / 'fuzz.db'}"
    else:
        server = str(request.getfixturevalue("pg_server"))
        name = f"coffee_fuzz_{uuid.uuid4().hex[:10]}"
        admin = create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(server).set(database=name).render_as_string(hide_password=False)
    store = Store(url)
    app = create_app(api_settings(url, tmp, incident_pagerduty_rate_per_min=100_000))
    with serve_in_thread(app) as port:
        fuzz = Target(f"http://127.0.0.1:{port}", store)
        yield fuzz
        fuzz.client.close()
    store.close()
    if admin is not None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
        admin.dispose()


RECEIVERS = ["/api/v2/alerts", "/api/v1/alerts/alertmanager", "/api/v1/alerts/pagerduty"]


@FUZZ
@given(body=st.binary(max_size=300), path=st.sampled_from(RECEIVERS))
def test_arbitrary_bytes(target: Target, body: bytes, path: str) -> None:
    target.check(path, body)


@FUZZ
@given(value=json_values, path=st.sampled_from(RECEIVERS))
def test_arbitrary_json(target: Target, value: Any, path: str) -> None:
    target.post_json(path, value)


@FUZZ
@given(alerts=st.lists(prom_alerts, max_size=6))
def test_prometheus_shaped(target: Target, alerts: list[dict[str, Any]]) -> None:
    target.post_json("/api/v2/alerts", alerts)


@FUZZ
@given(body=am_bodies)
def test_alertmanager_shaped(target: Target, body: dict[str, Any]) -> None:
    target.post_json("/api/v1/alerts/alertmanager", body)


@FUZZ
@given(body=pd_bodies)
def test_pagerduty_shaped(target: Target, body: dict[str, Any]) -> None:
    target.post_json("/api/v1/alerts/pagerduty", body)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=declare_bodies)
def test_declare_shaped(target: Target, body: dict[str, Any]) -> None:
    target.post_json("/api/v1/incidents", body)
