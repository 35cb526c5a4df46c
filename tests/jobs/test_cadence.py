"""Cadences: cron validation and next run times (pure functions, croniter)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from coffee_scraper.jobs.cadence import CadenceError, effective_cadences, next_after, validate_cron
from coffee_scraper.settings import Settings


def test_defaults_are_monthly_full_and_weekly_price_runs() -> None:
    s = Settings()
    assert (s.full_cadence, s.price_cadence) == ("0 3 1 * *", "0 4 * * 0")
    t = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)  # a Wednesday
    assert next_after(s.full_cadence, t) == datetime(2026, 4, 1, 3, 0, tzinfo=UTC)
    assert next_after(s.price_cadence, t) == datetime(2026, 3, 8, 4, 0, tzinfo=UTC)  # Sunday 04:00


def test_next_after_is_strictly_after_and_in_utc() -> None:
    t = datetime(2026, 3, 8, 4, 0, tzinfo=UTC)
    assert next_after("0 4 * * 0", t) == t + timedelta(days=7)
    kolkata = next_after("0 3 * * *", datetime(2026, 1, 15, tzinfo=UTC), "Asia/Kolkata")
    assert kolkata == datetime(2026, 1, 15, 21, 30, tzinfo=UTC) and kolkata.tzinfo == UTC


def test_seconds_field_for_short_test_cadences() -> None:
    t = datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert next_after("* * * * * */2", t) == datetime(2026, 1, 1, 0, 0, 2, tzinfo=UTC)


@pytest.mark.parametrize("bad", ["", "every sunday", "61 * * * *", "0 4 * * 8", "* * *"])
def test_invalid_cron_is_refused_with_examples(bad: str) -> None:
    with pytest.raises(CadenceError) as info:
        validate_cron(bad, what="--price-cadence")
    assert "--price-cadence" in str(info.value) and "0 4 * * 0" in str(info.value)


def test_validate_normalizes_whitespace() -> None:
    assert validate_cron("  0  4 * *   0 ") == "0 4 * * 0"


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError):
        next_after("0 4 * * 0", datetime(2026, 1, 1))


def test_unknown_timezone_is_refused() -> None:
    with pytest.raises(CadenceError, match="Asia/Kolkata"):
        next_after("0 4 * * 0", datetime(2026, 1, 1, tzinfo=UTC), "Mars/Olympus")


def test_overrides_win_over_defaults() -> None:
    c = effective_cadences("0 2 * * *", None, full_default="0 3 1 * *", price_default="0 4 * * 0")
    assert (c.full, c.price, c.full_is_default, c.price_is_default) == ("0 2 * * *", "0 4 * * 0", False, True)
    assert c.of("full") == "0 2 * * *" and c.of("price") == "0 4 * * 0"
