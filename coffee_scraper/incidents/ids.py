"""Incident IDs ``INC-YYYYMMDD-###``: the UTC day of opening and a per-day sequence (001..999, then 1000+).

Lives here: the atomic counter bump on ``incident_day_counters`` (one ``INSERT ... ON CONFLICT DO UPDATE ...
RETURNING`` statement, so two processes on PostgreSQL never get the same number: the second waits for the
first one's row lock and sees its increment) and parsing of IDs.
Does not live here: creating the incident row (``incidents/flows.py``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import cast

from sqlalchemy import Insert, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from coffee_scraper.incidents.models import IncidentDayCounter

ID_RE = re.compile(r"^INC-(\d{8})-(\d{3,})$")


def format_id(day: str, seq: int) -> str:
    return f"INC-{day}-{seq:03d}"


def day_of(now: datetime) -> str:
    if now.tzinfo is None:
        raise ValueError("naive datetime given; incident IDs use the UTC day")
    return now.astimezone(UTC).strftime("%Y%m%d")


def is_incident_id(text: str) -> bool:
    return ID_RE.match(text) is not None


def next_id(session: Session, now: datetime) -> str:
    """Reserve the next ID of ``now``'s UTC day inside the session's transaction (rolled back with it)."""
    day = day_of(now)
    table = cast(Table, IncidentDayCounter.__table__)
    dialect = session.get_bind().dialect.name
    stmt: Insert
    if dialect == "postgresql":
        pg = postgresql.insert(table).values(day=day, last_seq=1)
        stmt = pg.on_conflict_do_update(index_elements=["day"], set_={"last_seq": table.c.last_seq + 1})
    elif dialect == "sqlite":
        lite = sqlite.insert(table).values(day=day, last_seq=1)
        stmt = lite.on_conflict_do_update(index_elements=["day"], set_={"last_seq": table.c.last_seq + 1})
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported (catalog/db.py refuses others)
        raise RuntimeError(f"unsupported database {dialect}")
    seq = session.execute(stmt.returning(table.c.last_seq)).scalar_one()
    return format_id(day, int(seq))
