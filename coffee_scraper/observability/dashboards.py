"""Grafana dashboards, generated as JSON from code (``coffee-scraper export grafana-dashboards``).

Every query refers to metric names taken from ``observability/metrics.py`` (and the alert rules' helpers in
``incidents/alert_config.py``), so a renamed metric breaks the export test instead of a dashboard silently going
blank. Every panel and query uses one datasource, ``DATASOURCE`` (uid ``coffee-scraper-prometheus``), which the
Grafana provisioning in ``deploy/grafana/provisioning/datasources/prometheus.yml`` creates with the same uid.

Thresholds drawn on panels are the *default* alert thresholds (``AlertSettings`` field defaults, never the
environment), so an export is deterministic and the committed JSON equals a fresh export.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from coffee_scraper.incidents.alert_config import (
    ERRORED,
    FETCH_FAILED,
    HOST_DISK,
    HOST_MEMORY,
    AlertSettings,
    _error_ratio,
)
from coffee_scraper.observability import metrics as m

Json = dict[str, Any]

DATASOURCE_UID = "coffee-scraper-prometheus"
DATASOURCE: Json = {"type": "prometheus", "uid": DATASOURCE_UID}
SCHEMA_VERSION = 39
DEFAULT_OUT = Path("deploy/grafana/dashboards")
RATE = "$__rate_interval"  # Grafana's safe rate window (at least four scrape intervals)
ROASTER_VAR = "roaster"
ROASTER_SELECTOR = f'roaster=~"${ROASTER_VAR}"'


def series(metric: Counter | Gauge | Histogram, suffix: str = "") -> str:
    """The exposed sample name of a metrics.py object: counters get ``_total``; histograms take a suffix."""
    family = next(iter(metric.describe()))
    if isinstance(metric, Counter):
        return f"{family.name}_total"
    if isinstance(metric, Histogram):
        if suffix not in {"_bucket", "_sum", "_count"}:
            raise ValueError(f"{family.name}: a histogram needs _bucket, _sum or _count, not {suffix!r}")
        return f"{family.name}{suffix}"
    return family.name


FETCH = series(m.FETCH_REQUESTS)
FETCH_BUCKET = series(m.FETCH_DURATION, "_bucket")
RETRIES = series(m.FETCH_RETRIES)
RATE_LIMITED = series(m.FETCH_RATE_LIMITED)
CIRCUIT = series(m.CIRCUIT_STATE)
PROCESSED = series(m.PRODUCTS_PROCESSED)
VALIDATION = series(m.VALIDATION_ERRORS)
STORAGE = series(m.STORAGE_OPERATIONS)
RUNS = series(m.RUNS)
RUN_BUCKET = series(m.RUN_DURATION, "_bucket")
LAST_SUCCESS = series(m.LAST_SUCCESS)
NOTIFY = series(m.NOTIFICATIONS)
OPEN_INCIDENTS = series(m.OPEN_INCIDENTS)
HEARTBEAT = series(m.HEARTBEAT)
PROCESS_RSS = f"{m.SYSTEM.prefix}_process_resident_memory_bytes"
PROCESS_CPU = f"{m.SYSTEM.prefix}_process_cpu_seconds_total"


def _default(field: str) -> Any:
    """An alert threshold's default (not the environment's override: exports must be reproducible)."""
    return AlertSettings.model_fields[field].default


JOB = _default("prometheus_job")


# --- panel builders ---------------------------------------------------------------------------------------


def _target(expr: str, legend: str, ref: str) -> Json:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref, "range": True}


def _thresholds(*steps: tuple[float, str]) -> Json:
    return {
        "mode": "absolute",
        "steps": [{"color": "green", "value": None}] + [{"color": c, "value": v} for v, c in steps],
    }


def panel(
    title: str,
    queries: list[tuple[str, str]],
    *,
    description: str = "",
    kind: str = "timeseries",
    unit: str = "short",
    thresholds: tuple[tuple[float, str], ...] = (),
    mappings: list[Json] | None = None,
    width: int = 12,
    height: int = 8,
    stack: bool = False,
) -> Json:
    """One panel; ``queries`` are (PromQL, legend) pairs. Position and id are filled in by ``dashboard``."""
    defaults: Json = {"unit": unit, "thresholds": _thresholds(*thresholds), "mappings": mappings or []}
    options: Json
    if kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if stack else "none", "group": "A"},
            "thresholdsStyle": {"mode": "dashed" if thresholds else "off"},
        }
        options = {
            "legend": {"displayMode": "table", "placement": "bottom", "showLegend": True, "calcs": ["lastNotNull"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    else:  # stat
        defaults["color"] = {"mode": "thresholds"}
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "area",
            "justifyMode": "auto",
            "orientation": "auto",
            "textMode": "auto",
        }
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"h": height, "w": width, "x": 0, "y": 0},
        "targets": [_target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(queries)],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
    }


def _roaster_variable() -> Json:
    query = f"label_values({FETCH}, {ROASTER_VAR})"
    return {
        "name": ROASTER_VAR,
        "label": "Roaster",
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2,  # on time range change
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
        "hide": 0,
        "options": [],
        "regex": "",
    }


def dashboard(
    uid: str, title: str, description: str, panels: list[Json], *, variables: list[Json] | None = None
) -> Json:
    """A dashboard with ``panels`` laid out left to right, top to bottom on Grafana's 24-column grid."""
    x = y = row_height = 0
    laid_out = []
    for i, p in enumerate(panels, start=1):
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if x + w > 24:
            x, y, row_height = 0, y + row_height, 0
        laid_out.append({"id": i, **p, "gridPos": {"h": h, "w": w, "x": x, "y": y}})
        x, row_height = x + w, max(row_height, h)
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["coffee-scraper"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "annotations": {"list": []},
        "links": [{"type": "dashboards", "tags": ["coffee-scraper"], "asDropdown": True, "title": "coffee-scraper"}],
        "templating": {"list": variables or []},
        "panels": laid_out,
    }


# --- the dashboards ---------------------------------------------------------------------------------------

SEVERITY_LEGEND = "{{severity}}"
CIRCUIT_MAPPINGS: list[Json] = [
    {
        "type": "value",
        "options": {
            "0": {"text": "closed", "color": "green", "index": 0},
            "1": {"text": "half-open", "color": "orange", "index": 1},
            "2": {"text": "open", "color": "red", "index": 2},
        },
    }
]
UP_MAPPINGS: list[Json] = [
    {
        "type": "value",
        "options": {
            "0": {"text": "DOWN", "color": "red", "index": 0},
            "1": {"text": "UP", "color": "green", "index": 1},
        },
    }
]


def _open_incidents(kind: str = "stat", width: int = 12) -> Json:
    return panel(
        "Open incidents by severity",
        [(f"sum by (severity) ({OPEN_INCIDENTS})", SEVERITY_LEGEND)],
        description="Incidents not yet resolved, per runbook severity (P0-P3).",
        kind=kind,
        thresholds=((1, "red"),),
        width=width,
    )


def overview() -> Json:
    error_high, error_critical = _default("error_rate_high_ratio"), _default("rpc_error_critical_ratio")
    panels = [
        panel(
            "Fetch requests by result",
            [(f"sum by (result) (rate({FETCH}[{RATE}]))", "{{result}}")],
            description="HTTP requests to shops per second, by result.",
            unit="reqps",
            stack=True,
        ),
        panel(
            "Error ratio (runbook RPC error rate, 5m)",
            [(_error_ratio("5m"), "failed / all")],
            description=(
                "(failed storage operations + fetches ending in "
                f"{FETCH_FAILED}) / (all storage operations + all fetches), over 5m: the expression of the "
                "HighRPCErrorRate (P0) and HighErrorRate (P1) alerts. Dashed lines are their default thresholds."
            ),
            unit="percentunit",
            thresholds=((error_high, "orange"), (error_critical, "red")),
        ),
        panel(
            "Products processed by outcome",
            [(f"sum by (outcome) (rate({PROCESSED}[{RATE}]))", "{{outcome}}")],
            description="Products handled by runs per second: stored, unchanged, quarantined, review.",
            unit="ops",
            stack=True,
        ),
        panel(
            "Runs by status (1h)",
            [(f"sum by (status) (increase({RUNS}[1h]))", "{{status}}")],
            description="Roaster runs finished in the last hour, by status.",
            stack=True,
        ),
        _open_incidents(width=8),
        panel(
            "Heartbeat age",
            [(f"time() - max by (component) ({HEARTBEAT})", "{{component}}")],
            description="Seconds since each component's last heartbeat; HeartbeatMissing (P0) fires past the line.",
            unit="s",
            thresholds=((_default("heartbeat_max_age_s"), "red"),),
            width=8,
        ),
        panel(
            "App scraped by Prometheus",
            [(f'up{{job="{JOB}"}}', "{{instance}}")],
            description="1 when Prometheus can scrape the app's /metrics; SystemDown (P0) fires on 0.",
            kind="stat",
            mappings=UP_MAPPINGS,
            width=8,
        ),
    ]
    return dashboard("coffee-scraper-overview", "coffee-scraper / Overview", "Is the scraper healthy?", panels)


def scraping() -> Json:
    sel = ROASTER_SELECTOR
    panels = [
        panel(
            "Request rate by result",
            [(f"sum by (roaster, result) (rate({FETCH}{{{sel}}}[{RATE}]))", "{{roaster}} {{result}}")],
            unit="reqps",
        ),
        panel(
            "p95 fetch latency",
            [
                (
                    f"histogram_quantile(0.95, sum by (roaster, le) (rate({FETCH_BUCKET}{{{sel}}}[{RATE}])))",
                    "{{roaster}}",
                )
            ],
            description="95th percentile of one HTTP exchange with the shop. Lines: P3/P2/P1 latency thresholds.",
            unit="s",
            thresholds=(
                (_default("latency_degraded_p95_s"), "yellow"),
                (_default("latency_slow_p95_s"), "orange"),
                (_default("latency_significant_p95_s"), "red"),
            ),
        ),
        panel(
            "429 Too Many Requests",
            [(f"sum by (roaster) (rate({RATE_LIMITED}{{{sel}}}[{RATE}]))", "{{roaster}}")],
            description="Rate-limit answers received from the shop, per second.",
            unit="reqps",
        ),
        panel(
            "Retries",
            [(f"sum by (roaster) (rate({RETRIES}{{{sel}}}[{RATE}]))", "{{roaster}}")],
            description="Requests retried after 429/5xx/timeouts, per second.",
            unit="reqps",
        ),
        panel(
            "Circuit breaker state",
            [(f"max by (roaster) ({CIRCUIT}{{{sel}}})", "{{roaster}}")],
            description="0 closed, 1 half-open, 2 open (the shop is skipped until a half-open probe succeeds).",
            kind="stat",
            thresholds=((1, "orange"), (2, "red")),
            mappings=CIRCUIT_MAPPINGS,
        ),
        panel(
            "Time since last successful run",
            [(f"time() - max by (roaster) ({LAST_SUCCESS}{{{sel}}})", "{{roaster}}")],
            description="Line: the stale-roaster informational threshold (cadence x multiplier).",
            unit="s",
            thresholds=((_default("roaster_cadence_s") * _default("stale_cadence_multiplier"), "orange"),),
        ),
        panel(
            "Products processed by outcome",
            [(f"sum by (roaster, outcome) (rate({PROCESSED}{{{sel}}}[{RATE}]))", "{{roaster}} {{outcome}}")],
            unit="ops",
        ),
        panel(
            "Validation errors (quarantined)",
            [(f"sum by (roaster) (rate({VALIDATION}{{{sel}}}[{RATE}]))", "{{roaster}}")],
            unit="ops",
        ),
    ]
    return dashboard(
        "coffee-scraper-scraping",
        "coffee-scraper / Scraping per roaster",
        "Fetching health of each shop.",
        panels,
        variables=[_roaster_variable()],
    )


def storage() -> Json:
    panels = [
        panel(
            "Storage operations by operation and result",
            [(f"sum by (operation, result) (rate({STORAGE}[{RATE}]))", "{{operation}} {{result}}")],
            unit="ops",
            width=24,
        ),
        panel(
            "Storage error ratio (5m)",
            [(f"sum(rate({STORAGE}{{{ERRORED}}}[5m])) / sum(rate({STORAGE}[5m]))", "failed / all")],
            description="Share of storage operations failing; DatabaseDown (P0) fires at 100%.",
            unit="percentunit",
            thresholds=((_default("db_down_error_ratio"), "red"),),
        ),
        panel(
            "Run duration p95 (24h)",
            [
                (
                    f"histogram_quantile(0.95, sum by (mode, le) (increase({RUN_BUCKET}[1d])))",
                    "{{mode}}",
                )
            ],
            description="95th percentile wall time of one roaster run over the last day, per mode.",
            unit="s",
        ),
    ]
    return dashboard("coffee-scraper-storage", "coffee-scraper / Storage", "Catalog database writes.", panels)


def incidents() -> Json:
    panels = [
        _open_incidents(kind="stat", width=24),
        panel(
            "Open incidents over time",
            [(f"sum by (severity) ({OPEN_INCIDENTS})", SEVERITY_LEGEND)],
            stack=True,
        ),
        panel(
            "Notifications by channel and result",
            [(f"sum by (channel, result) (rate({NOTIFY}[{RATE}]))", "{{channel}} {{result}}")],
            description="Notifications sent per second; failures feed the Monitoring Issues (P2) alert.",
            unit="ops",
        ),
    ]
    return dashboard("coffee-scraper-incidents", "coffee-scraper / Incidents", "Incidents and notifications.", panels)


def system() -> Json:
    panels = [
        panel(
            "Host disk usage",
            [(f"max by (path) ({HOST_DISK})", "{{path}}")],
            description="Share of the filesystem holding each watched path. Lines: P1 warning, P0 critical.",
            unit="percentunit",
            thresholds=((_default("disk_warning_ratio"), "orange"), (_default("disk_critical_ratio"), "red")),
        ),
        panel(
            "Host memory usage",
            [(f"max by (instance) ({HOST_MEMORY})", "{{instance}}")],
            description="1 - available/total. Lines: P2 pressure, P1 high, P0 exhaustion.",
            unit="percentunit",
            thresholds=(
                (_default("memory_pressure_ratio"), "yellow"),
                (_default("memory_high_ratio"), "orange"),
                (_default("memory_exhaustion_ratio"), "red"),
            ),
        ),
        panel(
            "Process resident memory",
            [(f"max by (instance) ({PROCESS_RSS})", "{{instance}}")],
            unit="bytes",
        ),
        panel(
            "Process CPU",
            [(f"sum by (instance) (rate({PROCESS_CPU}[{RATE}]))", "{{instance}}")],
            description="CPU seconds per second (1 = one core busy).",
            unit="percentunit",
        ),
    ]
    return dashboard("coffee-scraper-system", "coffee-scraper / System", "Host and process resources.", panels)


def dashboards() -> dict[str, Json]:
    """Every dashboard by file name (``<uid>.json``)."""
    return {f"{d['uid']}.json": d for d in (overview(), scraping(), storage(), incidents(), system())}


def render(board: Json) -> str:
    return json.dumps(board, indent=2, ensure_ascii=False) + "\n"


def write_dashboards(out_dir: Path = DEFAULT_OUT) -> list[Path]:
    """Write one JSON file per dashboard into ``out_dir`` (created if missing); returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, board in dashboards().items():
        path = out_dir / name
        path.write_text(render(board), encoding="utf-8")
        written.append(path)
    return written


def expressions(board: Json) -> Iterator[str]:
    """Every PromQL expression of a dashboard's panels (variable queries: ``variable_queries``)."""
    for p in board["panels"]:
        for t in p["targets"]:
            yield t["expr"]


def variable_queries(board: Json) -> Iterator[str]:
    """The Grafana queries of a dashboard's query variables, e.g. ``label_values(metric, label)``."""
    for v in board["templating"]["list"]:
        if v["type"] == "query":
            yield v["definition"]
