"""What notification code needs to know at run time: settings, the on-call roster, business hours, links.

Lives here: ``NotifyConfig`` and the process-wide current one (``configure`` sets it: the runner, the web app and
tests do; ``current()`` otherwise builds it from ``get_settings()`` and re-reads the roster file when it changes).
``react`` is called with a fixed signature from the timeline writer, so it reads its configuration from here.
Does not live here: the settings themselves (``settings.py``), roster parsing (``incidents/oncall.py``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from coffee_scraper.incidents.alert_config import AlertConfig, load_alert_config
from coffee_scraper.incidents.oncall import BusinessHours, Roster, RosterError, load_roster
from coffee_scraper.incidents.templates import LinkConfig
from coffee_scraper.observability.logging import get_logger
from coffee_scraper.settings import Settings, get_settings

log = get_logger("notify")


@dataclass
class NotifyConfig:
    settings: Settings
    roster: Roster
    business_hours: BusinessHours
    links: LinkConfig
    alert_config: AlertConfig = field(default_factory=load_alert_config)
    roster_error: str | None = None  # the roster file is broken: nobody is paged until it is fixed
    roster_mtime: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings, roster: Roster | None = None) -> NotifyConfig:
        error = None
        mtime = None
        if roster is None:
            mtime = _mtime(settings.oncall_file)
            try:
                roster = load_roster(settings.oncall_file)
            except RosterError as exc:
                error = str(exc)
                log.error("oncall_roster_invalid", error=error)
                roster = Roster()
        return cls(
            settings=settings,
            roster=roster,
            business_hours=BusinessHours.parse(settings.business_hours, settings.business_days),
            links=LinkConfig(
                settings.dashboard_url, settings.grafana_url, settings.prometheus_url, settings.sentry_url
            ),
            roster_error=error,
            roster_mtime=mtime,
        )

    @property
    def business_tz(self) -> ZoneInfo:
        return ZoneInfo(self.settings.business_timezone)

    def channels(self) -> dict[str, bool]:
        """Which channels are on (configured) — a channel without configuration is simply off."""
        s = self.settings
        return {
            "slack": s.slack_webhook_url is not None and bool(s.slack_webhook_url.get_secret_value()),
            "github": bool(s.github_repo) and s.github_token is not None,
            "email": bool(s.smtp_host),
            "webhook": bool(s.webhook_url),
        }

    def channel_notes(self) -> dict[str, str]:
        """Per channel: where messages go, or what to set to turn it on."""
        s = self.settings
        on = self.channels()
        return {
            "slack": f"incoming webhook, channel {s.slack_channel}"
            if on["slack"]
            else "off: set COFFEE_SCRAPER_SLACK_WEBHOOK_URL",
            "github": f"issues in {s.github_repo} via {s.github_api_url}"
            if on["github"]
            else "off: set COFFEE_SCRAPER_GITHUB_REPO and COFFEE_SCRAPER_GITHUB_TOKEN",
            "email": f"SMTP {s.smtp_host}:{s.smtp_port} from {s.smtp_from}"
            if on["email"]
            else "off: set COFFEE_SCRAPER_SMTP_HOST",
            "webhook": f"POST {s.webhook_url}" + (f" (template {s.webhook_template})" if s.webhook_template else "")
            if on["webhook"]
            else "off: set COFFEE_SCRAPER_WEBHOOK_URL",
        }


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


_lock = threading.Lock()
_current: NotifyConfig | None = None
_explicit = False


def configure(settings: Settings, roster: Roster | None = None) -> NotifyConfig:
    """Make ``settings`` (and ``roster``, else the roster file) the configuration ``react`` and the runner use."""
    global _current, _explicit
    cfg = NotifyConfig.from_settings(settings, roster)
    with _lock:
        _current = cfg
        _explicit = roster is not None
    return cfg


def reset() -> None:
    """Forget the configuration (tests); the next ``current()`` builds it from the environment again."""
    global _current, _explicit
    with _lock:
        _current = None
        _explicit = False


def current() -> NotifyConfig:
    """The configuration in force; the roster file is re-read when its modification time changed."""
    global _current
    with _lock:
        cfg = _current
    if cfg is None:
        return configure(get_settings())
    if not _explicit and _mtime(cfg.settings.oncall_file) != cfg.roster_mtime:
        fresh = NotifyConfig.from_settings(cfg.settings)
        with _lock:
            _current = fresh
        return fresh
    return cfg
