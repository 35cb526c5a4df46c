"""Pure parts of the watchdog: windowed increases and quantiles as Prometheus computes them, the threshold
comparisons, ``for`` hysteresis, no-data handling, vanished components and inhibition. No I/O.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import timedelta

import pytest

from coffee_scraper.incidents import measure as ms
from coffee_scraper.incidents.alert_config import AlertSettings, load_alert_config
from coffee_scraper.incidents.watchdog import (
    Clear,
    Firing,
    NoData,
    Pending,
    Reading,
    RuleState,
    apply_inhibitions,
    evaluate_rule,
    holds,
    parse_duration,
    step,
    threshold_text,
)
from tests.incidents.watchdog_support import T0

ALERTS = AlertSettings(_env_file=None)  # type: ignore[call-arg]
CONFIG = load_alert_config(ALERTS)


def at(seconds: float) -> object:
    return T0 + timedelta(seconds=seconds)


def test_increase_over_a_window_uses_the_baseline_at_the_window_start() -> None:
    buf = ms.MetricBuffer(keep=timedelta(hours=1))
    for i, value in enumerate([0, 10, 30, 60, 100]):  # a counter sampled every 60 s
        buf.add(T0 + timedelta(seconds=60 * i), {"storage:x:error": float(value)})
    is_x = lambda k: k == "storage:x:error"  # noqa: E731
    assert buf.increase(is_x, timedelta(minutes=2)) == 70  # 100 - value at t-2m (30)
    assert buf.increase(is_x, timedelta(minutes=10)) == 100  # buffer younger than the window: oldest sample
    assert buf.increase(is_x, timedelta(minutes=2), since=T0 + timedelta(minutes=3)) == 40


def test_counter_reset_counts_the_new_value_like_prometheus() -> None:
    buf = ms.MetricBuffer(keep=timedelta(hours=1))
    for i, value in enumerate([50, 80, 5, 20]):  # the process restarted between the 2nd and 3rd sample
        buf.add(T0 + timedelta(seconds=30 * i), {"fetch:ok": float(value)})
    assert buf.increase(lambda k: k == "fetch:ok", timedelta(minutes=5)) == 30 + 5 + 15


def test_fewer_than_two_samples_is_no_data() -> None:
    buf = ms.MetricBuffer(keep=timedelta(hours=1))
    buf.add(T0, {"fetch:ok": 1.0})
    assert buf.increase(lambda k: True, timedelta(minutes=5)) is None
    buf.add(T0, {"fetch:ok": 3.0})  # the same instant again: replaces, still one sample
    assert len(buf) == 1


def test_old_samples_are_dropped_but_one_baseline_is_kept() -> None:
    buf = ms.MetricBuffer(keep=timedelta(minutes=5))
    for i in range(20):
        buf.add(T0 + timedelta(minutes=i), {"fetch:ok": float(i)})
    samples = buf.samples()
    assert samples[0].at <= samples[-1].at - timedelta(minutes=5) < samples[1].at
    assert buf.increase(lambda k: True, timedelta(minutes=5)) == 5


def test_histogram_quantile_matches_prometheus() -> None:
    # Prometheus: histogram_quantile(0.95, ...) over buckets le=1:10, le=5:60, le=10:100, +Inf:100
    # rank 95 falls in (5, 10]: 5 + 5 * (95 - 60) / 40 = 9.375
    assert ms.histogram_quantile(0.95, {1.0: 10, 5.0: 60, 10.0: 100, math.inf: 100}) == pytest.approx(9.375)
    # everything in the first bucket: interpolate from 0
    assert ms.histogram_quantile(0.5, {0.25: 4, 0.5: 4, math.inf: 4}) == pytest.approx(0.125)
    # rank in +Inf: the highest finite bound
    assert ms.histogram_quantile(0.95, {1.0: 1, 10.0: 2, math.inf: 100}) == 10.0
    assert ms.histogram_quantile(0.95, {1.0: 0, math.inf: 0}) is None


@pytest.mark.parametrize(
    ("rule_id", "value", "expected"),
    [
        ("HighRPCErrorRate", 0.51, True),
        ("HighRPCErrorRate", 0.50, False),
        ("HighErrorRate", 0.10, False),
        ("HighErrorRate", 0.11, True),
        ("HighErrorRate", 0.50, True),
        ("HighErrorRate", 0.51, False),
        ("DatabaseDown", 1.0, True),
        ("DatabaseDown", 0.99, False),
        ("SystemDown", 0.0, True),
        ("SystemDown", 1.0, False),
        ("MetricsScrapeFlaky", 0.89, True),
        ("MetricsTargetMissing", 0.0, True),
        ("MetricsTargetMissing", 1.0, False),
        ("DiskUsageWarning", 0.95, True),
        ("DiskUsageWarning", 0.951, False),
        ("DiskUsageCritical", 0.951, True),
    ],
)
def test_threshold_comparisons(rule_id: str, value: float, expected: bool) -> None:
    assert holds(CONFIG.rule(rule_id), value) is expected
    assert holds(CONFIG.rule(rule_id), None) is False


def test_for_hysteresis_pending_then_firing_then_resolved() -> None:
    rule = CONFIG.rule("DatabaseDown")  # for: 2m
    state = RuleState(rule.id, "database")
    verdict, state = step(rule, Reading(1.0), state, at(0))
    assert isinstance(verdict, Pending) and state.phase == "pending"
    verdict, state = step(rule, Reading(1.0), state, at(90))
    assert isinstance(verdict, Pending) and verdict.since == at(0)
    verdict, state = step(rule, Reading(1.0), state, at(120))
    assert isinstance(verdict, Firing) and verdict.started and verdict.since == at(120)
    verdict, state = step(rule, Reading(1.0), state, at(150))
    assert isinstance(verdict, Firing) and not verdict.started
    verdict, state = step(rule, Reading(0.2), state, at(180))
    assert isinstance(verdict, Clear) and verdict.resolved and state.phase == "inactive"
    verdict, state = step(rule, Reading(0.2), state, at(210))
    assert isinstance(verdict, Clear) and not verdict.resolved


def test_condition_dropping_while_pending_starts_over() -> None:
    rule = CONFIG.rule("DatabaseDown")
    _, state = step(rule, Reading(1.0), RuleState(rule.id, "database"), at(0))
    verdict, state = step(rule, Reading(None), state, at(60))  # no traffic: the condition does not hold
    assert isinstance(verdict, Clear) and not verdict.resolved
    verdict, state = step(rule, Reading(1.0), state, at(90))
    assert isinstance(verdict, Pending) and verdict.since == at(90)


def test_no_data_keeps_the_state() -> None:
    rule = CONFIG.rule("DatabaseDown")
    state = RuleState(rule.id, "database", phase="firing", since=at(0))
    verdict, new = step(rule, Reading(None, nodata="catalog unreachable"), state, at(30))
    assert isinstance(verdict, NoData) and verdict.reason == "catalog unreachable"
    assert new.phase == "firing" and new.since == at(0) and new.verdict == "nodata"


def test_zero_for_fires_at_once() -> None:
    rule = CONFIG.rule("DataLoss")  # for: 0m
    verdict, _ = step(rule, Reading(3.0), RuleState(rule.id, "catalog"), at(0))
    assert isinstance(verdict, Firing) and verdict.started


def _measurements(**parts: object) -> ms.Measurements:
    out = ms.Measurements(at=T0, metrics=ms.MetricBuffer(timedelta(hours=1)), cpu=ms.MetricBuffer(timedelta(hours=1)))
    for key, value in parts.items():
        setattr(out, key, value)
    return out


def test_per_component_rule_resolves_a_component_that_disappears() -> None:
    rule = replace(CONFIG.rule("RoasterStale"), for_="0s")
    catalog = ms.CatalogSignals(0, 0, 0, 0, 2, 0, {"a": 2e6, "b": 2e6}, [], {})
    first = evaluate_rule(_measurements(catalog=catalog), rule, {}, ALERTS)
    assert {c: type(v) for c, (v, _) in first.items()} == {"a": Firing, "b": Firing}
    states = {c: s for c, (_, s) in first.items()}
    catalog = ms.CatalogSignals(0, 0, 0, 0, 2, 0, {"b": 2e6}, [], {})
    second = evaluate_rule(_measurements(catalog=catalog), rule, states, ALERTS)
    verdict_a = second["a"][0]
    assert isinstance(verdict_a, Clear) and verdict_a.resolved
    assert isinstance(second["b"][0], Firing)


def test_unreadable_source_keeps_every_component() -> None:
    rule = CONFIG.rule("RoasterStale")
    states = {"a": RuleState(rule.id, "a", phase="firing", since=T0)}
    out = evaluate_rule(_measurements(catalog=None, errors={"catalog": "down"}), rule, states, ALERTS)
    assert isinstance(out["a"][0], NoData) and out["a"][1].phase == "firing"


def test_database_down_inhibits_the_error_rate_and_readiness_rules() -> None:
    down = RuleState("DatabaseDown", "database", phase="pending", since=T0)
    ready = RuleState("DatabaseReadinessFailing", "database", phase="pending", since=T0)
    results = {
        "DatabaseDown": {"database": (Pending(1.0, T0, ""), down)},
        "DatabaseReadinessFailing": {"database": (Firing(0.0, T0, "", True), ready)},
    }
    apply_inhibitions(results)  # type: ignore[arg-type]
    verdict, state = results["DatabaseReadinessFailing"]["database"]
    assert isinstance(verdict, Clear) and state.verdict == "inhibited" and state.phase == "inactive"


def test_threshold_texts() -> None:
    assert threshold_text(CONFIG.rule("HighErrorRate")) == "> 10% and <= 50%"
    assert threshold_text(CONFIG.rule("RoasterStale")) == "> 14.0 d"
    assert threshold_text(CONFIG.rule("MetricsTargetMissing")) == "no target"
    assert parse_duration("15m") == timedelta(minutes=15)
    with pytest.raises(ValueError):
        parse_duration("15")


def test_every_rule_of_the_runbook_has_a_watchdog_measurement() -> None:
    """No rule falls through to "no watchdog measurement" (each one is measured from some live source)."""
    for rule in CONFIG.rules:
        readings = evaluate_rule(_measurements(), rule, {}, ALERTS)
        for verdict, _ in readings.values():
            assert not (isinstance(verdict, NoData) and "no watchdog measurement" in verdict.reason), rule.id
