"""What the incident pages show or do that the incidents API (``incidents/views.py``, ``ops_views.py``) does not:
the incident store's session factory and write transaction, response-time clocks, notifications per incident, chart
data (incidents per week by severity, MTTA/MTTR per week, fetch error rate per day), the overview's open-incidents
panel, creating the post-incident checklists on demand, and their ``/api/v1`` routes (``GET /api/v1/insights``,
``GET /api/v1/incidents/{id}/notifications``, ``POST /api/v1/incidents/{id}/checklist``).

Lives here: queries the incidents core lacks and their JSON shapes. Does not live here: lifecycle changes
(``incidents/flows.py``) and follow-up rules (``incidents/followup.py``), which the routes call; the pages
themselves (``web/pages/incidents.py``); chart geometry (``web/pages/charts.py``).
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, Field
from sqlalchemy import Date, Engine, cast, func, select
from sqlalchemy.orm import Session, sessionmaker

from coffee_scraper.catalog import db
from coffee_scraper.catalog.models import ScrapeRun
from coffee_scraper.incidents import flows, followup, service, store
from coffee_scraper.incidents.ids import is_incident_id
from coffee_scraper.incidents.models import OPEN_STATUSES, SEVERITIES, Incident
from coffee_scraper.incidents.notify.models import CHANNELS, NotificationOutbox
from coffee_scraper.observability.redact import mask_url
from coffee_scraper.settings import Settings
from coffee_scraper.storefronts.types import FetchError
from coffee_scraper.web.security import ApiOperator, ApiViewer, Context, WebContext

router = APIRouter(tags=["insights"])
T = TypeVar("T")
MAX_WEEKS = 104
MAX_DAYS = 366
PANEL_ROWS = 8  # open incidents listed on the overview panel

# --- the incident store ----------------------------------------------------------------------------------------

_lock = threading.Lock()
_factories: dict[str, sessionmaker[Session]] = {}  # incidents_database_url -> factory (engines live with the process)
_by_catalog_engine: weakref.WeakKeyDictionary[Engine, sessionmaker[Session]] = weakref.WeakKeyDictionary()


def incident_factory(ctx: WebContext) -> sessionmaker[Session]:
    """Sessions on the incident store (``incidents/store.py``): ``incidents_database_url`` when set (and
    different), else the catalog's."""
    if not store.is_separate(ctx.settings):
        return ctx.factory
    url = store.incidents_url(ctx.settings)
    with _lock:
        factory = _factories.get(url)
        if factory is None:
            factory = _factories[url] = store.incident_factory(ctx.settings)
        catalog_engine = ctx.factory.kw.get("bind")
        if isinstance(catalog_engine, Engine):
            _by_catalog_engine[catalog_engine] = factory
        return factory


def write_incidents(ctx: WebContext, fn: Callable[[Session], T]) -> T:
    """One write transaction on the incident store, as ``incidents/views.py`` does it (SQLite writers of this
    process serialised by ``flows.write_lock``, the open-incidents gauge refreshed)."""
    factory = incident_factory(ctx)
    engine = factory.kw.get("bind")
    lock = flows.write_lock(engine) if isinstance(engine, Engine) else contextlib.nullcontext()
    with lock, db.session_scope(factory) as session:
        result = fn(session)
        session.flush()
        service.refresh_open_gauge(session)
        return result


def factory_beside(catalog_session: Session) -> sessionmaker[Session] | None:
    """The incident store registered for the catalog database of ``catalog_session`` (None: the same database)."""
    bind = catalog_session.get_bind()
    engine = bind if isinstance(bind, Engine) else getattr(bind, "engine", None)
    with _lock:
        return _by_catalog_engine.get(engine) if isinstance(engine, Engine) else None


# --- response clocks -------------------------------------------------------------------------------------------


def span(seconds: float) -> str:
    """``42 s``, ``7 min``, ``3 h 20 min``, ``2 days`` (no sign)."""
    seconds = abs(seconds)
    if seconds < 60:
        return f"{int(seconds)} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 86400 * 2:
        hours, minutes = divmod(int(seconds // 60), 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{seconds / 86400:.0f} days"


@dataclass(frozen=True)
class ResponseClock:
    """Where an incident stands against its severity's response target.

    ``state``: ``due`` (open, unacknowledged, deadline ahead: ``seconds`` left), ``overdue`` (open, unacknowledged,
    deadline passed: ``seconds`` over), ``met`` / ``missed`` (acknowledged in time or late), ``unanswered``
    (resolved without an acknowledgement).
    """

    state: Literal["due", "overdue", "met", "missed", "unanswered"]
    seconds: float
    text: str

    @property
    def amount(self) -> str:
        """The time in words, e.g. ``12 min``."""
        return span(self.seconds)

    @property
    def breached(self) -> bool:
        return self.state in ("overdue", "missed") or (self.state == "unanswered" and self.seconds > 0)


def response_clock(incident: Incident, now: datetime) -> ResponseClock:
    """The response-time countdown (``response_due_at − now``) or how the response went."""
    due = incident.response_due_at
    if incident.acknowledged_at is not None:
        took = (incident.acknowledged_at - incident.opened_at).total_seconds()
        late = incident.response_breached_at is not None or incident.acknowledged_at > due
        return ResponseClock("missed" if late else "met", took, f"acknowledged after {span(took)}")
    if not incident.is_open:
        over = (incident.resolved_at or now) - due
        breached = incident.response_breached_at is not None or over.total_seconds() > 0
        return ResponseClock("unanswered", over.total_seconds() if breached else 0.0, "resolved unacknowledged")
    left = (due - now).total_seconds()
    if left > 0:
        return ResponseClock("due", left, f"response due in {span(left)}")
    return ResponseClock("overdue", -left, f"response overdue by {span(left)}")


# --- notifications -----------------------------------------------------------------------------------------------


def display_target(channel: str, target: str) -> str:
    """What a viewer may see of a target: a webhook URL only as its origin (its path may carry a secret)."""
    if channel == "webhook":
        try:
            parts = urlsplit(target)
            return f"{parts.scheme}://{parts.hostname or '?'}{f':{parts.port}' if parts.port else ''}/…"
        except ValueError:
            return "(webhook URL)"
    return mask_url(target)


class NotificationOut(BaseModel):
    id: int
    channel: str
    target: str = Field(description="Slack channel, repository, address; a webhook only as its origin.")
    kind: str = Field(description="The timeline event kind that caused it (opened, status_update, resolved, ...).")
    status: Literal["pending", "sending", "sent", "failed", "dead"] = Field(
        description="sent = delivered; failed = retrying at next_attempt_at; dead = given up."
    )
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    next_attempt_at: datetime
    last_error: str | None
    external_ref: str | None = Field(description="Issue URL, Message-ID, ... of the delivered message.")


class ChannelSummaryOut(BaseModel):
    channel: str
    delivered: int
    failed: int = Field(description="Failed at least once and will be retried.")
    dead: int = Field(description="Given up (too many attempts, too old, or a permanent error).")
    pending: int = Field(description="Waiting for delivery (or being sent).")


class IncidentNotificationsOut(BaseModel):
    incident_id: str
    channels: list[ChannelSummaryOut]
    notifications: list[NotificationOut]


def notifications_for(session: Session, incident_id: str) -> IncidentNotificationsOut:
    """Every outbox message of the incident (oldest first) and the delivered/failed/pending counts per channel."""
    o = NotificationOutbox
    rows = session.execute(
        select(o.id, o.channel, o.target, o.kind, o.status, o.attempts, o.created_at, o.sent_at, o.next_attempt_at,
               o.last_error, o.external_ref)
        .where(o.incident_id == incident_id)
        .order_by(o.id)
    ).all()  # fmt: skip
    items = [
        NotificationOut(
            id=r.id, channel=r.channel, target=display_target(r.channel, r.target), kind=r.kind, status=r.status,
            attempts=r.attempts, created_at=r.created_at, sent_at=r.sent_at, next_attempt_at=r.next_attempt_at,
            last_error=mask_url(r.last_error) if r.last_error else None, external_ref=r.external_ref,
        )
        for r in rows
    ]  # fmt: skip
    by_channel: dict[str, Counter[str]] = {}
    for item in items:
        by_channel.setdefault(item.channel, Counter())[item.status] += 1
    order = {c: i for i, c in enumerate(CHANNELS)}
    channels = [
        ChannelSummaryOut(
            channel=channel,
            delivered=counts["sent"],
            failed=counts["failed"],
            dead=counts["dead"],
            pending=counts["pending"] + counts["sending"],
        )
        for channel, counts in sorted(by_channel.items(), key=lambda kv: (order.get(kv[0], 99), kv[0]))
    ]
    return IncidentNotificationsOut(incident_id=incident_id, channels=channels, notifications=items)


# --- chart data ----------------------------------------------------------------------------------------------------


def week_start(value: datetime | date) -> date:
    """The Monday (UTC) of the week ``value`` falls in."""
    day = value.astimezone(UTC).date() if isinstance(value, datetime) else value
    return day - timedelta(days=day.weekday())


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def _weeks(now: datetime, weeks: int) -> list[date]:
    last = week_start(now)
    return [last - timedelta(weeks=weeks - 1 - i) for i in range(weeks)]


class WeekSeverityOut(BaseModel):
    week_start: date = Field(description="Monday of the week (UTC).")
    counts: dict[str, int] = Field(description="Incidents opened that week per severity (P0..P3).")


class WeekResponseOut(BaseModel):
    week_start: date
    incidents: int = Field(description="Incidents opened that week.")
    acknowledged: int
    resolved: int
    mtta_mean_s: float | None = Field(description="Mean of acknowledged_at − opened_at (seconds).")
    mtta_median_s: float | None
    mttr_mean_s: float | None = Field(description="Mean of resolved_at − opened_at (seconds).")
    mttr_median_s: float | None


class DayFetchOut(BaseModel):
    day: date
    runs: int = Field(description="Runs that started that day and finished.")
    fetch_errors: int = Field(description="Of those, runs that ended on a fetch error (shop unreachable, HTTP errors).")
    rate: float | None = Field(description="fetch_errors / runs (None: no runs).")


class InsightsOut(BaseModel):
    generated_at: datetime
    weeks: int
    days: int
    include_drills: bool
    incidents_per_week: list[WeekSeverityOut]
    response_times_per_week: list[WeekResponseOut]
    fetch_errors_per_day: list[DayFetchOut]


def utc_day(session: Session, column: Any) -> Any:
    """SQL for the UTC calendar day of a timestamp column (SQLite stores naive UTC text; PostgreSQL timestamptz)."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.timezone("UTC", column), Date)
    return func.date(column)


def seconds_between(session: Session, start: Any, end: Any) -> Any:
    """SQL for ``end − start`` in seconds (NULL when either is NULL)."""
    if session.get_bind().dialect.name == "postgresql":
        return func.extract("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * 86400.0


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def _opened_since(session: Session, since: datetime, include_drills: bool) -> list[Any]:
    """(day opened, severity, seconds to acknowledge, seconds to resolve) per incident: computed by the database,
    so no timestamp is turned into a Python datetime (that was most of the cost with 1,000 incidents)."""
    query = select(
        utc_day(session, Incident.opened_at),
        Incident.severity,
        seconds_between(session, Incident.opened_at, Incident.acknowledged_at),
        seconds_between(session, Incident.opened_at, Incident.resolved_at),
    ).where(Incident.opened_at >= since)
    if not include_drills:
        query = query.where(Incident.is_drill.is_(False))
    return list(session.execute(query).all())


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 1) if values else None


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def incident_weeks(
    session: Session, now: datetime, *, weeks: int = 12, include_drills: bool = False
) -> tuple[list[WeekSeverityOut], list[WeekResponseOut]]:
    """Per week (by opening time, the last ``weeks`` weeks up to this one): incidents per severity and MTTA/MTTR."""
    starts = _weeks(now, weeks)
    index = {start: i for i, start in enumerate(starts)}
    counts: list[Counter[str]] = [Counter() for _ in starts]
    mtta: list[list[float]] = [[] for _ in starts]
    mttr: list[list[float]] = [[] for _ in starts]
    totals = [0] * len(starts)
    for day, severity, to_ack, to_resolve in _opened_since(session, _midnight(starts[0]), include_drills):
        i = index.get(week_start(_as_date(day)))
        if i is None:
            continue
        counts[i][severity] += 1
        totals[i] += 1
        if to_ack is not None:
            mtta[i].append(float(to_ack))
        if to_resolve is not None:
            mttr[i].append(float(to_resolve))
    per_severity = [
        WeekSeverityOut(week_start=start, counts={sev: counts[i][sev] for sev in SEVERITIES})
        for i, start in enumerate(starts)
    ]
    response = [
        WeekResponseOut(
            week_start=start, incidents=totals[i], acknowledged=len(mtta[i]), resolved=len(mttr[i]),
            mtta_mean_s=_mean(mtta[i]), mtta_median_s=_median(mtta[i]),
            mttr_mean_s=_mean(mttr[i]), mttr_median_s=_median(mttr[i]),
        )
        for i, start in enumerate(starts)
    ]  # fmt: skip
    return per_severity, response


def _fetch_error_kinds() -> frozenset[str]:
    """Every ``FetchError`` kind that means a request to the shop failed (not a refusal of ours)."""
    kinds: set[str] = set()
    todo: list[type[FetchError]] = [FetchError]
    while todo:
        cls = todo.pop()
        kinds.add(cls.kind)
        todo.extend(cls.__subclasses__())
    return frozenset(kinds - NOT_FETCH_FAILURES)


# Refusals and decisions, not failed requests: robots.txt, our circuit breaker, address policy, unknown shop
# software, a catalog over our size limit.
NOT_FETCH_FAILURES = frozenset(
    {"robots_disallowed", "circuit_open", "unsafe_address", "platform_unknown", "catalog_too_large"}
)
FETCH_ERROR_KINDS = _fetch_error_kinds()


def fetch_errors_per_day(session: Session, now: datetime, *, days: int = 30) -> list[DayFetchOut]:
    """Per day (UTC, the last ``days`` days): finished runs and those that ended on a fetch error.

    A fetch error aborts the run, so each failing run holds at most one; ``ok`` runs hold none, which is why
    only the other runs' error lists are read.
    """
    first = now.astimezone(UTC).date() - timedelta(days=days - 1)
    since = _midnight(first)
    runs: Counter[date] = Counter()
    failed: Counter[date] = Counter()
    day_of = utc_day(session, ScrapeRun.started_at)
    finished = session.execute(
        select(day_of, func.count())
        .where(ScrapeRun.started_at >= since, ScrapeRun.status != "running")
        .group_by(day_of)
    )
    for day, n in finished:
        runs[_as_date(day)] += int(n)
    troubled = session.execute(
        select(day_of, ScrapeRun.errors).where(ScrapeRun.started_at >= since, ScrapeRun.status.in_(("fail", "partial")))
    ).all()
    for day, errors in troubled:
        if any(isinstance(e, dict) and e.get("kind") in FETCH_ERROR_KINDS for e in errors or []):
            failed[_as_date(day)] += 1
    out = []
    for i in range(days):
        day = first + timedelta(days=i)
        n = runs[day]
        out.append(
            DayFetchOut(day=day, runs=n, fetch_errors=failed[day], rate=round(failed[day] / n, 4) if n else None)
        )
    return out


def build_insights(ctx: WebContext, *, weeks: int = 12, days: int = 30, include_drills: bool = False) -> InsightsOut:
    """The data behind the Insights page's charts (incidents from the incident store, runs from the catalog)."""
    now = ctx.now()
    with incident_factory(ctx)() as session:
        per_severity, response = incident_weeks(session, now, weeks=weeks, include_drills=include_drills)
    with ctx.factory() as session:
        fetch = fetch_errors_per_day(session, now, days=days)
    return InsightsOut(
        generated_at=now, weeks=weeks, days=days, include_drills=include_drills, incidents_per_week=per_severity,
        response_times_per_week=response, fetch_errors_per_day=fetch,
    )  # fmt: skip


# --- the overview panel ----------------------------------------------------------------------------------------


def open_incidents_panel(session: Session, now: datetime) -> dict[str, Any]:
    """Open incidents per severity (drills left out of the counts) and the most urgent ones with their clocks.

    ``session`` is the overview's catalog session; the incident store beside it is used when it is separate.
    """
    separate = factory_beside(session)
    if separate is not None:
        with separate() as store:
            return _panel(store, now)
    return _panel(session, now)


def _panel(session: Session, now: datetime) -> dict[str, Any]:
    counts = service.open_counts(session)
    severity_rank = {sev: i for i, sev in enumerate(SEVERITIES)}
    incidents = list(session.scalars(select(Incident).where(Incident.status.in_(OPEN_STATUSES))))
    incidents.sort(key=lambda i: (i.is_drill, severity_rank.get(i.severity, 9), i.acknowledged_at is not None,
                                  i.response_due_at))  # fmt: skip
    rows = [{"incident": i, "clock": response_clock(i, now)} for i in incidents[:PANEL_ROWS]]
    return {"counts": counts, "rows": rows, "total": len(incidents), "drills": sum(1 for i in incidents if i.is_drill)}


# --- checklists on demand ---------------------------------------------------------------------------------------


def _roster(settings: Settings) -> Any:
    """The on-call roster for checklist owners (None when the file is missing or broken: owners fall back)."""
    try:
        from coffee_scraper.incidents.oncall import load_roster

        return load_roster(settings.oncall_file)
    except Exception:
        return None


def create_checklists_now(session: Session, settings: Settings, incident_id: str, *, now: datetime) -> int:
    """The runbook's post-incident checklists of a resolved incident, now (``serve``'s recovery loop creates them
    after resolution too; idempotent). Returns how many items were created."""
    incident = followup.get_incident(session, incident_id)
    return len(followup.create_checklists(session, incident, now=now, roster=_roster(settings)))


class ChecklistsCreatedOut(BaseModel):
    incident_id: str
    created: int = Field(description="Items created now (0: they existed already).")


# --- routes --------------------------------------------------------------------------------------------------------


@router.get("/insights", response_model=InsightsOut, summary="Chart data: incidents per week, MTTA/MTTR, fetch errors")
def insights(
    ctx: Context,
    _: ApiViewer,
    weeks: Annotated[int, Query(ge=1, le=MAX_WEEKS, description="Weeks of incidents, this one included.")] = 12,
    days: Annotated[int, Query(ge=1, le=MAX_DAYS, description="Days of fetch error rates, today included.")] = 30,
    drills: Annotated[bool, Query(description="Count drills too.")] = False,
) -> InsightsOut:
    return build_insights(ctx, weeks=weeks, days=days, include_drills=drills)


@router.get(
    "/incidents/{incident_id}/notifications",
    response_model=IncidentNotificationsOut,
    summary="An incident's notifications per channel: delivered, failed, pending",
)
def incident_notifications(
    incident_id: Annotated[str, Path(description="INC-YYYYMMDD-###", max_length=40)],
    ctx: Context,
    _: ApiViewer,
) -> IncidentNotificationsOut:
    with incident_factory(ctx)() as session:
        if not is_incident_id(incident_id) or session.get(Incident, incident_id) is None:
            raise HTTPException(404, f"no incident {incident_id!r}; GET /api/v1/incidents lists them")
        return notifications_for(session, incident_id)


@router.post(
    "/incidents/{incident_id}/checklist",
    response_model=ChecklistsCreatedOut,
    summary="Create a resolved incident's post-incident checklists now (idempotent)",
)
def create_checklists(
    incident_id: Annotated[str, Path(description="INC-YYYYMMDD-###", max_length=40)],
    ctx: Context,
    principal: ApiOperator,
) -> ChecklistsCreatedOut:
    if not is_incident_id(incident_id):
        raise HTTPException(404, f"no incident {incident_id!r}; GET /api/v1/incidents lists them")
    try:
        created = write_incidents(ctx, lambda s: create_checklists_now(s, ctx.settings, incident_id, now=ctx.now()))
    except followup.FollowupError as exc:
        raise HTTPException(404 if str(exc).startswith("no incident") else 409, str(exc)) from exc
    return ChecklistsCreatedOut(incident_id=incident_id, created=created)


__all__ = [
    "FETCH_ERROR_KINDS",
    "InsightsOut",
    "ResponseClock",
    "build_insights",
    "create_checklists_now",
    "incident_factory",
    "notifications_for",
    "open_incidents_panel",
    "response_clock",
    "router",
    "span",
    "write_incidents",
]
