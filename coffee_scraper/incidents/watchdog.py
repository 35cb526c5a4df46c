"""The built-in watchdog: the runbook's classification rules evaluated on live measurements, no Prometheus needed.

Lives here: ``Watchdog`` (every ``watchdog_interval_s`` seconds: measure, evaluate every rule of
``alert_config.load_alert_config()``, emit ``AlertEvent``s with source ``watchdog`` through ``flows.ingest``), the
pure per-rule evaluation (``measure_rule`` → ``step`` with ``for`` hysteresis → ``Firing | Pending | Clear |
NoData``), the spool that keeps alerts when the incident database is down, the status file read by
``coffee-scraper watchdog status``, and the asyncio loop started by ``serve``.
Does not live here: thresholds (``alert_config.py``), reading the measurements (``measure.py``), incidents
(``flows.py``), notifications (``notify/``).

How each rule is measured (the exported PromQL rules use the same thresholds; the watchdog reads the same
quantities from live sources instead of Prometheus):

============================  ==========================================================================
rule                          watchdog measurement
============================  ==========================================================================
SystemDown                    no scheduler/worker heartbeat (``heartbeats`` table) is fresh: the
                              scraping service is down. Prometheus's ``up == 0`` (scrape of the app's own
                              target) only makes sense from Prometheus's side — a watchdog inside the app
                              dies with it — so the watchdog uses the dead-man's switch instead.
HeartbeatMissing              per component: newest heartbeat older than ``heartbeat_max_age_s``
DataLoss                      rows of coffees/variants/prices (never deleted by the app) disappeared
                              since the last evaluation; counts for the rule's 1 h window
SecurityBreach                closest local signal: an env file holding secrets readable by other users,
                              or a SQLite database writable by other users (data exposure)
DatabaseDown                  the watchdog's ``SELECT 1`` probe fails (value 1.0 = every call fails now),
                              else the storage-operation error share over 5 min since the last recovery
DatabaseReadinessFailing      probe fails or the schema is not at the code's migration head
DatabaseConnectionIssues      ≥ N failed storage operations + failed probes in 15 min, with successes
                              after the first failure (intermittent, not a clean outage)
HighRPCErrorRate/HighErrorRate  (storage errors + failed fetches) / (storage ops + fetches) over 5 min
Disk*                         psutil usage per watched path (``watchdog_disk_paths`` or the data/log
                              directories and "/")
MemoryExhaustion              host memory ratio; an OOM kill (``oom_kill`` of /proc/vmstat) counts as 1.0
MemoryUsageHigh/Pressure      host memory ratio
CPUPressure                   host CPU busy share over 15 min (psutil cpu_times deltas)
ServiceDegradation/Performance*  p95 of the fetch-duration histogram over 10 min (histogram_quantile)
ExternalServiceFailures       share of active roasters whose circuit is open (``roasters.circuit_state``)
HighValidationErrorRate       quarantined / seen products of runs finished in the last hour (scrape_runs)
PriceReviewSpike              review flags / seen products of runs finished in the last 6 h (scrape_runs)
NullFieldShareJump            per roaster: rise of the share of coffees without roast level or process
                              between its two latest full runs
RoasterStale                  per roaster: time since its last successful run
AlertNotificationFailures     failed / all notification deliveries over 30 min (notifications metric)
MetricsScrapeFlaky/TargetMissing  asked from Prometheus's HTTP API when ``prometheus_url`` is set,
                              otherwise no data ("skipped") with the reason in ``watchdog status``
============================  ==========================================================================

Hysteresis follows Prometheus: a condition that holds starts *pending*; it *fires* once it held for the rule's
``for``; when it stops holding the alert *resolves*. No data (a source could not be measured, e.g. the catalog
database is down for the catalog-derived rules) keeps the previous state: it neither fires nor resolves.
A little inhibition avoids duplicate pages for one cause: while DatabaseDown holds, the readiness, connection
and error-rate rules do not start firing; while SystemDown holds, HeartbeatMissing does not.

Incident store down: the watchdog records incidents in ``incidents_database_url`` (default: the catalog
database). If that store cannot be written, the events are appended to a JSONL spool file
(``watchdog_spool_file``) and replayed, in order, on the next evaluation that reaches the store (ingestion is
idempotent by fingerprint). ``coffee_scraper_incident_spool_events`` shows the spool's size.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from sqlalchemy.orm import Session, sessionmaker

from coffee_scraper.catalog import db
from coffee_scraper.catalog.models import utcnow
from coffee_scraper.incidents import measure as ms
from coffee_scraper.incidents.alert_config import AlertConfig, AlertRule, AlertSettings, load_alert_config
from coffee_scraper.incidents.store import incident_engine, incidents_url
from coffee_scraper.incidents.store import incident_store_settings as incident_store_settings  # the old home
from coffee_scraper.observability import metrics as m
from coffee_scraper.observability.logging import get_logger
from coffee_scraper.observability.system import watched_paths
from coffee_scraper.settings import Settings

SOURCE = "watchdog"
COMPONENT = "watchdog"  # the watchdog's own heartbeat component
STATE_VERSION = 1
Phase = Literal["inactive", "pending", "firing"]

# source rule -> rules that do not start firing while the source's condition holds (one cause, one page)
INHIBITIONS: dict[str, tuple[str, ...]] = {
    "DatabaseDown": ("DatabaseReadinessFailing", "DatabaseConnectionIssues", "HighRPCErrorRate", "HighErrorRate"),
    "SystemDown": ("HeartbeatMissing",),
}
# global rules get a fixed component label (incidents group by rule + component)
RULE_COMPONENT: dict[str, str] = {
    "SystemDown": "service",
    "DataLoss": "catalog",
    "SecurityBreach": "security",
    "DatabaseDown": "database",
    "DatabaseReadinessFailing": "database",
    "DatabaseConnectionIssues": "database",
    "HighRPCErrorRate": "pipeline",
    "HighErrorRate": "pipeline",
    "MemoryExhaustion": "host",
    "MemoryUsageHigh": "host",
    "MemoryPressure": "host",
    "CPUPressure": "host",
    "ServiceDegradation": "fetch",
    "PerformanceIssues": "fetch",
    "MinorPerformanceDegradation": "fetch",
    "ExternalServiceFailures": "shops",
    "HighValidationErrorRate": "pipeline",
    "PriceReviewSpike": "catalog",
    "AlertNotificationFailures": "notifications",
    "MetricsScrapeFlaky": "prometheus",
    "MetricsTargetMissing": "prometheus",
}
PER_COMPONENT_RULES = frozenset(
    {"RoasterStale", "NullFieldShareJump", "HeartbeatMissing", "DiskUsageCritical", "DiskUsageWarning"}
)
# heartbeat components that do scraping work (SystemDown looks at these only)
WORK_COMPONENTS_EXCLUDED = frozenset({COMPONENT, "incidents"})


def parse_duration(text: str) -> timedelta:
    """A Prometheus duration ("5m", "1h", "30s", "0m") as a timedelta."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip()
    if not text or text[-1] not in units:
        raise ValueError(f"bad duration {text!r}")
    return timedelta(seconds=float(text[:-1]) * units[text[-1]])


# --- pure evaluation ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """What a rule measured for one component: a value, or no data and why.

    ``value`` None with ``nodata`` None means "nothing to measure right now" (no traffic): the condition does not
    hold. ``nodata`` set means the source could not be measured: the state is kept. ``holds`` overrides the
    threshold comparison for composite conditions (e.g. "≥ 3 failures *and* successes after them").
    """

    value: float | None
    detail: str = ""
    nodata: str | None = None
    holds: bool | None = None


@dataclass
class RuleState:
    """Where one rule stands for one component (kept between evaluations, and in the status file)."""

    rule: str
    component: str
    phase: Phase = "inactive"
    since: datetime | None = None  # pending since / firing since
    value: float | None = None
    detail: str = ""
    verdict: str = "clear"  # firing | pending | clear | nodata | inhibited
    reason: str | None = None
    last_eval: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("since", "last_eval"):
            d[key] = d[key].isoformat() if d[key] else None
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RuleState:
        values = dict(d)
        for key in ("since", "last_eval"):
            values[key] = datetime.fromisoformat(values[key]) if values.get(key) else None
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Firing:
    value: float | None
    since: datetime
    detail: str
    started: bool  # True on the evaluation that turned it on


@dataclass(frozen=True)
class Pending:
    value: float | None
    since: datetime
    detail: str


@dataclass(frozen=True)
class Clear:
    value: float | None
    detail: str
    resolved: bool  # True on the evaluation that turned a firing alert off


@dataclass(frozen=True)
class NoData:
    reason: str


Verdict = Firing | Pending | Clear | NoData


def holds(rule: AlertRule, value: float | None) -> bool:
    """The rule's threshold comparison (``between``: threshold < value <= upper; ``absent``: value == 0)."""
    if value is None:
        return False
    t = rule.threshold
    if rule.comparison == "absent":
        return value == 0
    assert t is not None
    if rule.comparison == ">":
        return value > t
    if rule.comparison == ">=":
        return value >= t
    if rule.comparison == "<":
        return value < t
    if rule.comparison == "==":
        return value == t
    assert rule.upper is not None
    return t < value <= rule.upper


def step(rule: AlertRule, reading: Reading, state: RuleState, now: datetime) -> tuple[Verdict, RuleState]:
    """One evaluation of one rule for one component: pure, returns the verdict and the new state."""
    new = RuleState(**{**state.__dict__})
    new.last_eval = now
    if reading.nodata is not None:
        new.verdict, new.reason = "nodata", reading.nodata
        return NoData(reading.nodata), new
    new.value, new.detail, new.reason = reading.value, reading.detail, None
    condition = reading.holds if reading.holds is not None else holds(rule, reading.value)
    if not condition:
        resolved = state.phase == "firing"
        new.phase, new.since, new.verdict = "inactive", None, "clear"
        return Clear(reading.value, reading.detail, resolved), new
    if state.phase == "firing":
        assert state.since is not None
        new.verdict = "firing"
        return Firing(reading.value, state.since, reading.detail, False), new
    since = state.since if state.phase == "pending" and state.since is not None else now
    if now - since >= parse_duration(rule.for_):
        new.phase, new.since, new.verdict = "firing", now, "firing"
        return Firing(reading.value, now, reading.detail, True), new
    new.phase, new.since, new.verdict = "pending", since, "pending"
    return Pending(reading.value, since, reading.detail), new


def _share(failed: float | None, total: float | None) -> float | None:
    if failed is None or total is None or total <= 0:
        return None
    return failed / total


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.1f}%"


def _storage(result: str | None = None) -> Callable[[str], bool]:
    if result is None:
        return lambda k: k.startswith("storage:")
    return lambda k: k.startswith("storage:") and k.endswith(":" + result)


def _fetch(results: Iterable[str] | None = None) -> Callable[[str], bool]:
    if results is None:
        return lambda k: k.startswith("fetch:")
    wanted = {f"fetch:{r}" for r in results}
    return lambda k: k in wanted


FETCH_FAILED = ("error", "blocked")  # as alert_config.FETCH_FAILED: retries are intermediate, 304 a success


def error_share(ms_: ms.Measurements, window: timedelta) -> tuple[float | None, str]:
    """(storage errors + failed fetches) / (storage ops + fetches) over the window, as the exported rules."""
    buf = ms_.metrics
    failed_storage = buf.increase(_storage("error"), window)
    all_storage = buf.increase(_storage(), window)
    failed_fetch = buf.increase(_fetch(FETCH_FAILED), window)
    all_fetch = buf.increase(_fetch(), window)
    if all_storage is None or all_fetch is None:
        return None, "fewer than two metric samples yet"
    failed = (failed_storage or 0.0) + (failed_fetch or 0.0)
    total = all_storage + all_fetch
    share = _share(failed, total)
    return (
        share,
        f"{failed:g} of {total:g} calls failed (storage {failed_storage or 0:g}/{all_storage:g}, "
        f"fetch {failed_fetch or 0:g}/{all_fetch:g})",
    )


def _fetch_p95(ms_: ms.Measurements, window: timedelta) -> Reading:
    buckets = ms_.metrics.bucket_increases("fetch_le", window)
    if buckets is None:
        return Reading(None, "fewer than two metric samples yet")
    p95 = ms.histogram_quantile(0.95, buckets)
    count = buckets.get(float("inf"), 0.0)
    if p95 is None:
        return Reading(None, "no shop requests in the window")
    return Reading(p95, f"p95 {p95:.2f} s over {count:g} shop requests")


def _intermittent(ms_: ms.Measurements, rule: AlertRule, window: timedelta) -> Reading:
    """Failed storage operations + failed probes in the window, and whether they were *intermittent*.

    Intermittent (not a clean outage): some interval had failed storage operations while the probe succeeded
    before and after it, or the probe failed in two separate episodes. A clean outage (probe fails, then
    recovers) is DatabaseDown's business and never counts here, not even right after the recovery.
    """
    start = ms_.at - window
    errors: dict[datetime, float] = {}
    for t, n in ms_.metrics.increases_by_interval(_storage("error"), window):
        errors[t] = errors.get(t, 0.0) + n
    probes = [(t, ok) for t, ok in ms_.probe_history if t > start]
    probe_ok = dict(ms_.probe_history)
    failures = sum(errors.values()) + sum(1 for _, ok in probes if not ok)
    times = sorted(probe_ok)
    mixed = 0.0
    for t, n in errors.items():
        if not n or not probe_ok.get(t, False):
            continue
        i = times.index(t) if t in probe_ok else -1
        if i > 0 and probe_ok[times[i - 1]]:
            mixed += n
    episodes = sum(1 for (_, a), (_, b) in itertools.pairwise([(start, True), *probes]) if a and not b)
    intermittent = mixed > 0 or episodes >= 2
    condition = failures >= (rule.threshold or 0) and intermittent
    detail = (
        f"{failures:g} failed database calls in {rule.window} "
        f"({mixed:g} while the database answered probes, {episodes} probe failure episode(s))"
    )
    return Reading(failures, detail, holds=condition)


def measure_rule(ms_: ms.Measurements, rule: AlertRule, settings: AlertSettings) -> dict[str, Reading]:
    """The rule's reading per component from one evaluation's measurements (pure)."""
    window = parse_duration(rule.window)
    component = RULE_COMPONENT.get(rule.id, rule.id)
    rid = rule.id

    if rid in ("SystemDown", "HeartbeatMissing"):
        if ms_.heartbeats is None:
            return {
                component if rid == "SystemDown" else "*": Reading(
                    None, nodata=ms_.errors.get("heartbeats", "heartbeats not readable")
                )
            }
        newest: dict[str, datetime] = {}
        for hb in ms_.heartbeats:
            if hb.component not in newest or hb.last_beat_at > newest[hb.component]:
                newest[hb.component] = hb.last_beat_at
        ages = {c: (ms_.at - t).total_seconds() for c, t in newest.items()}
        if rid == "HeartbeatMissing":
            return {
                c: Reading(age, f"last heartbeat of {c} {age:.0f} s ago (limit {settings.heartbeat_max_age_s:g} s)")
                for c, age in ages.items()
            }
        work = {c: a for c, a in ages.items() if c not in WORK_COMPONENTS_EXCLUDED}
        if not work:
            return {component: Reading(None, nodata="no scheduler or worker has written a heartbeat yet")}
        alive = [c for c, a in work.items() if a <= settings.heartbeat_max_age_s]
        detail = (
            f"alive: {', '.join(sorted(alive))}"
            if alive
            else "every scheduler/worker heartbeat is stale: "
            + ", ".join(f"{c} {a:.0f} s" for c, a in sorted(work.items()))
        )
        return {component: Reading(float(len(alive)), detail)}

    if rid == "DataLoss":
        if ms_.data_loss is None:
            return {component: Reading(None, nodata=ms_.errors.get("catalog", "catalog not readable"))}
        lost = sum(ms_.data_loss.values())
        detail = ", ".join(f"{n} {t} rows" for t, n in ms_.data_loss.items() if n) or "no rows disappeared"
        return {component: Reading(float(lost), f"disappeared in the last {rule.window}: {detail}")}

    if rid == "SecurityBreach":
        if ms_.security is None:
            return {component: Reading(None, nodata=ms_.errors.get("security", "not checked"))}
        detail = "; ".join(f"{f.path}: {f.problem}" for f in ms_.security) or "no exposed secrets or databases"
        return {component: Reading(float(len(ms_.security)), detail)}

    if rid == "DatabaseDown":
        probe = ms_.database
        if probe is not None and not probe.ok:
            return {component: Reading(1.0, f"SELECT 1 failed: {probe.error}")}
        buf = ms_.metrics
        failed = buf.increase(_storage("error"), window, since=ms_.db_recovered_at)
        total = buf.increase(_storage(), window, since=ms_.db_recovered_at)
        share = _share(failed, total)
        probe_text = "probe ok" if probe is not None else "probe not run"
        return {component: Reading(share, f"{probe_text}; storage operations failed {_pct(share)} over {rule.window}")}

    if rid == "DatabaseReadinessFailing":
        probe = ms_.database
        if probe is None:
            return {component: Reading(None, nodata=ms_.errors.get("database", "probe not run"))}
        if not probe.ok:
            return {component: Reading(0.0, f"SELECT 1 failed: {probe.error}")}
        if not probe.migrations_current:
            return {
                component: Reading(
                    0.0, f"schema at {probe.revision}, code at {probe.head}: run `coffee-scraper db upgrade`"
                )
            }
        return {component: Reading(1.0, f"ready (SELECT 1 in {probe.latency_ms} ms, schema current)")}

    if rid == "DatabaseConnectionIssues":
        return {component: _intermittent(ms_, rule, window)}

    if rid in ("HighRPCErrorRate", "HighErrorRate"):
        share, detail = error_share(ms_, window)
        return {component: Reading(share, detail)}

    if rid in ("DiskUsageCritical", "DiskUsageWarning"):
        out: dict[str, Reading] = {}
        for d in ms_.disks:
            if d.ratio is None:
                out[d.path] = Reading(None, nodata=d.error or "unreadable")
            else:
                out[d.path] = Reading(d.ratio, f"{d.path}: {_pct(d.ratio)} used")
        return out

    if rid in ("MemoryExhaustion", "MemoryUsageHigh", "MemoryPressure"):
        if ms_.memory_ratio is None:
            return {component: Reading(None, nodata=ms_.errors.get("memory", "not measured"))}
        if rid == "MemoryExhaustion":
            kills = ms_.oom_kills_in.get("MemoryExhaustion")
            if kills:
                return {
                    component: Reading(1.0, f"{kills:g} OOM kill(s) observed; memory {_pct(ms_.memory_ratio)} used")
                }
        return {component: Reading(ms_.memory_ratio, f"memory {_pct(ms_.memory_ratio)} used")}

    if rid == "CPUPressure":
        busy = ms_.cpu.increase(lambda k: k == "cpu:busy", window)
        total = ms_.cpu.increase(lambda k: k == "cpu:total", window)
        share = _share(busy, total)
        return {component: Reading(share, f"CPU {_pct(share)} busy over {rule.window}")}

    if rid in ("ServiceDegradation", "PerformanceIssues", "MinorPerformanceDegradation"):
        return {component: _fetch_p95(ms_, window)}

    if rid == "AlertNotificationFailures":
        failed = ms_.metrics.increase(lambda k: k == "notify:error", window)
        total = ms_.metrics.increase(lambda k: k.startswith("notify:"), window)
        share = _share(failed, total)
        return {component: Reading(share, f"{failed or 0:g} of {total or 0:g} notifications failed over {rule.window}")}

    if rid in ("MetricsScrapeFlaky", "MetricsTargetMissing"):
        if ms_.prometheus is None:
            return {component: Reading(None, nodata=ms_.errors.get("prometheus", "skipped"))}
        if rid == "MetricsTargetMissing":
            present = ms_.prometheus.target_present
            return {
                component: Reading(
                    1.0 if present else 0.0,
                    "target present" if present else f"Prometheus has no target for job {settings.prometheus_job}",
                )
            }
        ratio = ms_.prometheus.scrape_success_ratio
        return {component: Reading(ratio, f"{_pct(ratio)} of scrapes succeeded over 30m")}

    # --- catalog-derived rules ---
    cat = ms_.catalog
    if cat is None:
        key = "*" if rid in ("RoasterStale", "NullFieldShareJump") else component
        return {key: Reading(None, nodata=ms_.errors.get("catalog", "catalog not readable"))}
    if rid == "ExternalServiceFailures":
        share = _share(float(cat.open_circuits), float(cat.active_roasters))
        return {
            component: Reading(share, f"{cat.open_circuits} of {cat.active_roasters} active shops have an open circuit")
        }
    if rid == "HighValidationErrorRate":
        share = _share(float(cat.validation_quarantined), float(cat.validation_seen))
        return {
            component: Reading(
                share, f"{cat.validation_quarantined} of {cat.validation_seen} products quarantined in {rule.window}"
            )
        }
    if rid == "PriceReviewSpike":
        share = _share(float(cat.review_flagged), float(cat.review_seen))
        return {
            component: Reading(
                share, f"{cat.review_flagged} review flags for {cat.review_seen} products in {rule.window}"
            )
        }
    if rid == "RoasterStale":
        return {
            name: Reading(age, f"roaster {name}: last success {age / 3600:.1f} h ago")
            for name, age in cat.stale.items()
        }
    if rid == "NullFieldShareJump":
        jumps = ms_.null_jumps or {}
        return {
            name: Reading(cur - prev, f"roaster {name}: coffees without roast/process {_pct(prev)} -> {_pct(cur)}")
            for name, (prev, cur) in jumps.items()
        }
    return {component: Reading(None, nodata=f"no watchdog measurement for rule {rid}")}


def evaluate_rule(
    ms_: ms.Measurements, rule: AlertRule, states: dict[str, RuleState], settings: AlertSettings
) -> dict[str, tuple[Verdict, RuleState]]:
    """Every component of one rule: readings → hysteresis. Components that vanished read as clear (pure)."""
    readings = measure_rule(ms_, rule, settings)
    if set(readings) == {"*"}:  # the per-component source is unavailable: every known component keeps its state
        readings = {c: readings["*"] for c in states} or {}
    out: dict[str, tuple[Verdict, RuleState]] = {}
    for component, reading in readings.items():
        state = states.get(component) or RuleState(rule.id, component)
        out[component] = step(rule, reading, state, ms_.at)
    for component, state in states.items():
        if component not in readings:
            out[component] = step(rule, Reading(None, "no longer measured"), state, ms_.at)
    return out


def apply_inhibitions(results: dict[str, dict[str, tuple[Verdict, RuleState]]]) -> None:
    """Targets of a source rule whose condition holds (pending or firing) do not start firing (in place)."""
    for source, targets in INHIBITIONS.items():
        if not any(isinstance(v, Firing | Pending) for v, _ in results.get(source, {}).values()):
            continue
        for target in targets:
            for component, (verdict, state) in list(results.get(target, {}).items()):
                if isinstance(verdict, Firing) and not verdict.started:
                    continue  # already firing before the source held: it keeps its incident until it clears
                if isinstance(verdict, Firing | Pending):
                    state.phase, state.since, state.verdict = "inactive", None, "inhibited"
                    state.reason = f"inhibited while {source} holds"
                    results[target][component] = (Clear(verdict.value, verdict.detail, False), state)


def threshold_text(rule: AlertRule) -> str:
    """The rule's condition in words, e.g. "> 50%" or "> 5 s and <= 10 s"."""

    def fmt(x: float | None) -> str:
        if x is None:
            return "?"
        if rule.unit == "ratio":
            return f"{x * 100:g}%"
        if rule.unit == "seconds":
            return seconds_text(x)
        return f"{x:g}"

    if rule.comparison == "absent":
        return "no target"
    if rule.comparison == "between":
        return f"> {fmt(rule.threshold)} and <= {fmt(rule.upper)}"
    if rule.id == "DatabaseConnectionIssues":
        return f">= {fmt(rule.threshold)} failures with successes after them"
    return f"{rule.comparison} {fmt(rule.threshold)}"


def value_text(rule: AlertRule, value: float | None) -> str:
    if value is None:
        return "-"
    if rule.unit == "ratio":
        return f"{value * 100:.1f}%"
    if rule.unit == "seconds":
        return seconds_text(value)
    return f"{value:g}"


def seconds_text(x: float) -> str:
    """A duration for people: "4.2 s", "12 min", "5.0 h", "14.0 d"."""
    if x < 120:
        return f"{x:.1f} s" if x < 10 else f"{x:.0f} s"
    if x < 7200:
        return f"{x / 60:.0f} min"
    if x < 2 * 86400:
        return f"{x / 3600:.1f} h"
    return f"{x / 86400:.1f} d"


@dataclass(frozen=True)
class WatchdogAlert:
    """One firing or resolved alert the watchdog emits (serialisable for the spool)."""

    rule: str
    component: str
    firing: bool
    at: datetime
    started_at: datetime | None
    value: float | None
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "component": self.component,
            "firing": self.firing,
            "at": self.at.isoformat(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "value": self.value,
            "detail": self.detail,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> WatchdogAlert:
        return cls(
            rule=str(d["rule"]),
            component=str(d["component"]),
            firing=bool(d["firing"]),
            at=datetime.fromisoformat(d["at"]),
            started_at=datetime.fromisoformat(d["started_at"]) if d.get("started_at") else None,
            value=d.get("value"),
            detail=str(d.get("detail", "")),
        )


def alert_labels(rule: AlertRule, component: str) -> dict[str, str]:
    """The alert's identity: alertname, severity, category and component (stable fingerprint per rule+component)."""
    return {"alertname": rule.id, "severity": rule.severity.value, "category": rule.category, "component": component}


def to_event(rule: AlertRule, alert: WatchdogAlert, *, drill: bool = False) -> Any:
    """The ``receivers.AlertEvent`` (source ``watchdog``) for one emitted alert: measured value and threshold in
    the description, the runbook link in the annotations. ``drill``: labelled ``drill="true"`` (a drill's alert;
    the label is not part of the fingerprint, so the alert keeps its identity when the drill marking ends)."""
    from coffee_scraper.incidents.flows import DRILL_LABEL
    from coffee_scraper.incidents.prometheus_rules import expand
    from coffee_scraper.incidents.receivers import AlertEvent, labels_hash

    labels = alert_labels(rule, alert.component)
    fingerprint = labels_hash(labels)
    template_labels = {**labels, "instance": socket.gethostname(), "roaster": alert.component, "path": alert.component}
    try:
        title = expand(rule.summary, template_labels, alert.value)
    except (ValueError, KeyError):
        title = f"{rule.category}: {rule.id} ({alert.component})"
    measured = (
        f"Measured by the watchdog: {value_text(rule, alert.value)} (threshold {threshold_text(rule)}); {alert.detail}"
    )
    try:
        description = expand(rule.description, template_labels, alert.value) + "\n" + measured
    except (ValueError, KeyError):
        description = rule.description + "\n" + measured
    if drill:
        labels = {**labels, DRILL_LABEL: "true"}
    return AlertEvent(
        source_kind=SOURCE,
        dedup_key=fingerprint,
        action="trigger" if alert.firing else "resolve",
        severity=rule.severity.value,
        severity_original=rule.severity.value,
        title=title,
        description=description,
        labels=labels,
        annotations={"summary": title, "description": description, "runbook_url": rule.runbook_url},
        links=[{"href": rule.runbook_url, "text": "Runbook"}],
        started_at=alert.started_at or alert.at,
        ends_at=None if alert.firing else alert.at,
        received_at=alert.at,
        source_ref=f"watchdog@{socket.gethostname()}",
        raw={"rule": rule.id, "component": alert.component, "value": alert.value, "detail": alert.detail},
    )


@dataclass
class Evaluation:
    """The outcome of one watchdog pass."""

    at: datetime
    results: dict[str, dict[str, tuple[Verdict, RuleState]]]
    alerts: list[WatchdogAlert]
    measurements: ms.Measurements
    ingested: int = 0
    spooled: int = 0
    replayed: int = 0
    ingest_error: str | None = None

    def verdict(self, rule: str, component: str | None = None) -> Verdict | None:
        per = self.results.get(rule, {})
        if component is None:
            if len(per) != 1:
                return None
            return next(iter(per.values()))[0]
        found = per.get(component)
        return found[0] if found else None

    def firing(self) -> list[tuple[str, str]]:
        return sorted(
            (rule, component)
            for rule, per in self.results.items()
            for component, (v, _) in per.items()
            if isinstance(v, Firing)
        )


class Spool:
    """Alerts that could not be written to the incident store, one JSON object per line, replayed in order."""

    def __init__(self, path: Path, max_lines: int = 10_000) -> None:
        self.path = path
        self.max_lines = max_lines
        self._lock = threading.Lock()

    @staticmethod
    def _key(d: dict[str, Any]) -> tuple[Any, ...]:
        return (d.get("rule"), d.get("component"), d.get("firing"), d.get("started_at"))

    def append(self, alerts: Iterable[WatchdogAlert]) -> int:
        """Add alerts not already waiting (a firing alert is re-sent every pass: one line per activation)."""
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            existing = self._read_lines()
            waiting = set()
            for line in existing:
                with contextlib.suppress(ValueError):
                    waiting.add(self._key(json.loads(line)))
            lines = []
            for alert in alerts:
                d = alert.to_json()
                if self._key(d) not in waiting:
                    waiting.add(self._key(d))
                    lines.append(json.dumps(d, sort_keys=True))
            if not lines:
                return 0
            kept = (existing + lines)[-self.max_lines :]
            if len(existing) + len(lines) > self.max_lines:
                get_logger("incidents").warning(
                    "watchdog_spool_full", dropped=len(existing) + len(lines) - self.max_lines, path=str(self.path)
                )
            self._write_lines(kept)
        self._publish(len(kept))
        return len(lines)

    def _read_lines(self) -> list[str]:
        try:
            return [line for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except FileNotFoundError:
            return []

    def _write_lines(self, lines: list[str]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        os.replace(tmp, self.path)

    def pending(self) -> list[WatchdogAlert]:
        with self._lock:
            out: list[WatchdogAlert] = []
            for line in self._read_lines():
                try:
                    out.append(WatchdogAlert.from_json(json.loads(line)))
                except (ValueError, KeyError, TypeError):
                    get_logger("incidents").warning("watchdog_spool_bad_line", line=line[:200])
            return out

    def drop_first(self, n: int) -> None:
        with self._lock:
            rest = self._read_lines()[n:]
            if rest:
                self._write_lines(rest)
            else:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
        self._publish(len(rest))

    def size(self) -> int:
        with self._lock:
            return len(self._read_lines())

    def _publish(self, n: int) -> None:
        m.INCIDENT_SPOOL_EVENTS.set(n)


def incidents_engine(settings: Settings) -> Any:
    """An engine on the incident store with short connect timeouts (a dead store must not stall the loop)."""
    url = db.normalize_url(incidents_url(settings))
    kwargs: dict[str, Any] = {"pool_size": 2, "max_overflow": 2, "pool_timeout": settings.watchdog_probe_timeout_s}
    if url.startswith("postgresql"):
        kwargs["connect_args"] = {"connect_timeout": max(1, int(settings.watchdog_probe_timeout_s))}
    return incident_engine(settings, **kwargs)


class Watchdog:
    """Measures, evaluates every rule, emits alerts through ``flows.ingest``; one instance per process.

    ``now`` is the clock (injected in tests); ``rules`` defaults to every rule of ``load_alert_config``;
    ``incidents_factory`` defaults to a session factory on ``incidents_url(settings)``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        alert_settings: AlertSettings | None = None,
        now: Callable[[], datetime] = utcnow,
        rules: Iterable[AlertRule] | None = None,
        incidents_factory: sessionmaker[Session] | None = None,
        load_state: bool = True,
    ) -> None:
        self.settings = settings
        self.alert_settings = alert_settings or AlertSettings()
        self.config: AlertConfig = load_alert_config(self.alert_settings)
        self.rules: tuple[AlertRule, ...] = tuple(rules) if rules is not None else self.config.rules
        self.now = now
        self.interval_s = settings.watchdog_interval_s
        longest = max((parse_duration(r.window) + parse_duration(r.for_) for r in self.rules), default=timedelta(0))
        self.metrics = ms.MetricBuffer(keep=max(longest, timedelta(hours=1)))
        self.cpu = ms.MetricBuffer(keep=max(longest, timedelta(hours=1)))
        self.catalog_url = settings.database_url
        self._probe_engine = ms.probe_engine(settings.database_url, settings.watchdog_probe_timeout_s)
        self._own_incidents_engine = incidents_factory is None
        self.incidents_factory = incidents_factory or db.session_factory(incidents_engine(settings))
        self.spool = Spool(settings.watchdog_spool_file)
        self.states: dict[str, dict[str, RuleState]] = {}
        self.probe_history: list[tuple[datetime, bool]] = []
        self.db_recovered_at: datetime | None = None
        self._row_marks: dict[str, int] = {}
        self._losses: list[tuple[datetime, str, int]] = []
        self._nulls: dict[str, tuple[int, float]] = {}  # roaster -> (last full run id, null share)
        self._null_jumps: dict[str, tuple[datetime, float, float]] = {}  # roaster -> (at, previous, current)
        self.last: Evaluation | None = None
        self._identity: Any = None
        self.log = get_logger("incidents")
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._thread_stop = threading.Event()
        self._spool_size = self.spool.size()
        m.INCIDENT_SPOOL_EVENTS.set(self._spool_size)
        if load_state:
            self._load_state()

    # --- measuring ---------------------------------------------------------------------------------------

    def disk_paths(self) -> list[str]:
        return list(self.settings.watchdog_disk_paths) or watched_paths(self.settings)

    def measure(self, at: datetime) -> ms.Measurements:
        """Read every source once (each failure is recorded in ``errors``, never raised)."""
        s = self.settings
        try:
            self.metrics.add(at, ms.read_metric_values())
        except Exception as exc:
            self.log.warning("watchdog_metrics_unreadable", error=ms._first_line(exc))
        host: dict[str, float] = {}
        busy, total = ms.read_cpu_times()
        host["cpu:busy"], host["cpu:total"] = busy, total
        kills = ms.read_oom_kills()
        if kills is not None:
            host["oom"] = kills
        self.cpu.add(at, host)
        out = ms.Measurements(at=at, metrics=self.metrics, cpu=self.cpu)
        # database probe and the catalog-derived signals
        probe = ms.probe_database(self._probe_engine, s.watchdog_probe_timeout_s)
        out.database = probe
        if self.probe_history and not self.probe_history[-1][1] and probe.ok:
            self.db_recovered_at = at
        self.probe_history = [(t, ok) for t, ok in self.probe_history if at - timedelta(hours=1) < t < at]
        self.probe_history.append((at, probe.ok))
        out.probe_history = list(self.probe_history)
        out.db_recovered_at = self.db_recovered_at
        if not probe.ok:
            out.errors["database"] = f"catalog database unreachable: {probe.error}"
            for part in ("catalog", "heartbeats"):
                out.errors[part] = f"not measured: the catalog database is unreachable ({probe.error})"
        else:
            self._measure_catalog(out, at)
        # host
        try:
            out.memory_ratio = ms.read_memory_ratio()
        except Exception as exc:
            out.errors["memory"] = ms._first_line(exc)
        if "oom" in host:
            for rule in self.rules:
                if rule.id == "MemoryExhaustion":
                    span = parse_duration(rule.window) + parse_duration(rule.for_)
                    out.oom_kills_in[rule.id] = self.cpu.increase(lambda k: k == "oom", span) or 0.0
        out.disks = ms.read_disks(self.disk_paths())
        # Prometheus (only when configured)
        if s.prometheus_url:
            try:
                out.prometheus = ms.query_prometheus(
                    s.prometheus_url, self.alert_settings.prometheus_job, s.watchdog_probe_timeout_s
                )
            except Exception as exc:
                # an unreachable Prometheus collects nothing: its target is as good as missing
                out.prometheus = ms.PrometheusReading(None, False)
                out.errors["prometheus"] = f"Prometheus at {s.prometheus_url} did not answer: {ms._first_line(exc)}"
        else:
            out.errors["prometheus"] = "skipped: COFFEE_SCRAPER_PROMETHEUS_URL is not set (no Prometheus to ask)"
        # files exposing secrets or data
        databases = [p for p in (ms.sqlite_file(s.database_url), ms.sqlite_file(incidents_url(s))) if p is not None]
        out.security = ms.find_exposed_files([Path(".env")], databases)
        return out

    def _measure_catalog(self, out: ms.Measurements, at: datetime) -> None:
        s = self.settings
        windows = {r.id: parse_duration(r.window) for r in self.config.rules}
        factory = db.session_factory(self._probe_engine)

        def read() -> tuple[ms.CatalogSignals, list[ms.Heartbeat] | None, str | None]:
            with factory() as session:
                catalog = ms.read_catalog(
                    session,
                    at,
                    validation_window=windows.get("HighValidationErrorRate", timedelta(hours=1)),
                    review_window=windows.get("PriceReviewSpike", timedelta(hours=6)),
                    stale_after_s=self.alert_settings.roaster_cadence_s * self.alert_settings.stale_cadence_multiplier,
                )
                beats, beat_error = read_heartbeats(session)
            return catalog, beats, beat_error

        try:
            catalog, beats, beat_error = ms.run_with_deadline(read, s.watchdog_probe_timeout_s * 3)
        except Exception as exc:
            out.errors["catalog"] = out.errors["heartbeats"] = f"catalog query failed: {ms._first_line(exc)}"
            return
        out.catalog = catalog
        out.heartbeats = beats
        if beat_error:
            out.errors["heartbeats"] = beat_error
        out.data_loss = self._data_loss(catalog.row_counts, at, windows.get("DataLoss", timedelta(hours=1)))
        out.null_jumps = self._null_field_jumps(
            catalog.nulls, at, windows.get("NullFieldShareJump", timedelta(hours=1))
        )

    def _data_loss(self, counts: dict[str, int], at: datetime, window: timedelta) -> dict[str, int]:
        for table, n in counts.items():
            mark = self._row_marks.get(table)
            if mark is not None and n < mark:
                self._losses.append((at, table, mark - n))
                self.log.error("watchdog_rows_disappeared", table=table, before=mark, now=n)
            self._row_marks[table] = n
        self._losses = [loss for loss in self._losses if loss[0] > at - window]
        lost: dict[str, int] = {}
        for _, table, n in self._losses:
            lost[table] = lost.get(table, 0) + n
        return lost

    def _null_field_jumps(
        self, nulls: list[ms.RoasterNulls], at: datetime, window: timedelta
    ) -> dict[str, tuple[float, float]]:
        for r in nulls:
            if r.last_run_id is None or r.null_share is None:
                continue
            known = self._nulls.get(r.roaster)
            if known is not None and known[0] != r.last_run_id:
                self._null_jumps[r.roaster] = (at, known[1], r.null_share)
            if known is None or known[0] != r.last_run_id:
                self._nulls[r.roaster] = (r.last_run_id, r.null_share)
        self._null_jumps = {k: v for k, v in self._null_jumps.items() if v[0] > at - window}
        return {k: (prev, cur) for k, (_, prev, cur) in self._null_jumps.items()}

    # --- evaluating ----------------------------------------------------------------------------------------

    def evaluate(self) -> Evaluation:
        """Measure and evaluate every rule once; update the states; return what changed (nothing is emitted)."""
        with self._lock:
            at = self.now()
            measurements = self.measure(at)
            results: dict[str, dict[str, tuple[Verdict, RuleState]]] = {}
            for rule in self.rules:
                try:
                    results[rule.id] = evaluate_rule(
                        measurements, rule, self.states.get(rule.id, {}), self.alert_settings
                    )
                except Exception as exc:  # one broken measurement must not stop the others
                    self.log.exception("watchdog_rule_failed", rule=rule.id)
                    reading = Reading(None, nodata=f"evaluation failed: {ms._first_line(exc)}")
                    results[rule.id] = {
                        c: step(rule, reading, st, at) for c, st in self.states.get(rule.id, {}).items()
                    }
            apply_inhibitions(results)
            alerts: list[WatchdogAlert] = []
            for rule in self.rules:
                per = results.get(rule.id, {})
                before = self.states.get(rule.id, {})
                self.states[rule.id] = {c: st for c, (_, st) in per.items()}
                for component, (verdict, _state) in per.items():
                    if isinstance(verdict, Firing):
                        alerts.append(
                            WatchdogAlert(rule.id, component, True, at, verdict.since, verdict.value, verdict.detail)
                        )
                    elif isinstance(verdict, Clear) and verdict.resolved:
                        began = before[component].since if component in before else None  # the activation it ends
                        alerts.append(
                            WatchdogAlert(rule.id, component, False, at, began, verdict.value, verdict.detail)
                        )
            evaluation = Evaluation(at, results, alerts, measurements)
            self.last = evaluation
            return evaluation

    # --- emitting ------------------------------------------------------------------------------------------

    def _rule(self, rule_id: str) -> AlertRule | None:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        try:
            return self.config.rule(rule_id)
        except KeyError:
            return None

    def _ingest(self, alerts: list[WatchdogAlert]) -> None:
        from coffee_scraper.incidents import flows
        from coffee_scraper.incidents.drills import marked_rules

        drill_rules = marked_rules()  # a drill runs in this process (or cools down): its rules' alerts are drills
        events = []
        for alert in alerts:
            rule = self._rule(alert.rule)
            if rule is not None:
                events.append(to_event(rule, alert, drill=rule.id in drill_rules))
        if not events:
            return
        engine = self.incidents_factory.kw["bind"]
        with flows.write_lock(engine), db.session_scope(self.incidents_factory) as session:
            flows.ingest(session, events, now=self.now(), settings=self.settings)

    def emit(self, evaluation: Evaluation) -> None:
        """Replay the spool, then ingest this evaluation's alerts; spool them when the store is unreachable."""
        pending = self.spool.pending()
        if pending:
            try:
                self._ingest(pending)
                self.spool.drop_first(len(pending))
                evaluation.replayed = len(pending)
                self.log.info("watchdog_spool_replayed", alerts=len(pending))
            except Exception as exc:
                evaluation.ingest_error = ms._first_line(exc)
                evaluation.spooled = self.spool.append(evaluation.alerts)
                self.log.warning("watchdog_incident_store_unreachable", error=evaluation.ingest_error,
                                 spooled=evaluation.spooled)  # fmt: skip
                return
        try:
            self._ingest(evaluation.alerts)
            evaluation.ingested = len(evaluation.alerts)
        except Exception as exc:
            evaluation.ingest_error = ms._first_line(exc)
            # firing alerts are re-sent every pass anyway; keep the transitions (and the current firing set)
            evaluation.spooled = self.spool.append(evaluation.alerts)
            self.log.warning("watchdog_incident_store_unreachable", error=evaluation.ingest_error,
                             spooled=evaluation.spooled)  # fmt: skip

    def heartbeat(self, at: datetime) -> None:
        """Component 'watchdog': the metric always, the heartbeats row when the catalog database answers."""
        m.HEARTBEAT.labels(COMPONENT).set(at.timestamp())
        try:
            from coffee_scraper.jobs import service as jobs_service
            from coffee_scraper.jobs.runtime import Identity

            if self._identity is None:
                self._identity = Identity.for_process(COMPONENT)
            factory = db.session_factory(self._probe_engine)

            def write() -> None:
                with db.session_scope(factory) as session:
                    jobs_service.beat(session, self._identity, now=at, info={"interval_s": self.interval_s})

            ms.run_with_deadline(write, self.settings.watchdog_probe_timeout_s)
        except Exception as exc:
            self.log.debug("watchdog_heartbeat_not_written", error=ms._first_line(exc))

    def run_once(self) -> Evaluation:
        """One full pass: evaluate, emit, heartbeat, write the status file."""
        evaluation = self.evaluate()
        self.emit(evaluation)
        if evaluation.measurements.database is not None and evaluation.measurements.database.ok:
            self.heartbeat(evaluation.at)
        else:
            m.HEARTBEAT.labels(COMPONENT).set(evaluation.at.timestamp())
        self._spool_size = self.spool.size()
        try:
            self.write_status(evaluation)
        except OSError as exc:
            self.log.warning("watchdog_status_not_written", error=ms._first_line(exc))
        return evaluation

    async def run(self, stop: asyncio.Event) -> None:
        """Every ``watchdog_interval_s``: one pass in a worker thread, until ``stop`` is set."""
        self.log.info("watchdog_started", interval_s=self.interval_s, rules=len(self.rules))
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.run_once)
            except Exception:
                self.log.exception("watchdog_pass_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval_s)
        self.log.info("watchdog_stopped")

    def start(self) -> Watchdog:
        """The same loop in a daemon thread (for workers and tests without an event loop); ``stop()`` ends it."""
        self._thread_stop = threading.Event()

        def loop() -> None:
            while not self._thread_stop.is_set():
                try:
                    self.run_once()
                except Exception:
                    self.log.exception("watchdog_pass_failed")
                self._thread_stop.wait(self.interval_s)

        self._thread = threading.Thread(target=loop, name="watchdog", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._thread_stop.set()
            self._thread.join(timeout=self.settings.watchdog_probe_timeout_s * 4 + 5)
            self._thread = None

    def close(self) -> None:
        self._probe_engine.dispose()
        if self._own_incidents_engine:
            bind = self.incidents_factory.kw.get("bind")
            if bind is not None:
                bind.dispose()
        if self._identity is not None:
            with contextlib.suppress(Exception):
                from coffee_scraper.jobs import service as jobs_service

                factory = db.session_factory(ms.probe_engine(self.catalog_url, self.settings.watchdog_probe_timeout_s))
                with db.session_scope(factory) as session:
                    jobs_service.stop_heartbeat(session, self._identity, now=self.now())

    # --- status ----------------------------------------------------------------------------------------------

    def status_rows(self, evaluation: Evaluation | None = None) -> list[dict[str, Any]]:
        """One row per rule and component: value vs threshold, state, since, reason, last evaluation."""
        evaluation = evaluation or self.last
        rows: list[dict[str, Any]] = []
        for rule in self.rules:
            states = self.states.get(rule.id, {})
            base = {
                "rule": rule.id,
                "severity": rule.severity.value,
                "category": rule.category,
                "threshold": threshold_text(rule),
                "for": rule.for_,
                "window": rule.window,
            }
            if not states:
                rows.append(self._summary_row(rule, base, evaluation))
                continue
            for component, st in sorted(states.items()):
                state = st.verdict
                rows.append(
                    {
                        **base,
                        "component": component,
                        "state": state,
                        "value": st.value,
                        "value_text": value_text(rule, st.value),
                        "since": st.since.isoformat() if st.since else None,
                        "detail": st.detail,
                        "reason": st.reason,
                        "last_eval": st.last_eval.isoformat() if st.last_eval else None,
                    }
                )
        return rows

    @staticmethod
    def _summary_row(rule: AlertRule, base: dict[str, Any], evaluation: Evaluation | None) -> dict[str, Any]:
        """The row of a rule with no component measured: per-component rules with nothing past the limit."""
        state, reason = "clear", None
        if evaluation is not None:
            missing = evaluation.measurements.errors
            if rule.id in PER_COMPONENT_RULES:
                reason = "nothing past the limit"
            part = {"RoasterStale": "catalog", "NullFieldShareJump": "catalog", "HeartbeatMissing": "heartbeats"}
            if part.get(rule.id) in missing:
                state, reason = "nodata", missing[part[rule.id]]
        last = evaluation.at.isoformat() if evaluation else None
        return {**base, "component": "-", "state": state, "value": None, "value_text": "-", "since": None,
                "detail": "", "reason": reason, "last_eval": last}  # fmt: skip

    def status(self) -> dict[str, Any]:
        evaluation = self.last
        return {
            "version": STATE_VERSION,
            "written_at": utcnow().isoformat(),
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "interval_s": self.interval_s,
            "last_eval": evaluation.at.isoformat() if evaluation else None,
            "incidents_database": _masked(incidents_url(self.settings)),
            "spool_file": str(self.spool.path),
            "spooled_alerts": self._spool_size,
            "last_ingest_error": evaluation.ingest_error if evaluation else None,
            "measurement_errors": evaluation.measurements.errors if evaluation else {},
            "rules": self.status_rows(evaluation),
            "states": [st.to_json() for per in self.states.values() for st in per.values()],
        }

    def write_status(self, evaluation: Evaluation | None = None) -> None:
        path = self.settings.watchdog_state_file
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.status(), indent=1, default=str), encoding="utf-8")
        os.replace(tmp, path)

    def _load_state(self) -> None:
        """Resume the rule states a previous watchdog left (firing alerts then resolve when they clear)."""
        data = read_status_file(self.settings.watchdog_state_file)
        if not data or data.get("version") != STATE_VERSION:
            return
        if data.get("incidents_database") != _masked(incidents_url(self.settings)):
            return  # another installation's file (or the store moved): its alerts are not ours to resolve
        fresh_until = None
        if data.get("last_eval"):
            fresh_until = datetime.fromisoformat(data["last_eval"]) + timedelta(seconds=2 * self.interval_s)
        known = {r.id for r in self.rules}
        for raw in data.get("states", []):
            try:
                st = RuleState.from_json(raw)
            except (TypeError, ValueError):
                continue
            if st.rule not in known:
                continue
            if st.phase == "pending" and (fresh_until is None or self.now() > fresh_until):
                st.phase, st.since, st.verdict = "inactive", None, "clear"  # a gap: pending must start over
            self.states.setdefault(st.rule, {})[st.component] = st


def read_heartbeats(session: Session) -> tuple[list[ms.Heartbeat] | None, str | None]:
    """Heartbeats of running (not cleanly stopped) processes from the scheduler's table; None when absent."""
    try:
        from coffee_scraper.jobs import service as jobs_service
    except ImportError:
        return None, "the scheduler's heartbeats table is not available in this version"
    try:
        with session.begin_nested():
            rows = jobs_service.heartbeats(session)
    except Exception as exc:
        return None, f"heartbeats not readable: {ms._first_line(exc)}"
    return [ms.Heartbeat(r.component, r.instance, r.last_beat_at) for r in rows], None


def read_status_file(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _masked(url: str) -> str:
    from coffee_scraper.observability.redact import mask_url

    return mask_url(url)


@contextlib.asynccontextmanager
async def running(settings: Settings, *, now: Callable[[], datetime] = utcnow) -> Any:
    """``async with running(settings):`` runs the watchdog loop in the background (no-op when disabled)."""
    if not settings.watchdog_enabled:
        yield None
        return
    watchdog = Watchdog(settings, now=now)
    stop = asyncio.Event()
    task = asyncio.create_task(watchdog.run(stop), name="watchdog")
    try:
        yield watchdog
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=settings.watchdog_probe_timeout_s * 4 + 5)
        await asyncio.to_thread(watchdog.close)
