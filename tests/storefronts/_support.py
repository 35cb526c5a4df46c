"""Helpers for storefront tests: fast polite settings, a fake clock, a dict-backed conditional cache.

The HTTP test server lives in _server.py; fixtures in conftest.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from coffee_scraper.settings import Settings
from coffee_scraper.storefronts.types import CachedResponse


def fast_settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = dict(
        allow_private_addresses=True,
        request_delay_s=0.05,
        request_jitter_s=0,
        backoff_base_s=0.01,
        backoff_cap_s=0.05,
        max_attempts=3,
        connect_timeout_s=2.0,
        read_timeout_s=2.0,
        request_deadline_s=5.0,
        breaker_failure_threshold=5,
    )
    base.update(overrides)
    return Settings(**base)


class FakeClock:
    """Monotonic seconds and a wall clock that only move when slept on or advanced."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.epoch = datetime(2026, 6, 1, tzinfo=UTC)

    def monotonic(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)

    def now(self) -> datetime:
        return self.epoch + timedelta(seconds=self.t)

    def advance(self, seconds: float) -> None:
        self.t += seconds


class DictCache:
    def __init__(self) -> None:
        self.entries: dict[str, CachedResponse] = {}

    def lookup(self, url: str) -> CachedResponse | None:
        return self.entries.get(url)
