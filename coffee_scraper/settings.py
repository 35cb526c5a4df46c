"""Every setting of coffee-scraper and its default, in one place.

Read from the environment (prefix ``COFFEE_SCRAPER_``) and from a ``.env`` file in the working
directory. Alert thresholds do not live here (see ``incidents/alert_config.py``); metric names neither.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
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

    # --- observability --------------------------------------------------------------------------
    sentry_dsn: str | None = Field(
        None,
        description="Sentry DSN (https://key@host/project); errors are reported to Sentry only when this is set.",
    )
    sentry_environment: str = Field("production", description="Sentry environment tag of every event.")
    sentry_traces_sample_rate: float = Field(
        0.0, description="Share of transactions sent to Sentry as performance traces (0 = none, 1.0 = all)."
    )

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
