"""The on-call roster: people, roles and optional weekly rotations, read from a TOML file (``oncall.toml``).

Lives here: parsing and validating the roster (errors name file, line and field), ``Roster.who(role, at)``,
``Roster.resolve(ref)`` for owners, and business-hours arithmetic used to hold P3 notifications.
Does not live here: who is notified for which severity or level (``incidents/escalation.py`` with
``alert_config``), delivery (``incidents/notify/``), the ``oncall show`` command (``incidents/oncall_cli.py``).

File format (see ``oncall.example.toml`` at the repository root)::

    timezone = "UTC"                      # default time zone of people without one

    [people.alice]
    name = "Alice Example"
    slack = "@alice"                      # or a Slack member id such as "U0123ABCD" (mentions then ping)
    email = "alice@example.com"
    phone = "+00 0000 000000"
    timezone = "Europe/Berlin"

    [roles]
    oncall_primary = "alice"
    engineering_manager = "bob"

    [rotations.oncall_primary]            # optional, only for oncall_primary / oncall_secondary
    people = ["alice", "bob"]
    handoff = "mon 09:00"                 # weekday and local time of the weekly hand-off
    timezone = "Europe/Berlin"
    start = 2026-01-05                    # the first hand-off on/after this date gives people[0]
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ROLES: tuple[str, ...] = (
    "oncall_primary",
    "oncall_secondary",
    "senior_engineer",
    "engineering_manager",
    "cto",
    "devops_lead",
    "db_admin",
)
ROLE_TITLES: dict[str, str] = {
    "oncall_primary": "Primary On-Call",
    "oncall_secondary": "Secondary On-Call",
    "senior_engineer": "Senior Engineer",
    "engineering_manager": "Engineering Manager",
    "cto": "CTO",
    "devops_lead": "DevOps Lead",
    "db_admin": "Database Admin",
}
ROTATING_ROLES = ("oncall_primary", "oncall_secondary")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
PERSON_FIELDS = ("name", "slack", "email", "phone", "timezone")
DEFAULT_ROTATION_START = date(2024, 1, 1)
_SLACK_ID = re.compile(r"^[UW][A-Z0-9]{6,}$")
_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


class RosterError(ValueError):
    """The roster file is wrong; the message names the file, line and field and says how to fix it."""


@dataclass(frozen=True)
class Person:
    key: str
    name: str
    slack: str | None = None
    email: str | None = None
    phone: str | None = None
    timezone: str = "UTC"

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def handle(self) -> str:
        """How the person is named in messages: the Slack handle, else ``@key`` (also for a Slack member id)."""
        if self.slack and not _SLACK_ID.match(self.slack):
            return self.slack if self.slack.startswith("@") else f"@{self.slack}"
        return f"@{self.key}"

    @property
    def slack_mention(self) -> str:
        """Slack mrkdwn that pings the person when the roster has a member id, else the plain handle."""
        if self.slack and _SLACK_ID.match(self.slack):
            return f"<@{self.slack}>"
        return self.handle

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "name": self.name,
            "slack": self.slack,
            "email": self.email,
            "phone": self.phone,
            "timezone": self.timezone,
        }


@dataclass(frozen=True)
class Rotation:
    role: str
    people: tuple[str, ...]
    weekday: int  # 0 = Monday
    at: time
    timezone: str
    start: date

    def anchor(self) -> datetime:
        """The first hand-off (local time) on or after ``start``: people[0] is on call from it."""
        tz = ZoneInfo(self.timezone)
        days = (self.weekday - self.start.weekday()) % 7
        return datetime.combine(self.start + timedelta(days=days), self.at, tzinfo=tz)

    def index_at(self, at: datetime) -> int:
        """Index into ``people`` of whoever is on call at ``at`` (wall-clock weeks, so DST-correct)."""
        tz = ZoneInfo(self.timezone)
        local = at.astimezone(tz)
        days_back = (local.weekday() - self.weekday) % 7
        handoff = datetime.combine(local.date() - timedelta(days=days_back), self.at, tzinfo=tz)
        if handoff > local:
            handoff -= timedelta(days=7)
        weeks = (handoff.date() - self.anchor().date()).days // 7
        return weeks % len(self.people)


@dataclass
class Roster:
    """People, fixed role assignments and rotations. An empty roster (no file) pages nobody."""

    people: dict[str, Person] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)
    rotations: dict[str, Rotation] = field(default_factory=dict)
    timezone: str = "UTC"
    source: str | None = None

    def who(self, role: str, at: datetime) -> Person | None:
        """The person holding ``role`` at ``at`` (rotation first, then the fixed assignment), or None."""
        if role not in ROLES:
            raise KeyError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        rotation = self.rotations.get(role)
        if rotation is not None:
            return self.people[rotation.people[rotation.index_at(at)]]
        key = self.roles.get(role)
        if key is None and role == "oncall_primary":
            return self.who("oncall_secondary", at) if "oncall_secondary" in self.assigned_roles() else None
        return self.people.get(key) if key else None

    def assigned_roles(self) -> set[str]:
        return set(self.roles) | set(self.rotations)

    def resolve(self, ref: str | None) -> Person | None:
        """A person from an owner reference: a roster key, ``@key``, or a Slack handle/id of someone listed."""
        if not ref:
            return None
        ref = ref.strip()
        bare = ref.lstrip("@")
        if bare in self.people:
            return self.people[bare]
        for person in self.people.values():
            if person.slack and person.slack.lstrip("@") == bare:
                return person
            if person.email and person.email.lower() == ref.lower():
                return person
        return None

    def tz_of(self, person: Person | None) -> ZoneInfo:
        return person.tz if person else ZoneInfo(self.timezone)

    def as_dict(self, at: datetime) -> dict[str, Any]:
        roles: dict[str, Any] = {}
        for role in ROLES:
            person = self.who(role, at)
            roles[role] = person.as_dict() if person else None
        return {
            "source": self.source,
            "at": at.isoformat(),
            "timezone": self.timezone,
            "roles": roles,
            "rotations": {
                r.role: {
                    "people": list(r.people),
                    "handoff": f"{WEEKDAYS[r.weekday]} {r.at:%H:%M}",
                    "timezone": r.timezone,
                    "start": r.start.isoformat(),
                }
                for r in self.rotations.values()
            },
            "people": [p.as_dict() for p in self.people.values()],
        }


# --- parsing -----------------------------------------------------------------------------------------------


def _line_of(text: str, section: str | None, key: str | None) -> int | None:
    """1-based line of ``key`` inside ``[section]`` (or of the section header when key is None)."""
    lines = text.splitlines()
    in_section = section is None
    header = re.compile(r"^\s*\[\s*" + re.escape(section or "") + r"\s*\]\s*(#.*)?$") if section else None
    for no, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped.startswith("["):
            in_section = bool(header and header.match(line))
            if in_section and key is None:
                return no
            continue
        if in_section and key is not None and re.match(r"^\s*" + re.escape(key) + r"\s*=", line):
            return no
    return None


class _Parser:
    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source

    def error(self, section: str | None, key: str | None, problem: str) -> RosterError:
        line = _line_of(self.text, section, key) or (_line_of(self.text, section, None) if section else None)
        where = f"{self.source}" + (f":{line}" if line else "")
        name = ".".join(p for p in (section, key) if p)
        return RosterError(f"{where}: {name or 'roster'}: {problem}")

    def zone(self, value: Any, section: str | None, key: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.error(section, key, f"time zone must be a name like 'Europe/Berlin', got {value!r}")
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise self.error(section, key, f"unknown time zone {value!r}; use an IANA name like 'UTC'") from exc
        return value

    def parse(self, data: dict[str, Any]) -> Roster:
        allowed = {"timezone", "people", "roles", "rotations"}
        for key in data:
            if key not in allowed:
                raise self.error(None, key, f"unknown top-level key; expected one of {', '.join(sorted(allowed))}")
        default_tz = self.zone(data.get("timezone", "UTC"), None, "timezone")
        people = self.people(data.get("people", {}), default_tz)
        roles = self.roles(data.get("roles", {}), people)
        rotations = self.rotations(data.get("rotations", {}), people)
        return Roster(people=people, roles=roles, rotations=rotations, timezone=default_tz, source=self.source)

    def people(self, raw: Any, default_tz: str) -> dict[str, Person]:
        if not isinstance(raw, dict):
            raise self.error(None, "people", "must be a table of [people.KEY] sections")
        people: dict[str, Person] = {}
        for key, entry in raw.items():
            section = f"people.{key}"
            if not isinstance(entry, dict):
                raise self.error(section, None, "must be a table with name, slack, email, phone, timezone")
            for f in entry:
                if f not in PERSON_FIELDS:
                    raise self.error(section, f, f"unknown field; expected one of {', '.join(PERSON_FIELDS)}")
            for f in PERSON_FIELDS:
                if f in entry and not isinstance(entry[f], str):
                    raise self.error(section, f, f"must be a string, got {entry[f]!r}")
            name = entry.get("name")
            if not name:
                raise self.error(section, "name", "missing: every person needs a name")
            email = entry.get("email")
            if email is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+", email):
                raise self.error(section, "email", f"{email!r} is not an e-mail address")
            slack = entry.get("slack")
            if slack is not None and not re.fullmatch(r"@?[\w.\-]+", slack):
                raise self.error(section, "slack", f"{slack!r} is not a Slack handle (@name) or member id (U0123ABCD)")
            tz = self.zone(entry["timezone"], section, "timezone") if "timezone" in entry else default_tz
            people[key] = Person(key=key, name=name, slack=slack, email=email, phone=entry.get("phone"), timezone=tz)
        return people

    def roles(self, raw: Any, people: dict[str, Person]) -> dict[str, str]:
        if not isinstance(raw, dict):
            raise self.error(None, "roles", 'must be a [roles] table of role = "person key"')
        roles: dict[str, str] = {}
        for role, key in raw.items():
            if role not in ROLES:
                raise self.error("roles", role, f"unknown role; roles are {', '.join(ROLES)}")
            if not isinstance(key, str) or key not in people:
                known = ", ".join(sorted(people)) or "none defined"
                raise self.error("roles", role, f"{key!r} is not a person in [people] (known: {known})")
            roles[role] = key
        return roles

    def rotations(self, raw: Any, people: dict[str, Person]) -> dict[str, Rotation]:
        if not isinstance(raw, dict):
            raise self.error(None, "rotations", "must be a table of [rotations.ROLE] sections")
        rotations: dict[str, Rotation] = {}
        for role, entry in raw.items():
            section = f"rotations.{role}"
            if role not in ROTATING_ROLES:
                raise self.error(section, None, f"only {', '.join(ROTATING_ROLES)} can rotate")
            if not isinstance(entry, dict):
                raise self.error(section, None, "must be a table with people, handoff, timezone, start")
            for f in entry:
                if f not in {"people", "handoff", "timezone", "start"}:
                    raise self.error(section, f, "unknown field; expected people, handoff, timezone, start")
            members = entry.get("people")
            if not isinstance(members, list) or not members or not all(isinstance(m, str) for m in members):
                raise self.error(section, "people", "must be a non-empty list of person keys")
            for m in members:
                if m not in people:
                    raise self.error(section, "people", f"{m!r} is not a person in [people]")
            handoff = entry.get("handoff", "mon 09:00")
            parts = handoff.split() if isinstance(handoff, str) else []
            if len(parts) != 2 or parts[0].lower()[:3] not in WEEKDAYS or not _HHMM.match(parts[1]):
                raise self.error(section, "handoff", f"{handoff!r} must look like 'mon 09:00' (weekday and HH:MM)")
            hh, mm = (int(x) for x in parts[1].split(":"))
            tz = self.zone(entry.get("timezone", "UTC"), section, "timezone")
            start = entry.get("start", DEFAULT_ROTATION_START)
            if isinstance(start, datetime):
                start = start.date()
            if not isinstance(start, date):
                raise self.error(section, "start", f"must be a TOML date like 2026-01-05, got {start!r}")
            rotations[role] = Rotation(
                role, tuple(members), WEEKDAYS.index(parts[0].lower()[:3]), time(hh, mm), tz, start
            )
        return rotations


def parse_roster(text: str, source: str = "oncall.toml") -> Roster:
    """A roster from TOML text; ``RosterError`` names ``source``, the line and the field on any problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RosterError(f"{source}: not valid TOML: {exc}") from exc
    return _Parser(text, source).parse(data)


def load_roster(path: Path) -> Roster:
    """The roster in ``path``; a missing file is an empty roster (nobody is paged; channels still get messages)."""
    if not path.exists():
        return Roster(source=None)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RosterError(f"{path}: cannot read the on-call roster: {exc}") from exc
    return parse_roster(text, str(path))


# --- business hours ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BusinessHours:
    start: time
    end: time
    days: frozenset[int]  # 0 = Monday

    @classmethod
    def parse(cls, hours: str, days: str) -> BusinessHours:
        """From settings strings like ``"09:00-17:00"`` and ``"mon,tue,wed,thu,fri"``."""
        m = re.fullmatch(r"\s*(\d{1,2}:\d{2})\s*-\s*(\d{1,2}:\d{2})\s*", hours)
        if not m or not _HHMM.match(m.group(1)) or not _HHMM.match(m.group(2)):
            raise ValueError(f"COFFEE_SCRAPER_BUSINESS_HOURS={hours!r} must look like 09:00-17:00")
        start, end = (time(int(g.split(":")[0]), int(g.split(":")[1])) for g in m.groups())
        if end <= start:
            raise ValueError(f"COFFEE_SCRAPER_BUSINESS_HOURS={hours!r}: the end must be after the start")
        day_set = set()
        for d in days.split(","):
            d = d.strip().lower()[:3]
            if d not in WEEKDAYS:
                raise ValueError(f"COFFEE_SCRAPER_BUSINESS_DAYS={days!r}: {d!r} is not one of {', '.join(WEEKDAYS)}")
            day_set.add(WEEKDAYS.index(d))
        if not day_set:
            raise ValueError("COFFEE_SCRAPER_BUSINESS_DAYS is empty; name at least one day (mon..sun)")
        return cls(start, end, frozenset(day_set))

    def next_open(self, at: datetime, tz: ZoneInfo) -> datetime:
        """``at`` itself when inside business hours in ``tz``, else the next opening time (as UTC)."""
        local = at.astimezone(tz)
        for offset in range(8):
            day = local.date() + timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            opens = datetime.combine(day, self.start, tzinfo=tz)
            closes = datetime.combine(day, self.end, tzinfo=tz)
            if offset == 0 and opens <= local < closes:
                return at.astimezone(UTC)
            if local < opens:
                return opens.astimezone(UTC)
        raise AssertionError("unreachable: at least one business day per week")
