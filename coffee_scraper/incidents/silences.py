"""Silences (label matchers + start/end + author + comment) and maintenance windows (components + time range).

Lives here: matcher parsing and matching (Alertmanager semantics: a missing label is the empty string, regexes
are anchored, a silence needs at least one matcher that does not match the empty string), creating, expiring
and listing silences and windows, and ``Mutes`` — the check ingestion applies to a firing alert: a match means
the alert is stored with ``silenced_by`` ("silence:ID" / "maintenance:ID") and opens no incident.
Does not live here: ingestion itself (``incidents/flows.py``). Resolves are never muted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from coffee_scraper.incidents.errors import IncidentError, NotFound
from coffee_scraper.incidents.models import MaintenanceWindow, Silence

MATCHER_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")


@dataclass(frozen=True)
class Matcher:
    """``name`` compared with ``value`` (equal or regex, anchored); ``is_equal=False`` negates."""

    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True
    _re: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.is_regex:
            try:
                object.__setattr__(self, "_re", re.compile(self.value))
            except re.error as exc:
                raise IncidentError(f"matcher {self.text()}: invalid regular expression ({exc})") from exc

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        hit = self._re.fullmatch(actual) is not None if self._re is not None else actual == self.value
        return hit if self.is_equal else not hit

    def text(self) -> str:
        op = {(False, True): "=", (False, False): "!=", (True, True): "=~", (True, False): "!~"}
        return f"{self.name}{op[(self.is_regex, self.is_equal)]}{self.value}"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "is_regex": self.is_regex, "is_equal": self.is_equal}


def parse_matcher(text: str) -> Matcher:
    """``alertname=DiskUsageWarning``, ``component!=db``, ``instance=~"web-.*"``, ``severity!~P[01]``."""
    match = MATCHER_RE.match(text)
    if not match:
        raise IncidentError(
            f"matcher {text!r} is not NAME=VALUE, NAME!=VALUE, NAME=~REGEX or NAME!~REGEX (e.g. alertname=DiskFull)"
        )
    name, op, value = match.groups()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    return Matcher(name, value, is_regex=op in ("=~", "!~"), is_equal=op in ("=", "=~"))


def matchers_from_dicts(items: Sequence[Mapping[str, Any]]) -> list[Matcher]:
    matchers = [
        Matcher(
            str(item["name"]),
            str(item["value"]),
            is_regex=bool(item.get("is_regex", False)),
            is_equal=bool(item.get("is_equal", True)),
        )
        for item in items
    ]
    check_matchers(matchers)
    return matchers


def check_matchers(matchers: Sequence[Matcher]) -> None:
    if not matchers:
        raise IncidentError("a silence needs at least one matcher, e.g. alertname=DiskUsageWarning")
    for m in matchers:
        if not m.name:
            raise IncidentError(f"matcher {m.text()!r} has no label name")
    if all(m.matches({}) for m in matchers):
        raise IncidentError(
            "these matchers also match alerts without those labels (everything); add one that needs a value, "
            "e.g. alertname=NAME"
        )


def state(starts_at: datetime, ends_at: datetime, now: datetime) -> str:
    if now < starts_at:
        return "pending"
    return "active" if now < ends_at else "expired"


def _check_times(starts_at: datetime, ends_at: datetime, now: datetime) -> None:
    if ends_at <= starts_at:
        raise IncidentError("the end must be after the start")
    if ends_at <= now:
        raise IncidentError("the end is in the past; give a duration or an end in the future")


def add_silence(
    session: Session,
    matchers: Sequence[Matcher],
    *,
    starts_at: datetime,
    ends_at: datetime,
    created_by: str,
    comment: str,
    now: datetime,
) -> Silence:
    check_matchers(matchers)
    _check_times(starts_at, ends_at, now)
    if not comment.strip():
        raise IncidentError("a silence needs a comment saying why (e.g. --comment 'disk replaced, INC-...')")
    if not created_by.strip() or len(created_by.strip()) > 200:
        raise IncidentError("a silence needs an author (created_by, up to 200 characters)")
    silence = Silence(
        matchers=[m.as_dict() for m in matchers],
        starts_at=starts_at,
        ends_at=ends_at,
        created_by=created_by.strip(),
        comment=comment.strip(),
        created_at=now,
    )
    session.add(silence)
    session.flush()
    return silence


def expire_silence(session: Session, silence_id: int, *, now: datetime) -> Silence:
    silence = session.get(Silence, silence_id)
    if silence is None:
        raise NotFound(f"no silence {silence_id}; `coffee-scraper incidents silence list` shows them")
    if silence.ends_at > now:
        silence.ends_at = now
        silence.starts_at = min(silence.starts_at, now)
    return silence


def list_silences(session: Session, *, now: datetime, include_expired: bool = False) -> list[Silence]:
    query = select(Silence).order_by(Silence.ends_at.desc(), Silence.id.desc())
    if not include_expired:
        query = query.where(Silence.ends_at > now)
    return list(session.scalars(query))


def add_maintenance(
    session: Session,
    *,
    starts_at: datetime,
    ends_at: datetime,
    components: Sequence[str],
    comment: str,
    created_by: str,
    now: datetime,
) -> MaintenanceWindow:
    _check_times(starts_at, ends_at, now)
    if not comment.strip():
        raise IncidentError("a maintenance window needs a comment saying what is being done")
    if not created_by.strip() or len(created_by.strip()) > 200:
        raise IncidentError("a maintenance window needs an author (created_by, up to 200 characters)")
    window = MaintenanceWindow(
        starts_at=starts_at,
        ends_at=ends_at,
        components=sorted({c.strip() for c in components if c.strip()}),
        comment=comment.strip(),
        created_by=created_by.strip(),
    )
    session.add(window)
    session.flush()
    return window


def end_maintenance(session: Session, window_id: int, *, now: datetime) -> MaintenanceWindow:
    window = session.get(MaintenanceWindow, window_id)
    if window is None:
        raise NotFound(f"no maintenance window {window_id}; `coffee-scraper incidents maintenance list` shows them")
    if window.ends_at > now:
        window.ends_at = now
        window.starts_at = min(window.starts_at, now)
    return window


def list_maintenance(session: Session, *, now: datetime, include_past: bool = False) -> list[MaintenanceWindow]:
    query = select(MaintenanceWindow).order_by(MaintenanceWindow.starts_at.desc(), MaintenanceWindow.id.desc())
    if not include_past:
        query = query.where(MaintenanceWindow.ends_at > now)
    return list(session.scalars(query))


class Mutes:
    """The silences and maintenance windows active at ``now``, loaded once (lazily) per ingestion."""

    def __init__(self, session: Session, now: datetime) -> None:
        self._session = session
        self._now = now
        self._silences: list[tuple[int, list[Matcher]]] | None = None
        self._windows: list[tuple[int, frozenset[str]]] | None = None

    def _load(self) -> None:
        now = self._now
        rows = self._session.scalars(select(Silence).where(Silence.starts_at <= now, Silence.ends_at > now))
        self._silences = []
        for s in rows:
            try:
                self._silences.append((s.id, matchers_from_dicts(s.matchers)))
            except (IncidentError, KeyError, TypeError):
                continue  # a hand-edited, broken silence mutes nothing
        windows = self._session.scalars(
            select(MaintenanceWindow).where(MaintenanceWindow.starts_at <= now, MaintenanceWindow.ends_at > now)
        )
        self._windows = [(w.id, frozenset(w.components or [])) for w in windows]

    def muted_by(self, labels: Mapping[str, str], component: str | None) -> str | None:
        """``"silence:ID"`` or ``"maintenance:ID"`` when a firing alert with these labels is muted, else None."""
        if self._silences is None or self._windows is None:
            self._load()
        assert self._silences is not None and self._windows is not None
        for silence_id, matchers in self._silences:
            if all(m.matches(labels) for m in matchers):
                return f"silence:{silence_id}"
        for window_id, components in self._windows:
            if not components or (component is not None and component in components):
                return f"maintenance:{window_id}"
        return None
