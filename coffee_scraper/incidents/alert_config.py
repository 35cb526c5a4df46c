"""The runbook's classification as data; every threshold lives here.

Source: the incident-response runbook (classification P0–P3, response times, escalation levels).
Each classification bullet of the runbook that can be detected becomes one or more ``AlertRule``s with
its severity, threshold(s), comparison, window and ``for`` duration. Rules whose signal has no metric in
``coffee_scraper/observability/metrics.py`` are kept with ``watchdog_only=True`` and ``expr=None``: the
built-in watchdog evaluates them, they are never exported to Prometheus (no invented expressions).

Thresholds can be overridden from the environment (prefix ``COFFEE_SCRAPER_ALERT_``) through
``AlertSettings``; ``load_alert_config()`` applies them. Windows and ``for`` durations are fixed here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from coffee_scraper.observability import metrics as m

Comparison = Literal[">", ">=", "<", "==", "between", "absent"]
Unit = Literal["ratio", "seconds", "count", "bool"]


class Severity(StrEnum):
    P0 = "P0"
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"


class AlertSettings(BaseSettings):
    """Overridable alert thresholds. Ratios are fractions (0.5 = 50%); defaults are the runbook's numbers."""

    model_config = SettingsConfigDict(
        env_prefix="COFFEE_SCRAPER_ALERT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # --- error rates ---------------------------------------------------------------------------------
    rpc_error_critical_ratio: float = Field(
        0.50, description="P0 High RPC Error Rate: failed storage ops + failed fetches share above this (>50%)."
    )
    error_rate_high_ratio: float = Field(
        0.10, description="P1 High Error Rate: same share above this and up to the P0 ratio (10-50%)."
    )
    db_down_error_ratio: float = Field(
        1.0, description="P0 Database Failure: share of storage operations failing at or above this (1.0 = all)."
    )
    db_intermittent_min_errors: float = Field(
        3, description="P1 Database Connection Issues: storage errors in 15 min (while others still succeed)."
    )
    # --- resources (watchdog: no system metrics exported yet) -----------------------------------------
    disk_critical_ratio: float = Field(0.95, description="P0 Disk Usage Critical: disk usage above this (>95%).")
    disk_warning_ratio: float = Field(0.85, description="P1 Disk Usage Warning: disk usage above this (85-95%).")
    memory_exhaustion_ratio: float = Field(
        0.98, description="P0 Memory Exhaustion: memory usage above this (near OOM); an OOM kill always counts."
    )
    memory_high_ratio: float = Field(0.90, description="P1 Memory Usage High: memory usage above this (>90%).")
    memory_pressure_ratio: float = Field(0.80, description="P2 Resource Constraints: memory usage above this.")
    cpu_pressure_ratio: float = Field(0.85, description="P2 Resource Constraints: CPU usage above this for 15 min.")
    # --- availability -----------------------------------------------------------------------------------
    prometheus_job: str = Field("coffee-scraper", description="Prometheus job name of the app's /metrics target.")
    heartbeat_max_age_s: float = Field(
        600, description="P0 System Down: a component's heartbeat older than this (seconds)."
    )
    scrape_success_min_ratio: float = Field(
        0.90, description="P2 Monitoring Issues: share of successful scrapes of the app over 30 min below this."
    )
    notification_failure_ratio: float = Field(
        0.20, description="P2 Monitoring Issues: share of failed notifications over 30 min above this."
    )
    external_open_circuit_ratio: float = Field(
        0.50, description="P1 External Service Failures: share of shops with an open circuit above this."
    )
    # --- performance --------------------------------------------------------------------------------------
    latency_significant_p95_s: float = Field(
        30.0, description="P1 Service Degradation: p95 fetch latency above this (seconds)."
    )
    latency_slow_p95_s: float = Field(10.0, description="P2 Performance Issues: p95 fetch latency above this.")
    latency_degraded_p95_s: float = Field(5.0, description="P3 Minor Performance Issues: p95 fetch latency above this.")
    # --- data -------------------------------------------------------------------------------------------
    validation_error_ratio: float = Field(
        0.20, description="P2 Validation Errors: quarantined / processed products over 1 h above this."
    )
    review_ratio: float = Field(
        0.30, description="P2 Data Quality Issues: products flagged for review / processed over 6 h above this."
    )
    null_field_jump: float = Field(
        0.10, description="P2 Data Quality Issues: rise of the share of coffees with null roast/process per run."
    )
    roaster_cadence_s: float = Field(
        7 * 24 * 3600, description="P3 Informational: a roaster's expected run cadence (seconds; weekly)."
    )
    stale_cadence_multiplier: float = Field(
        2.0, description="P3 Informational: last success older than this many cadences."
    )
    runbook_base_url: str = Field(
        "docs/incident-response-runbook.md", description="Runbook document that runbook_url anchors point into."
    )


@dataclass(frozen=True)
class SeverityPolicy:
    """Response time and escalation of one severity (runbook 'Incident Classification')."""

    severity: Severity
    name: str
    heading: str  # the runbook section heading; runbook_url anchors are built from it
    response_time: timedelta
    response_text: str
    escalation: str
    escalate_to: tuple[str, ...]
    # on-call roster roles (incidents/oncall.py) notified when an incident of this severity opens
    notify_roles: tuple[str, ...] = ()
    business_hours_only: bool = False  # "Regular business hours": people are notified only inside them
    time_escalation: bool = True  # climbs the Escalation Procedures levels while unresolved (not P3)
    status_updates: bool = False  # "Status Update Template (Every 15 minutes for P0/P1)": reminders due


@dataclass(frozen=True)
class EscalationLevel:
    """One level of the runbook's 'Escalation Procedures'."""

    level: int
    role: str
    starts_after: timedelta
    ends_after: timedelta | None
    responsibilities: str
    escalate_when: str | None
    roles: tuple[str, ...] = ()  # on-call roster roles (incidents/oncall.py) notified on reaching this level


@dataclass(frozen=True)
class AlertRule:
    """One classification rule. ``expr`` is PromQL over metrics.py names, or None when ``watchdog_only``."""

    id: str
    category: str  # the runbook's bullet text, e.g. "High RPC Error Rate"
    severity: Severity
    threshold: float | None
    comparison: Comparison
    unit: Unit
    window: str  # range used in the expression (or by the watchdog)
    for_: str  # how long the condition must hold
    summary: str  # Prometheus template text
    description: str
    runbook_url: str
    expr: str | None = None
    upper: float | None = None  # for comparison "between": threshold < value <= upper
    watchdog_only: bool = False
    needs_metric: str | None = None  # for watchdog_only rules: the metric that would allow a Prometheus rule

    def __post_init__(self) -> None:
        if self.watchdog_only == (self.expr is not None):
            raise ValueError(f"{self.id}: exactly one of expr / watchdog_only must be set")
        if self.comparison == "between" and self.upper is None:
            raise ValueError(f"{self.id}: 'between' needs an upper bound")


@dataclass(frozen=True)
class AlertConfig:
    rules: tuple[AlertRule, ...]
    severities: dict[Severity, SeverityPolicy]
    escalation_levels: tuple[EscalationLevel, ...]

    def exported_rules(self) -> tuple[AlertRule, ...]:
        return tuple(r for r in self.rules if not r.watchdog_only)

    def rule(self, rule_id: str) -> AlertRule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)

    def by_category(self, category: str) -> tuple[AlertRule, ...]:
        return tuple(r for r in self.rules if r.category.lower() == category.lower())


SEVERITY_HEADINGS = {
    Severity.P0: "Critical (P0) - Immediate Response Required",
    Severity.P1: "High (P1) - Response Within 30 Minutes",
    Severity.P2: "Medium (P2) - Response Within 2 Hours",
    Severity.P3: "Low (P3) - Response Within 24 Hours",
}

SEVERITIES: dict[Severity, SeverityPolicy] = {
    Severity.P0: SeverityPolicy(
        Severity.P0, "Critical", SEVERITY_HEADINGS[Severity.P0], timedelta(minutes=15),
        "Immediate (0-15 minutes)", "Immediate to Engineering Manager", ("on-call engineer", "Engineering Manager"),
        notify_roles=("oncall_primary", "engineering_manager"), status_updates=True,
    ),
    Severity.P1: SeverityPolicy(
        Severity.P1, "High", SEVERITY_HEADINGS[Severity.P1], timedelta(minutes=30),
        "30 minutes", "On-call engineer + Senior Engineer", ("on-call engineer", "Senior Engineer"),
        notify_roles=("oncall_primary", "senior_engineer"), status_updates=True,
    ),
    Severity.P2: SeverityPolicy(
        Severity.P2, "Medium", SEVERITY_HEADINGS[Severity.P2], timedelta(hours=2),
        "2 hours", "On-call engineer", ("on-call engineer",),
        notify_roles=("oncall_primary",),
    ),
    Severity.P3: SeverityPolicy(
        Severity.P3, "Low", SEVERITY_HEADINGS[Severity.P3], timedelta(hours=24),
        "24 hours", "Regular business hours", ("business hours",),
        notify_roles=("oncall_primary",), business_hours_only=True, time_escalation=False,
    ),
}  # fmt: skip

ESCALATION_LEVELS: tuple[EscalationLevel, ...] = (
    EscalationLevel(1, "On-Call Engineer", timedelta(0), timedelta(minutes=30),
                    "Initial response, basic troubleshooting", "unable to resolve within 30 minutes",
                    roles=("oncall_primary",)),
    EscalationLevel(2, "Senior Engineer", timedelta(minutes=30), timedelta(minutes=60),
                    "Deep investigation, complex troubleshooting", "incident persists beyond 60 minutes",
                    roles=("senior_engineer",)),
    EscalationLevel(3, "Engineering Manager", timedelta(minutes=60), None,
                    "Incident coordination, resource allocation", "incident impacts business operations",
                    roles=("engineering_manager",)),
    EscalationLevel(4, "CTO/Leadership", timedelta(hours=2), None,
                    "Business impact assessment, external communication", None,
                    roles=("cto",)),
)  # fmt: skip


def anchor(heading: str) -> str:
    """GitHub-style anchor of a markdown heading ("High (P1) - Response ..." → "high-p1---response-...")."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def _num(value: float) -> str:
    """A threshold as PromQL/text literal: integers without ".0", others in shortest repr."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _pct(ratio: float) -> str:
    return f"{_num(round(ratio * 100, 6))}%"


def _secs(value: float) -> str:
    return f"{_num(value)}s"


# --- PromQL building blocks (metric names from observability/metrics.py) ------------------------------
STORAGE = f"{m.PREFIX}_storage_operations_total"
FETCH = f"{m.PREFIX}_fetch_requests_total"
FETCH_BUCKET = f"{m.PREFIX}_fetch_duration_seconds_bucket"
PROCESSED = f"{m.PREFIX}_products_processed_total"
NOTIFY = f"{m.PREFIX}_notifications_total"
CIRCUIT = f"{m.PREFIX}_circuit_state"
LAST_SUCCESS = f"{m.PREFIX}_last_success_timestamp_seconds"
HEARTBEAT = f"{m.PREFIX}_heartbeat_timestamp_seconds"
HOST_DISK = f"{m.PREFIX}_host_disk_usage_ratio"  # psutil, per watched path (observability/system.py)
HOST_MEMORY = f"{m.PREFIX}_host_memory_usage_ratio"
DISK = f"max by (path) ({HOST_DISK})"
MEMORY = f"max({HOST_MEMORY})"
FETCH_FAILED = 'result=~"error|blocked"'  # retry/rate_limited are intermediate; not_modified is a success
CIRCUIT_OPEN = 2
QUARANTINED = 'outcome="quarantined"'
REVIEW = 'outcome="review"'
ERRORED = 'result="error"'


def _error_ratio(window: str) -> str:
    failed = (
        f'(sum(rate({STORAGE}{{result="error"}}[{window}])) or vector(0))'
        f" + (sum(rate({FETCH}{{{FETCH_FAILED}}}[{window}])) or vector(0))"
    )
    total = f"(sum(rate({STORAGE}[{window}])) or vector(0)) + (sum(rate({FETCH}[{window}])) or vector(0))"
    return f"({failed}) / ({total})"


def _share(metric: str, selector: str, window: str, fn: str = "increase") -> str:
    return f"sum({fn}({metric}{{{selector}}}[{window}])) / sum({fn}({metric}[{window}]))"


def _p95_fetch(window: str) -> str:
    return f"histogram_quantile(0.95, sum by (le) (rate({FETCH_BUCKET}[{window}])))"


def load_alert_config(settings: AlertSettings | None = None) -> AlertConfig:
    """Every classification rule of the runbook, with ``settings`` (default: the environment) applied."""
    s = settings or AlertSettings()
    job = f'job="{s.prometheus_job}"'

    def url(sev: Severity) -> str:
        return f"{s.runbook_base_url}#{anchor(SEVERITY_HEADINGS[sev])}"

    stale_after = s.roaster_cadence_s * s.stale_cadence_multiplier
    rules: list[AlertRule] = [
        # --- P0 ------------------------------------------------------------------------------------
        AlertRule(
            "SystemDown", "System Down", Severity.P0, 0, "==", "bool", "1m", "2m",
            "coffee-scraper is down ({{ $labels.instance }})",
            "Prometheus cannot scrape the app (up == 0) for 2 minutes: complete service unavailability.",
            url(Severity.P0), expr=f"up{{{job}}} == 0",
        ),
        AlertRule(
            "HeartbeatMissing", "System Down", Severity.P0, s.heartbeat_max_age_s, ">", "seconds", "1m", "1m",
            "No heartbeat from {{ $labels.component }}",
            "Last heartbeat of {{ $labels.component }} was {{ $value | humanizeDuration }} ago "
            f"(limit {_secs(s.heartbeat_max_age_s)}).",
            url(Severity.P0),
            expr=f"time() - max by (component) ({HEARTBEAT}) > {_num(s.heartbeat_max_age_s)}",
        ),
        AlertRule(
            "DataLoss", "Data Loss", Severity.P0, 0, ">", "count", "1h", "0m",
            "Data loss or corruption detected",
            "The catalog lost or corrupted data (integrity check failed or stored rows disappeared).",
            url(Severity.P0), watchdog_only=True, needs_metric=f"{m.PREFIX}_data_integrity_failures_total",
        ),
        AlertRule(
            "SecurityBreach", "Security Breach", Severity.P0, 0, ">", "count", "1h", "0m",
            "Security breach suspected",
            "Unauthorized access or data exposure was reported; declared by a human or an external signal.",
            url(Severity.P0), watchdog_only=True, needs_metric=f"{m.PREFIX}_security_events_total",
        ),
        AlertRule(
            "DatabaseDown", "Database Failure", Severity.P0, s.db_down_error_ratio, ">=", "ratio", "5m", "2m",
            "Database unavailable: storage operations failing",
            "{{ $value | humanizePercentage }} of storage operations failed over 5m "
            f"(limit {_pct(s.db_down_error_ratio)}): complete database unavailability.",
            url(Severity.P0),
            expr=f"{_share(STORAGE, ERRORED, '5m', 'rate')} >= {_num(s.db_down_error_ratio)}",
        ),
        AlertRule(
            "DatabaseReadinessFailing", "Database Failure", Severity.P0, 0, "==", "bool", "1m", "2m",
            "Database readiness check failing",
            "The readiness check's database probe (SELECT 1) has failed for 2 minutes.",
            url(Severity.P0), watchdog_only=True, needs_metric=f"{m.PREFIX}_database_up",
        ),
        AlertRule(
            "HighRPCErrorRate", "High RPC Error Rate", Severity.P0, s.rpc_error_critical_ratio, ">", "ratio",
            "5m", "5m",
            "RPC error rate {{ $value | humanizePercentage }} across services",
            "Failed storage operations and shop fetches are {{ $value | humanizePercentage }} of all calls over 5m "
            f"(limit {_pct(s.rpc_error_critical_ratio)}).",
            url(Severity.P0), expr=f"{_error_ratio('5m')} > {_num(s.rpc_error_critical_ratio)}",
        ),
        AlertRule(
            "DiskUsageCritical", "Disk Usage Critical", Severity.P0, s.disk_critical_ratio, ">", "ratio", "5m", "5m",
            "Disk usage critical", f"Disk usage above {_pct(s.disk_critical_ratio)}.",
            url(Severity.P0), expr=f"{DISK} > {_num(s.disk_critical_ratio)}",
        ),
        AlertRule(
            "MemoryExhaustion", "Memory Exhaustion", Severity.P0, s.memory_exhaustion_ratio, ">", "ratio", "1m",
            "1m", "System out of memory",
            f"Memory usage above {_pct(s.memory_exhaustion_ratio)} or an OOM kill was observed.",
            url(Severity.P0), expr=f"{MEMORY} > {_num(s.memory_exhaustion_ratio)}",
        ),
        # --- P1 ------------------------------------------------------------------------------------
        AlertRule(
            "ServiceDegradation", "Service Degradation", Severity.P1, s.latency_significant_p95_s, ">", "seconds",
            "10m", "10m",
            "Significant performance impact: p95 fetch latency {{ $value | humanizeDuration }}",
            f"p95 latency of shop requests above {_secs(s.latency_significant_p95_s)} for 10 minutes.",
            url(Severity.P1), expr=f"{_p95_fetch('10m')} > {_num(s.latency_significant_p95_s)}",
        ),
        AlertRule(
            "DatabaseConnectionIssues", "Database Connection Issues", Severity.P1, s.db_intermittent_min_errors,
            ">=", "count", "15m", "5m",
            "Intermittent database connection failures",
            "{{ $value | humanize }} storage operations failed in 15m while others succeeded "
            f"(limit {_num(s.db_intermittent_min_errors)}).",
            url(Severity.P1),
            expr=(
                f'sum(increase({STORAGE}{{result="error"}}[15m])) >= {_num(s.db_intermittent_min_errors)}'
                f' and sum(increase({STORAGE}{{result="ok"}}[15m])) > 0'
            ),
        ),
        AlertRule(
            "HighErrorRate", "High Error Rate", Severity.P1, s.error_rate_high_ratio, "between", "ratio", "5m",
            "10m", "Error rate {{ $value | humanizePercentage }}",
            "Failed storage operations and shop fetches are {{ $value | humanizePercentage }} of all calls over 5m "
            f"({_pct(s.error_rate_high_ratio)}-{_pct(s.rpc_error_critical_ratio)}).",
            url(Severity.P1),
            expr=f"{_error_ratio('5m')} > {_num(s.error_rate_high_ratio)} <= {_num(s.rpc_error_critical_ratio)}",
            upper=s.rpc_error_critical_ratio,
        ),
        AlertRule(
            "MemoryUsageHigh", "Memory Usage High", Severity.P1, s.memory_high_ratio, "between", "ratio", "5m", "5m",
            "Memory usage high", f"Memory usage above {_pct(s.memory_high_ratio)}.",
            url(Severity.P1), upper=s.memory_exhaustion_ratio,
            expr=f"{MEMORY} > {_num(s.memory_high_ratio)} <= {_num(s.memory_exhaustion_ratio)}",
        ),
        AlertRule(
            "DiskUsageWarning", "Disk Usage Warning", Severity.P1, s.disk_warning_ratio, "between", "ratio", "5m",
            "5m", "Disk usage warning",
            f"Disk usage {_pct(s.disk_warning_ratio)}-{_pct(s.disk_critical_ratio)}.",
            url(Severity.P1), upper=s.disk_critical_ratio,
            expr=f"{DISK} > {_num(s.disk_warning_ratio)} <= {_num(s.disk_critical_ratio)}",
        ),
        AlertRule(
            "ExternalServiceFailures", "External Service Failures", Severity.P1, s.external_open_circuit_ratio, ">",
            "ratio", "1m", "15m",
            "{{ $value | humanizePercentage }} of shop circuits open",
            f"More than {_pct(s.external_open_circuit_ratio)} of shops have an open circuit breaker for 15 minutes: "
            "likely a network or upstream outage.",
            url(Severity.P1),
            expr=(
                f"count({CIRCUIT} == {CIRCUIT_OPEN}) / count({CIRCUIT}) > {_num(s.external_open_circuit_ratio)}"
            ),
        ),
        # --- P2 ------------------------------------------------------------------------------------
        AlertRule(
            "PerformanceIssues", "Performance Issues", Severity.P2, s.latency_slow_p95_s, "between", "seconds",
            "10m", "15m",
            "Slow responses: p95 fetch latency {{ $value | humanizeDuration }}",
            f"p95 latency of shop requests {_secs(s.latency_slow_p95_s)}-{_secs(s.latency_significant_p95_s)} "
            "for 15 minutes.",
            url(Severity.P2),
            expr=f"{_p95_fetch('10m')} > {_num(s.latency_slow_p95_s)} <= {_num(s.latency_significant_p95_s)}",
            upper=s.latency_significant_p95_s,
        ),
        AlertRule(
            "HighValidationErrorRate", "Validation Errors", Severity.P2, s.validation_error_ratio, ">", "ratio",
            "1h", "15m",
            "{{ $value | humanizePercentage }} of products quarantined",
            f"Quarantined / processed products over 1h above {_pct(s.validation_error_ratio)}.",
            url(Severity.P2),
            expr=f"{_share(PROCESSED, QUARANTINED, '1h')} > {_num(s.validation_error_ratio)}",
        ),
        AlertRule(
            "AlertNotificationFailures", "Monitoring Issues", Severity.P2, s.notification_failure_ratio, ">",
            "ratio", "30m", "10m",
            "{{ $value | humanizePercentage }} of notifications failing",
            f"Failed / sent notifications over 30m above {_pct(s.notification_failure_ratio)}: alerting is impaired.",
            url(Severity.P2),
            expr=f"{_share(NOTIFY, ERRORED, '30m')} > {_num(s.notification_failure_ratio)}",
        ),
        AlertRule(
            "MetricsScrapeFlaky", "Monitoring Issues", Severity.P2, s.scrape_success_min_ratio, "<", "ratio",
            "30m", "10m", "Scrapes of {{ $labels.instance }} failing",
            f"Fewer than {_pct(s.scrape_success_min_ratio)} of scrapes of the app succeeded over 30m.",
            url(Severity.P2),
            expr=f"avg_over_time(up{{{job}}}[30m]) < {_num(s.scrape_success_min_ratio)}",
        ),
        AlertRule(
            "MetricsTargetMissing", "Monitoring Issues", Severity.P2, None, "absent", "bool", "1m", "10m",
            "coffee-scraper metrics target missing",
            f"Prometheus has no target for job {s.prometheus_job}: metrics collection is not running.",
            url(Severity.P2), expr=f"absent(up{{{job}}})",
        ),
        AlertRule(
            "CPUPressure", "Resource Constraints", Severity.P2, s.cpu_pressure_ratio, ">", "ratio", "15m", "15m",
            "CPU pressure", f"CPU usage above {_pct(s.cpu_pressure_ratio)} for 15 minutes.",
            url(Severity.P2), watchdog_only=True, needs_metric=f"{m.PREFIX}_cpu_usage_ratio",
        ),
        AlertRule(
            "MemoryPressure", "Resource Constraints", Severity.P2, s.memory_pressure_ratio, "between", "ratio",
            "15m", "15m", "Memory pressure",
            f"Memory usage {_pct(s.memory_pressure_ratio)}-{_pct(s.memory_high_ratio)} for 15 minutes.",
            url(Severity.P2), upper=s.memory_high_ratio,
            expr=f"{MEMORY} > {_num(s.memory_pressure_ratio)} <= {_num(s.memory_high_ratio)}",
        ),
        AlertRule(
            "PriceReviewSpike", "Data Quality Issues", Severity.P2, s.review_ratio, ">", "ratio", "6h", "30m",
            "{{ $value | humanizePercentage }} of products flagged for review",
            f"Products with outcome=review / processed over 6h above {_pct(s.review_ratio)}: "
            "inconsistent data (e.g. prices parsed wrongly).",
            url(Severity.P2),
            expr=f"{_share(PROCESSED, REVIEW, '6h')} > {_num(s.review_ratio)}",
        ),
        AlertRule(
            "NullFieldShareJump", "Data Quality Issues", Severity.P2, s.null_field_jump, ">", "ratio", "1h", "0m",
            "Share of coffees without roast/process jumped",
            f"Share of a roaster's coffees with null roast level or process rose by more than "
            f"{_pct(s.null_field_jump)} since its previous run.",
            url(Severity.P2), watchdog_only=True, needs_metric=f"{m.PREFIX}_coffees_null_field_ratio",
        ),
        # --- P3 ------------------------------------------------------------------------------------
        AlertRule(
            "MinorPerformanceDegradation", "Minor Performance Issues", Severity.P3, s.latency_degraded_p95_s,
            "between", "seconds", "10m", "30m",
            "Slight degradation: p95 fetch latency {{ $value | humanizeDuration }}",
            f"p95 latency of shop requests {_secs(s.latency_degraded_p95_s)}-{_secs(s.latency_slow_p95_s)} "
            "for 30 minutes.",
            url(Severity.P3),
            expr=f"{_p95_fetch('10m')} > {_num(s.latency_degraded_p95_s)} <= {_num(s.latency_slow_p95_s)}",
            upper=s.latency_slow_p95_s,
        ),
        AlertRule(
            "RoasterStale", "Informational Alerts", Severity.P3, stale_after, ">", "seconds", "1m", "10m",
            "Roaster {{ $labels.roaster }} not scraped successfully for {{ $value | humanizeDuration }}",
            f"Last successful run is older than {_num(s.stale_cadence_multiplier)}x the roaster's cadence "
            f"({_secs(s.roaster_cadence_s)}).",
            url(Severity.P3), expr=f"time() - {LAST_SUCCESS} > {_num(stale_after)}",
        ),
    ]  # fmt: skip
    return AlertConfig(rules=tuple(rules), severities=SEVERITIES, escalation_levels=ESCALATION_LEVELS)
