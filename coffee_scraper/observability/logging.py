"""Structured logging (structlog): JSON lines or readable console, one rotating file per component.

Log files go to ``settings.log_dir`` (default /var/log/coffee-scraper), or ./logs when that is not writable.
Secrets (tokens, passwords, DSNs) are masked before any line is written. When ``COFFEE_SCRAPER_SENTRY_DSN`` is
set, ``configure_logging`` also starts Sentry error reporting (once per process; see ``sentry.py``).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import sys
from pathlib import Path
from typing import Any

import structlog

from coffee_scraper.observability.redact import mask_url
from coffee_scraper.observability.sentry import init_sentry
from coffee_scraper.settings import Settings

COMPONENTS = ("app", "fetcher", "scheduler", "incidents")
_SECRET_KEYS = re.compile(r"(token|password|secret|dsn|authorization|api_key|cookie)", re.I)
_configured: dict[str, Path] = {}


def resolve_log_dir(configured: Path) -> Path:
    """The configured directory if we can write there, else ./logs."""
    for candidate in (configured, Path("logs")):
        try:
            candidate.mkdir(parents=True, exist_ok=True)
            if os.access(candidate, os.W_OK):
                return candidate.absolute()  # absolute: a later chdir must not make it a different directory
        except OSError:
            continue
    return Path("logs").absolute()


def mask_secrets(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    for key, value in list(event.items()):
        if _SECRET_KEYS.search(key) and value:
            event[key] = "***"
        elif isinstance(value, str) and "://" in value:
            event[key] = mask_url(value)
    return event


def configure_logging(settings: Settings, *, console_level: str = "WARNING", component: str = "app") -> Path:
    """Set up structlog (and Sentry, when configured) once per process; returns the log directory actually used."""
    init_sentry(settings, component)
    log_dir = resolve_log_dir(settings.log_dir)
    if _configured.get("dir") == log_dir:
        return log_dir
    json_lines = settings.log_format == "json" or (settings.log_format == "auto" and not sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        mask_secrets,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    file_formatter = structlog.stdlib.ProcessorFormatter(
        processor=structlog.processors.JSONRenderer(), foreign_pre_chain=shared
    )
    console_formatter = structlog.stdlib.ProcessorFormatter(
        processor=structlog.processors.JSONRenderer() if json_lines else structlog.dev.ConsoleRenderer(colors=False),
        foreign_pre_chain=shared,
    )
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(settings.log_level.upper())
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(console_level)
    console.setFormatter(console_formatter)
    root.addHandler(console)
    # app.log receives every line of ours; fetcher/scheduler/incidents also get a file of their own.
    for component in COMPONENTS:
        handler = logging.handlers.RotatingFileHandler(
            log_dir / f"{component}.log", maxBytes=20 * 1024 * 1024, backupCount=5, encoding="utf-8"
        )
        handler.setFormatter(file_formatter)
        name = "coffee_scraper" if component == "app" else f"coffee_scraper.{component}"
        logging.getLogger(name).handlers = [handler]
    logging.getLogger("httpx").setLevel(logging.WARNING)
    _configured["dir"] = log_dir
    return log_dir


def get_logger(component: str = "app", **context: Any) -> Any:
    """A bound logger for a component (app, fetcher, scheduler, incidents).

    Before ``configure_logging`` ran (library use, tests, benchmarks) lines go through stdlib logging with no
    handlers of ours — so nothing is printed below WARNING — instead of structlog's default print-to-stdout.
    """
    if not structlog.is_configured():
        structlog.configure(
            processors=[structlog.stdlib.filter_by_level, structlog.stdlib.render_to_log_kwargs],
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
        )
    return structlog.get_logger(f"coffee_scraper.{component}").bind(**context)
