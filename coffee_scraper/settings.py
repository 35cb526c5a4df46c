"""Every setting of coffee-scraper and its default, in one place.

Read from the environment (prefix ``COFFEE_SCRAPER_``) and from a ``.env`` file in the working
directory. Alert thresholds do not live here (see ``incidents/alert_config.py``); metric names neither.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Runtime configuration. Every field documents its default and meaning."""

    model_config = SettingsConfigDict(
        env_prefix="COFFEE_SCRAPER_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # --- storage -------------------------------------------------------------------------------
    database_url: str = Field(
        "sqlite:///data/coffee_scraper.db",
        description="SQLAlchemy URL of the catalog database: sqlite:///path or postgresql+psycopg://user@host/db.",
    )
    log_dir: Path = Field(
        Path("/var/log/coffee-scraper"),
        description="Directory for component log files; falls back to ./logs when not writable.",
    )
    log_format: str = Field("auto", description="'json', 'console', or 'auto' (console on a TTY, JSON otherwise).")
    log_level: str = Field("INFO", description="Minimum log level.")

    # --- fetching and politeness ------------------------------------------------------------------
    user_agent: str = Field(
        "coffee-scraper/0.1 (+https://github.com/coffee-scraper/coffee-scraper; catalog indexer)",
        description="User-Agent sent to shops; must name the product and a contact URL.",
    )
    robots_token: str = Field("coffee-scraper", description="Product token matched against robots.txt groups.")
    request_delay_s: float = Field(1.0, description="Minimum delay between two requests to one shop (seconds).")
    request_jitter_s: float = Field(0.25, description="Random extra delay added to each request to a shop (0..j s).")
    per_shop_concurrency: int = Field(1, description="Requests in flight per shop at once.")
    global_concurrency: int = Field(16, description="Shops fetched at once across the whole process.")
    connect_timeout_s: float = Field(10.0, description="TCP/TLS connect timeout per request.")
    read_timeout_s: float = Field(30.0, description="Read timeout per request (also caps a hanging shop).")
    max_response_bytes: int = Field(10 * 1024 * 1024, description="Largest response body accepted (streamed).")
    max_attempts: int = Field(5, description="Tries per request for 429/5xx/timeouts before giving up.")
    backoff_base_s: float = Field(2.0, description="First backoff wait; doubles per try, with jitter.")
    backoff_cap_s: float = Field(60.0, description="Longest backoff wait between tries.")
    retry_after_cap_s: float = Field(600.0, description="Longest Retry-After wait honoured (longer ones fail).")
    request_deadline_s: float = Field(
        90.0,
        description="Wall-clock limit for one HTTP attempt (connect, headers and whole body); cuts a shop "
        "that trickles bytes forever, which the read timeout alone does not.",
    )
    robots_cache_s: int = Field(24 * 3600, description="How long a fetched robots.txt is trusted.")
    robots_error_retry_s: float = Field(
        900.0,
        description="After robots.txt failed (5xx/network), how long that outcome stands before it is fetched "
        "again; meanwhile the shop is disallowed unless a cached copy younger than 30 days exists.",
    )
    breaker_failure_threshold: int = Field(5, description="Consecutive failed requests that open a shop's circuit.")
    breaker_reset_s: float = Field(300.0, description="Seconds an open circuit waits before a half-open probe.")
    allow_private_addresses: bool = Field(
        False,
        description="Allow fetching shops on private/loopback addresses (SSRF guard). Tests and the demo enable it.",
    )

    # --- pipeline ---------------------------------------------------------------------------------
    shopify_page_limit: int = Field(250, description="Products per Shopify products.json page (max 250).")
    woocommerce_per_page: int = Field(100, description="Products per WooCommerce Store API page (max 100).")
    price_review_delta: float = Field(0.10, description="Relative price change flagged for review (0.10 = 10%).")
    default_currency: str = Field("INR", description="Currency assumed for a Shopify shop without meta.json.")
    store_raw_artifacts: bool = Field(True, description="Store every fetched page compressed for replay.")

    # --- cadences (used by the scheduler) ---------------------------------------------------------
    full_cadence: str = Field("0 3 1 * *", description="Default cron for full catalog runs.")
    price_cadence: str = Field("0 4 * * 0", description="Default cron for price runs.")

    # --- scheduling: embedded scheduler and distributed workers (jobs/) ------------------------------
    scheduler_mode: str = Field(
        "auto",
        description="Who starts due runs: 'embedded' (asyncio scheduler inside `coffee-scraper serve`), "
        "'distributed' (procrastinate: `coffee-scraper worker` processes, PostgreSQL only), 'off', or 'auto' "
        "(embedded on SQLite, distributed on PostgreSQL, whose migrations install procrastinate's schema).",
    )
    cadence_timezone: str = Field("UTC", description="IANA time zone cron cadences are read in (e.g. Asia/Kolkata).")
    scheduler_tick_s: float = Field(
        30.0, description="Embedded scheduler: seconds between two looks for due runs (also its heartbeat)."
    )
    scheduler_first_run_immediately: bool = Field(
        True,
        description="A roaster that never ran gets its first full run at the next tick instead of its cron time.",
    )
    max_concurrent_runs: int = Field(
        32,
        description="Global cap on roaster runs in progress at once: an in-process semaphore in embedded mode, "
        "PostgreSQL advisory-lock slots shared by every worker in distributed mode (0 = only worker concurrency; "
        "raise it when adding worker machines).",
    )
    run_stale_after_s: float = Field(
        3600.0,
        description="A run row still 'running' after this many seconds is treated as abandoned, not in progress.",
    )
    pause_after_failed_runs: int = Field(
        3,
        description="Pause a roaster (active=false, reason recorded) after this many runs in a row failed "
        "because of its shop (0 = never).",
    )
    storage_error_pause_ratio: float = Field(
        0.5,
        description="Pause the whole queue when at least this share of a process's recent runs hit storage "
        "errors (resume with `coffee-scraper jobs resume`).",
    )
    storage_error_window: int = Field(10, description="How many recent runs the storage error share is taken over.")
    storage_error_min_runs: int = Field(
        4, description="Fewest recent runs before the storage error share can pause the queue."
    )
    retry_max_attempts: int = Field(
        5, description="Tries of one run that failed on storage errors or a dead worker (not shop errors)."
    )
    retry_backoff_base_s: float = Field(
        30.0, description="First wait before retrying such a run; doubles per try (with retry_backoff_cap_s)."
    )
    retry_backoff_cap_s: float = Field(3600.0, description="Longest wait between two tries of one run.")
    heartbeat_interval_s: float = Field(
        15.0, description="Workers: seconds between heartbeats (heartbeats table, metric, procrastinate_workers)."
    )
    worker_concurrency: int = Field(8, description="Runs one `coffee-scraper worker` process executes at once.")
    worker_shutdown_timeout_s: float = Field(
        60.0,
        description="On SIGTERM a worker finishes its runs for at most this long, then releases the rest to "
        "the queue (their run rows are marked failed: interrupted).",
    )
    worker_stalled_after_s: float = Field(
        60.0,
        description="A worker whose procrastinate heartbeat is older than this is dead: its runs are retried.",
    )
    enqueue_cron: str = Field(
        "* * * * *", description="Distributed mode: how often due runs are enqueued (procrastinate periodic task)."
    )
    stalled_check_cron: str = Field(
        "* * * * *", description="Distributed mode: how often runs of dead workers are looked for and retried."
    )
    queue_pause_recheck_s: float = Field(
        60.0, description="Distributed mode: a run picked up while the queue is paused is put back for this long."
    )

    # --- observability --------------------------------------------------------------------------
    sentry_dsn: str | None = Field(
        None,
        description="Sentry DSN (https://key@host/project); errors are reported to Sentry only when this is set.",
    )
    sentry_environment: str = Field("production", description="Sentry environment tag of every event.")
    sentry_traces_sample_rate: float = Field(
        0.0, description="Share of transactions sent to Sentry as performance traces (0 = none, 1.0 = all)."
    )

    # --- notifications, on-call and escalation (incidents/notify, oncall, escalation, runner) ------------
    # A channel without its URL/host/repo is off; `coffee-scraper oncall show` lists which channels are on.
    slack_webhook_url: SecretStr | None = Field(
        None, description="Slack incoming-webhook URL (https://hooks.slack.com/services/...); unset = Slack off."
    )
    slack_channel: str = Field("#coffee-scraper-alerts", description="Slack channel named in every Slack message.")
    github_api_url: str = Field(
        "https://api.github.com", description="GitHub REST API base URL (GitHub Enterprise: https://HOST/api/v3)."
    )
    github_repo: str | None = Field(
        None, description="owner/name of the repository for incident issues; unset = GitHub issues off."
    )
    github_token: SecretStr | None = Field(
        None, description="GitHub token with issues read/write on github_repo (sent as Bearer; never logged)."
    )
    smtp_host: str | None = Field(None, description="SMTP server for incident e-mail; unset = e-mail off.")
    smtp_port: int = Field(587, description="SMTP port (587 STARTTLS, 465 implicit TLS, 25 plain).")
    smtp_user: str | None = Field(None, description="SMTP login user (unset = no AUTH).")
    smtp_password: SecretStr | None = Field(None, description="SMTP login password.")
    smtp_starttls: bool = Field(True, description="Upgrade the SMTP connection with STARTTLS before sending.")
    smtp_ssl: bool = Field(False, description="Implicit TLS from the first byte (port 465); wins over starttls.")
    smtp_from: str = Field("coffee-scraper@localhost", description="From address of incident e-mail.")
    smtp_to: str = Field(
        "", description="Extra recipients (comma-separated) of every incident e-mail, besides the roster's people."
    )
    smtp_timeout_s: float = Field(15.0, description="SMTP connect/command timeout (seconds).")
    webhook_url: str | None = Field(
        None, description="Generic outbound webhook: POST on every lifecycle event; unset = webhook off."
    )
    webhook_template: Path | None = Field(
        None, description="Jinja2 (sandboxed) template file for the webhook body; unset = built-in JSON body."
    )
    webhook_secret: SecretStr | None = Field(
        None, description="Secret for the webhook's X-Coffee-Scraper-Signature header (sha256=HMAC of the body)."
    )
    webhook_content_type: str = Field("application/json", description="Content-Type of the webhook body.")
    notify_http_timeout_s: float = Field(10.0, description="Timeout of one HTTP delivery (Slack, GitHub, webhook).")
    dashboard_url: str | None = Field(
        None, description="Base URL of this app's dashboard; messages link to DASHBOARD/incidents/ID."
    )
    grafana_url: str | None = Field(None, description="Grafana URL linked from every incident message.")
    prometheus_url: str | None = Field(None, description="Prometheus URL linked from every incident message.")
    sentry_url: str | None = Field(None, description="Sentry project URL linked from every incident message.")
    oncall_file: Path = Field(
        Path("oncall.toml"), description="On-call roster (TOML; see oncall.example.toml); missing = nobody to page."
    )
    reminder_interval_s: float = Field(
        900.0, description="Status-update reminder to the owner of an open P0/P1 this long after the last update."
    )
    business_hours: str = Field(
        "09:00-17:00", description="Business hours (local time of the person) when P3 notifications are delivered."
    )
    business_days: str = Field(
        "mon,tue,wed,thu,fri", description="Business days (comma-separated mon..sun) for P3 notifications."
    )
    business_timezone: str = Field(
        "UTC", description="Time zone for business hours of targets without one (e.g. the Slack channel)."
    )
    outbox_max_attempts: int = Field(12, description="Delivery attempts of one message before it is dead-lettered.")
    outbox_max_age_s: float = Field(
        24 * 3600.0, description="A message still undelivered this long after it was queued is dead-lettered."
    )
    outbox_backoff_base_s: float = Field(5.0, description="First retry wait of a failed delivery; doubles per try.")
    outbox_backoff_cap_s: float = Field(600.0, description="Longest wait between two delivery attempts.")
    outbox_batch_size: int = Field(50, description="Messages claimed per delivery pass.")
    notify_circuit_failure_threshold: int = Field(
        5, ge=1, description="Consecutive failed deliveries on one channel that open its circuit (its messages wait)."
    )
    notify_circuit_reset_s: float = Field(
        120.0, gt=0, description="Seconds an open notification circuit waits before one half-open probe message."
    )
    incident_runner_enabled: bool = Field(
        True, description="Run the incident loop (escalation, reminders, delivery) inside `coffee-scraper serve`."
    )
    incident_runner_interval_s: float = Field(
        2.0, description="Seconds between two passes of the incident loop (new messages in-process go at once)."
    )

    # --- recovery: diagnostics, remediation, follow-up (incidents/diagnostics, remediation, followup) --------
    diagnostics_timeout_s: float = Field(
        5.0,
        description="Time limit of each diagnostic check; a check over it is reported failed, the others still run.",
    )
    diagnostics_on_open: bool = Field(
        True, description="Run diagnostics automatically when an incident opens and put the result on its timeline."
    )
    diagnostics_error_lines: int = Field(20, description="Newest ERROR lines shown per component log by diagnostics.")
    diagnostics_log_window_s: float = Field(
        3600.0, description="ERROR log lines newer than this (seconds) count as recent for diagnostics."
    )
    diagnostics_service_url: str = Field(
        "http://127.0.0.1:8000",
        description="Base URL of the running `coffee-scraper serve` whose /health/ready diagnostics asks "
        "when no systemd unit is present.",
    )
    diagnostics_watched_dirs: list[Path] = Field(
        [],
        description="Extra directories (JSON list) whose largest files diagnostics lists; the data, log and temp "
        "directories are always listed.",
    )
    service_manager: str = Field(
        "auto",
        description="How `remediate restart-service` restarts the app: 'systemd', 'none', or 'auto' (systemd when "
        "the machine runs it).",
    )
    systemd_unit: str = Field("coffee-scraper", description="systemd unit of the app (status and restart).")
    temp_dir: Path | None = Field(
        None,
        description="Directory whose coffee-scraper-* entries `remediate clean-temp` removes (unset = the system "
        "temp directory).",
    )
    temp_min_age_s: float = Field(
        3600.0,
        description="clean-temp keeps entries modified within this many seconds and any a running process uses.",
    )
    log_compress_after_days: float = Field(
        1.0, description="`remediate rotate-logs` gzips rotated component logs (app.log.1, ...) older than this."
    )
    log_retention_days: float = Field(
        30.0, description="`remediate rotate-logs` deletes compressed logs older than this many days."
    )
    artifact_retention_days: float = Field(
        90.0,
        description="`remediate prune-artifacts` deletes raw pages older than this many days, except those of "
        "each roaster's latest run (replay keeps working); catalog rows are never deleted.",
    )
    auto_pause_queue_on_storage_p0: bool = Field(
        True,
        description="Pause the scraping queue automatically when a P0 database or storage-error incident opens "
        "(stops hammering a failing database; resume with `coffee-scraper remediate resume-queue`).",
    )
    auto_clean_temp_on_disk_p0: bool = Field(
        False, description="Run `remediate clean-temp` automatically when a P0 Disk Usage Critical incident opens."
    )
    auto_reconnect_db_on_db_incident: bool = Field(
        False, description="Reconnect the database pool automatically when a database incident opens."
    )
    checklist_reminder_interval_s: float = Field(
        3600.0, description="How often an overdue post-incident checklist item is reminded again (seconds)."
    )
    recovery_interval_s: float = Field(
        10.0,
        description="Seconds between two passes of the recovery loop in `serve` (diagnostics on open, checklists "
        "and postmortems on resolution, overdue reminders); 0 turns it off.",
    )

    # --- incidents: API, alert receivers, alerts -> incidents (incidents/flows, receivers, views) ---------
    api_token: SecretStr | None = Field(
        None,
        description="Bearer token of the HTTP API (/api/...): alert receivers and incident writes need "
        "`Authorization: Bearer TOKEN`; unset = those endpoints answer 503 (secure by default). Never logged.",
    )
    api_read_requires_token: bool = Field(
        True, description="Reading incidents and silences over the API needs the token too (false = open reads)."
    )
    api_max_body_bytes: int = Field(
        512 * 1024, description="Largest request body accepted under /api/ (413 above it, chunked bodies too)."
    )
    incident_group_window_s: float = Field(
        3600.0,
        description="An alert joins the open incident of the same rule + component when that incident saw "
        "alert activity within this many seconds (rolling); otherwise a new incident opens.",
    )
    incident_component_labels: str = Field(
        "component",
        description="Alert labels (comma-separated, first present wins) naming the component for grouping "
        "and maintenance windows.",
    )
    incident_flap_threshold: int = Field(
        3, description="An alert re-firing this many times in a row, each within the flap window, is flapping."
    )
    incident_flap_window_s: float = Field(
        600.0,
        description="Flapping: a re-fire within this many seconds of the last resolve counts; a flapping "
        "alert's resolve only counts once it stayed resolved this long (the incident is held open).",
    )
    incident_auto_resolve: bool = Field(
        True, description="Resolve an incident automatically once all its alerts resolved and it stayed quiet."
    )
    incident_quiet_period_s: float = Field(
        600.0, description="Quiet period (seconds) of a resolve-pending incident before it is auto-resolved."
    )
    incident_alert_resolve_timeout_s: float = Field(
        300.0, description="A Prometheus-direct alert posted without endsAt expires this long after receipt."
    )
    incident_pagerduty_rate_per_min: int = Field(
        120, description="PagerDuty receiver: events per minute per routing key before answering 429."
    )
    incident_sweep_interval_s: float = Field(
        30.0,
        description="`serve` sweeps every this many seconds: expired alerts, auto-resolve, response-deadline "
        "breaches (0 = off; `coffee-scraper incidents sweep` does the same once).",
    )
    incident_raw_max_bytes: int = Field(
        16 * 1024, description="Largest raw alert JSON stored per alert (larger ones are kept truncated)."
    )
    incident_text_max_chars: int = Field(
        4000, description="Longest annotation/description text stored per alert field (longer is cut)."
    )

    # --- watchdog: the runbook's rules on live measurements, no Prometheus needed (incidents/watchdog.py) ---
    incidents_database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the incident store (incidents, alerts, timeline, outbox); unset = the catalog "
        "database. Point it elsewhere (e.g. sqlite:///data/incidents.db) so a dead catalog database cannot "
        "silence incident response.",
    )
    watchdog_enabled: bool = Field(True, description="Run the built-in watchdog inside `coffee-scraper serve`.")
    watchdog_interval_s: float = Field(30.0, description="Seconds between two watchdog evaluations of every rule.")
    watchdog_probe_timeout_s: float = Field(
        3.0, description="Deadline of each watchdog probe (SELECT 1, catalog queries, Prometheus API)."
    )
    watchdog_disk_paths: list[str] = Field(
        [],
        description="Paths (JSON list) whose filesystems the disk rules watch; empty = the SQLite data directory, "
        "the log directory and /.",
    )
    watchdog_spool_file: Path = Field(
        Path("data/incident-spool.jsonl"),
        description="Where watchdog alerts wait (JSON lines) while the incident store is unreachable; replayed "
        "in order once it answers.",
    )
    watchdog_state_file: Path = Field(
        Path("data/watchdog-state.json"),
        description="The watchdog's last evaluation and rule states (read by `coffee-scraper watchdog status`, "
        "resumed after a restart).",
    )

    # --- dashboard: login sessions and pages (accounts/, web/security.py, web/pages/) ----------------
    dashboard_session_secret: SecretStr | None = Field(
        None,
        description="Secret that signs the dashboard's CSRF tokens; unset = a random one is generated on first "
        "start and kept in the database (table app_secrets), shared by every process. Never logged.",
    )
    dashboard_session_lifetime_s: int = Field(
        12 * 3600, description="How long a dashboard login lasts (seconds) before the user logs in again."
    )
    dashboard_cookie_secure: bool = Field(
        False,
        description="Send the session cookie only over HTTPS (set true whenever the dashboard is served "
        "through HTTPS, e.g. behind a reverse proxy).",
    )
    dashboard_login_max_failures: int = Field(
        10, description="Wrong passwords in a row that lock a dashboard account for dashboard_login_lockout_s."
    )
    dashboard_login_lockout_s: float = Field(300.0, description="How long a locked dashboard account stays locked.")
    dashboard_page_size: int = Field(50, description="Rows per page in the dashboard's coffee and run lists.")

    # --- demo -----------------------------------------------------------------------------------
    demo_shops: int = Field(3, description="Demo shops served by `coffee-scraper demo`.")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def settings_markdown() -> str:
    """The settings reference (docs/settings.md), generated from the fields above."""
    lines = [
        "# Settings",
        "",
        "Generated by `coffee-scraper settings --markdown` from `coffee_scraper/settings.py`; do not edit by hand.",
        "Set each as an environment variable (or in `.env`) with the prefix `COFFEE_SCRAPER_`.",
        "",
        "| variable | default | meaning |",
        "|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = str(default).replace("|", "\\|") if not isinstance(default, bool) else str(default).lower()
        lines.append(f"| `COFFEE_SCRAPER_{name.upper()}` | `{shown}` | {field.description} |")
    return "\n".join(lines) + "\n"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once). Tests build ``Settings(...)`` directly instead."""
    return Settings()
