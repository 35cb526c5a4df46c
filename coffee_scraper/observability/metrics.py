"""Every Prometheus metric of coffee-scraper, declared once (prefix ``coffee_scraper_``).

Code elsewhere imports these objects and updates them; alert rules and dashboards refer to the NAMES below.
Nothing here measures anything by itself except the system collector (psutil), which reads live values.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from coffee_scraper.observability.system import SystemCollector

# No `<name>_created` series: nothing reads them, and they are ~40% of the exposition with 500 roasters.
disable_created_metrics()

PREFIX = "coffee_scraper"

# One registry for the app; tests may build their own with ``build_registry()``.
REGISTRY = CollectorRegistry(auto_describe=True)

# --- fetching (storefronts) -------------------------------------------------------------------------
FETCH_REQUESTS = Counter(
    f"{PREFIX}_fetch_requests_total",
    "HTTP requests to shops by result (ok, not_modified, retry, error, rate_limited, blocked).",
    ["roaster", "platform", "result"],
    registry=REGISTRY,
)
FETCH_DURATION = Histogram(
    f"{PREFIX}_fetch_duration_seconds",
    "Latency of one HTTP exchange with a shop.",
    ["roaster"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
FETCH_BYTES = Counter(f"{PREFIX}_fetch_bytes_total", "Response bytes read from shops.", ["roaster"], registry=REGISTRY)
FETCH_RETRIES = Counter(
    f"{PREFIX}_fetch_retries_total", "Requests retried (429/5xx/timeouts).", ["roaster"], registry=REGISTRY
)
FETCH_RATE_LIMITED = Counter(
    f"{PREFIX}_fetch_rate_limited_total", "429 answers received from shops.", ["roaster"], registry=REGISTRY
)
CIRCUIT_STATE = Gauge(
    f"{PREFIX}_circuit_state",
    "Circuit breaker per shop: 0 closed, 1 half-open, 2 open.",
    ["roaster"],
    registry=REGISTRY,
)

# --- pipeline -----------------------------------------------------------------------------------------
PRODUCTS_PROCESSED = Counter(
    f"{PREFIX}_products_processed_total",
    "Products handled by a run, by outcome (stored, unchanged, quarantined, review).",
    ["roaster", "outcome"],
    registry=REGISTRY,
)
VALIDATION_ERRORS = Counter(
    f"{PREFIX}_validation_errors_total",
    "Products that failed validation (quarantined).",
    ["roaster"],
    registry=REGISTRY,
)
STORAGE_OPERATIONS = Counter(
    f"{PREFIX}_storage_operations_total",
    "Storage writes and other remote calls by operation and result (ok, error): the runbook's 'RPC' error rate.",
    ["operation", "result"],
    registry=REGISTRY,
)
RUNS = Counter(
    f"{PREFIX}_runs_total",
    "Roaster runs finished, by mode and status.",
    ["roaster", "mode", "status"],
    registry=REGISTRY,
)
RUN_DURATION = Histogram(
    f"{PREFIX}_run_duration_seconds",
    "Wall time of one roaster run.",
    ["mode"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600),
    registry=REGISTRY,
)
LAST_SUCCESS = Gauge(
    f"{PREFIX}_last_success_timestamp_seconds",
    "Unix time of the roaster's last run with status ok.",
    ["roaster"],
    registry=REGISTRY,
)

# --- jobs, notifications, incidents, heartbeats (filled by later components) ---------------------------
QUEUE_DEPTH = Gauge(f"{PREFIX}_queue_depth", "Jobs waiting, per queue.", ["queue"], registry=REGISTRY)
JOBS = Counter(f"{PREFIX}_jobs_total", "Jobs finished, per queue and outcome.", ["queue", "outcome"], registry=REGISTRY)
NOTIFICATIONS = Counter(
    f"{PREFIX}_notifications_total",
    "Notifications sent, per channel and result.",
    ["channel", "result"],
    registry=REGISTRY,
)
NOTIFICATIONS_DEAD = Counter(
    f"{PREFIX}_notifications_dead_total",
    "Notifications given up on (dead-lettered) after too many attempts, too much age or a permanent error.",
    ["channel"],
    registry=REGISTRY,
)
OUTBOX_PENDING = Gauge(
    f"{PREFIX}_notification_outbox_pending",
    "Notifications waiting in the outbox (pending, failed-and-retrying, sending), per channel.",
    ["channel"],
    registry=REGISTRY,
)
OUTBOX_OLDEST_AGE = Gauge(
    f"{PREFIX}_notification_outbox_oldest_age_seconds",
    "Age of the oldest undelivered notification per channel (0 when none).",
    ["channel"],
    registry=REGISTRY,
)
NOTIFICATION_CIRCUIT_STATE = Gauge(
    f"{PREFIX}_notification_circuit_state",
    "Circuit breaker per notification channel: 0 closed, 1 half-open (one probe), 2 open (messages wait).",
    ["channel"],
    registry=REGISTRY,
)
ESCALATIONS = Counter(
    f"{PREFIX}_escalations_total",
    "Incident escalations performed, per level reached (2..4).",
    ["level"],
    registry=REGISTRY,
)
OPEN_INCIDENTS = Gauge(f"{PREFIX}_open_incidents", "Open incidents per severity.", ["severity"], registry=REGISTRY)
ALERTS_RECEIVED = Counter(
    f"{PREFIX}_alerts_received_total",
    "Alerts received by the receivers, per source (prometheus, alertmanager, pagerduty) and result (opened, "
    "grouped, refired, duplicate, stale, resolved, stored, silenced, acknowledged, dropped, invalid, throttled).",
    ["source", "result"],
    registry=REGISTRY,
)
INCIDENT_SPOOL_EVENTS = Gauge(
    f"{PREFIX}_incident_spool_events",
    "Watchdog alerts waiting in the local spool file because the incident store was unreachable.",
    registry=REGISTRY,
)
HEARTBEAT = Gauge(
    f"{PREFIX}_heartbeat_timestamp_seconds",
    "Unix time of the last heartbeat per component (scheduler, worker-N, watchdog).",
    ["component"],
    registry=REGISTRY,
)

# --- process and host (live psutil readings at scrape time; see system.py) -----------------------------
SYSTEM = SystemCollector(PREFIX)
REGISTRY.register(SYSTEM)
