"""Cadences: validating a roaster's cron expressions and computing its next run times (pure, with croniter).

Lives here: ``validate_cron``, ``next_after``, ``effective_cadences``. Not here: storing due times or claiming
them (``jobs/service.py``) and running anything (``jobs/execute.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

Mode = Literal["full", "price"]
MODES: tuple[Mode, ...] = ("price", "full")  # price first: when both are due, the cheap fresh prices go first


class CadenceError(ValueError):
    """A cron expression or time zone cannot be used; the message says how to write a valid one."""


def validate_cron(expression: str, *, what: str = "cadence") -> str:
    """The expression, stripped, when croniter accepts it; else a CadenceError that shows valid examples.

    Five fields (minute hour day-of-month month day-of-week, e.g. ``0 4 * * 0``) or croniter's six-field form
    whose last field is seconds (``*/5 * * * * */10``, meant for tests), or an alias such as ``@daily``.
    """
    text = " ".join(expression.split())
    if not text or not croniter.is_valid(text):
        raise CadenceError(
            f"{what} {expression!r} is not a valid cron expression; use five fields "
            "'minute hour day-of-month month day-of-week', e.g. '0 4 * * 0' (Sundays 04:00) "
            "or '0 3 1 * *' (the 1st of each month, 03:00)"
        )
    return text


def timezone(name: str) -> ZoneInfo:
    """The IANA time zone cron expressions are read in (``UTC``, ``Asia/Kolkata``)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise CadenceError(
            f"unknown time zone {name!r} for COFFEE_SCRAPER_CADENCE_TIMEZONE; use an IANA name such as "
            "'UTC' or 'Asia/Kolkata'"
        ) from exc


def next_after(expression: str, after: datetime, tz: str = "UTC") -> datetime:
    """The first time strictly after ``after`` that ``expression`` matches, read in ``tz``; returned in UTC."""
    if after.tzinfo is None:
        raise ValueError("next_after needs a timezone-aware datetime")
    start = after.astimezone(timezone(tz))
    nxt = croniter(validate_cron(expression), start).get_next(datetime)
    return nxt.astimezone(UTC)


@dataclass(frozen=True)
class Cadences:
    """The cron expressions in effect for one roaster, and whether each is the settings default."""

    full: str
    price: str
    full_is_default: bool
    price_is_default: bool

    def of(self, mode: str) -> str:
        return self.full if mode == "full" else self.price


def effective_cadences(
    full_override: str | None, price_override: str | None, *, full_default: str, price_default: str
) -> Cadences:
    """A roaster's cadences: its own override when set, else the settings default."""
    return Cadences(
        full=full_override or full_default,
        price=price_override or price_default,
        full_is_default=not full_override,
        price_is_default=not price_override,
    )
