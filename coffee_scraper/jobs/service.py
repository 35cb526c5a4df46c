"""Every query of the scheduler: due times and their claims, queue pause, roaster pause, heartbeats, queue depth.

Both modes use the same functions: the embedded scheduler claims a due run and starts it, the distributed
enqueuer claims it and defers a procrastinate job in the same transaction. Also what the incident watchdog
reads: ``stale_heartbeats``, ``paused_roasters``, ``queue_state``, ``queue_depth``.
No scraping and no procrastinate API calls here (see ``execute.py`` and ``distributed.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psutil
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from coffee_scraper.catalog.models import Roaster, ScrapeRun
from coffee_scraper.jobs.cadence import MODES, CadenceError, effective_cadences, next_after
from coffee_scraper.jobs.models import Heartbeat, JobSchedule, QueueState
from coffee_scraper.jobs.runtime import Identity
from coffee_scraper.observability.logging import get_logger
from coffee_scraper.settings import Settings

QUEUE_STATE_ID = 1
RUN_TASK = "coffee_scraper.run_roaster"  # procrastinate task name of a roaster run (distributed.py registers it)
# error kinds that are not the shop's fault: they never count towards pausing a roaster
NOT_SHOP_ERRORS = frozenset({"internal", "storage", "paused", "quarantined", "currency_assumed", "catalog_incomplete"})


# --- schedules ------------------------------------------------------------------------------------


def cadences_of(roaster: Roaster, settings: Settings) -> tuple[str, str]:
    """(full, price) cron expressions in effect for the roaster."""
    c = effective_cadences(
        roaster.full_cadence,
        roaster.price_cadence,
        full_default=settings.full_cadence,
        price_default=settings.price_cadence,
    )
    return c.full, c.price


def first_due(roaster: Roaster, mode: str, cron: str, settings: Settings, now: datetime) -> datetime:
    """When a new schedule's first run is due: at once for a roaster that never ran (full runs), else its cron."""
    if mode == "full" and settings.scheduler_first_run_immediately and roaster.last_run_at is None:
        return now
    return next_after(cron, now, settings.cadence_timezone)


def sync_schedules(session: Session, settings: Settings, now: datetime) -> int:
    """Make sure every roaster has a schedule row per mode; recompute the due time when a cadence changed.

    Returns how many rows were created or re-timed. A bad cron on one roaster is logged by the caller via the
    CadenceError message stored nowhere else: that roaster keeps its old schedule (or gets none).
    """
    rows = {(s.roaster_id, s.mode): s for s in session.scalars(select(JobSchedule))}
    changed = 0
    for roaster in session.scalars(select(Roaster)):
        full, price = cadences_of(roaster, settings)
        for mode, cron in (("full", full), ("price", price)):
            row = rows.get((roaster.id, mode))
            if row is not None and row.cadence == cron:
                continue
            try:
                due = first_due(roaster, mode, cron, settings, now) if row is None else _retime(cron, settings, now)
            except CadenceError:
                continue
            if row is None:
                session.add(JobSchedule(roaster_id=roaster.id, mode=mode, cadence=cron, next_due_at=due, attempts=0))
            else:
                row.cadence, row.next_due_at = cron, due
            changed += 1
    session.flush()
    return changed


def _retime(cron: str, settings: Settings, now: datetime) -> datetime:
    return next_after(cron, now, settings.cadence_timezone)


@dataclass(frozen=True)
class Due:
    """A schedule row as read before claiming it (the claim compares these values)."""

    schedule_id: int
    roaster_id: int
    roaster: str
    mode: str
    cadence: str
    next_due_at: datetime
    pending_since: datetime | None
    claimed_by: str | None


def _due_rows(session: Session, stmt: Any) -> list[Due]:
    return [
        Due(s.id, s.roaster_id, name, s.mode, s.cadence, s.next_due_at, s.pending_since, s.claimed_by)
        for s, name in session.execute(stmt)
    ]


def due_schedules(session: Session, now: datetime, *, include_pending: bool = False) -> list[Due]:
    """Schedules of active roasters due at ``now``, price before full, oldest first.

    ``include_pending`` also returns due rows whose previous claim is unfinished (the caller decides whether
    that claim is orphaned)."""
    stmt = (
        select(JobSchedule, Roaster.name)
        .join(Roaster, Roaster.id == JobSchedule.roaster_id)
        .where(Roaster.active.is_(True), JobSchedule.next_due_at <= now)
    )
    if not include_pending:
        stmt = stmt.where(JobSchedule.pending_since.is_(None))
    rows = _due_rows(session, stmt)
    return sorted(rows, key=lambda d: (MODES.index(d.mode) if d.mode in MODES else 9, d.next_due_at, d.schedule_id))


def pending_schedules(session: Session) -> list[Due]:
    """Every claimed, unfinished schedule (of active roasters)."""
    stmt = (
        select(JobSchedule, Roaster.name)
        .join(Roaster, Roaster.id == JobSchedule.roaster_id)
        .where(Roaster.active.is_(True), JobSchedule.pending_since.is_not(None))
        .order_by(JobSchedule.pending_since, JobSchedule.id)
    )
    return _due_rows(session, stmt)


def claim(
    session: Session,
    due: Due,
    *,
    now: datetime,
    settings: Settings,
    session_id: str,
    trigger: str = "schedule",
    advance: bool = True,
) -> bool:
    """Compare-and-set: take this due run for ``session_id`` if nobody changed the row since it was read.

    The due time moves on to the cadence's next tick after ``now`` (missed ticks coalesce into this one run);
    ``advance=False`` keeps it (resuming an interrupted claim). Exactly one concurrent claimer gets True.
    """
    values: dict[str, Any] = {
        "pending_since": now,
        "claimed_by": session_id,
        "trigger": trigger,
        "last_enqueued_at": now,
        "updated_at": now,
    }
    if advance:
        try:
            values["next_due_at"] = _retime(due.cadence, settings, now)
        except CadenceError:
            values["next_due_at"] = now + timedelta(days=1)
    pending = (
        JobSchedule.pending_since.is_(None)
        if due.pending_since is None
        else JobSchedule.pending_since == due.pending_since
    )
    claimer = JobSchedule.claimed_by.is_(None) if due.claimed_by is None else JobSchedule.claimed_by == due.claimed_by
    result = session.execute(
        update(JobSchedule)
        .where(JobSchedule.id == due.schedule_id, JobSchedule.next_due_at == due.next_due_at, pending, claimer)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0) == 1  # type: ignore[attr-defined]


def schedule_for(session: Session, roaster_id: int, mode: str) -> JobSchedule | None:
    return session.scalar(select(JobSchedule).where(JobSchedule.roaster_id == roaster_id, JobSchedule.mode == mode))


def finish_schedule(
    session: Session, roaster_id: int, mode: str, *, now: datetime, status: str, run_id: int | None
) -> None:
    """A claimed run ended (any status): the claim is released and the result noted."""
    session.execute(
        update(JobSchedule)
        .where(JobSchedule.roaster_id == roaster_id, JobSchedule.mode == mode)
        .values(
            pending_since=None,
            claimed_by=None,
            last_finished_at=now,
            last_status=status,
            last_run_id=run_id or None,
            attempts=0,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )


def unclaim(session: Session, roaster_id: int, mode: str, *, now: datetime) -> None:
    """Give a claimed run back without running it (the queue got paused): due again at once after resume."""
    row = schedule_for(session, roaster_id, mode)
    if row is not None:
        row.pending_since, row.claimed_by, row.updated_at = None, None, now
        row.next_due_at = min(row.next_due_at, now)


def backoff_s(settings: Settings, attempts: int) -> float:
    """Wait before try ``attempts + 1`` of a run that failed on storage errors: doubling, capped."""
    return float(min(settings.retry_backoff_cap_s, settings.retry_backoff_base_s * (2 ** max(0, attempts))))


def release_for_retry(session: Session, roaster_id: int, mode: str, *, now: datetime, settings: Settings) -> int:
    """Embedded mode: a run failed on storage errors; due again after a backoff, until retry_max_attempts.

    Returns the attempt count; after the last attempt the claim is released without retry (next cron tick)."""
    row = schedule_for(session, roaster_id, mode)
    if row is None:
        return 0
    row.attempts += 1
    row.pending_since, row.claimed_by, row.last_status, row.updated_at = None, None, "error", now
    if row.attempts < settings.retry_max_attempts:
        row.next_due_at = min(row.next_due_at, now + timedelta(seconds=backoff_s(settings, row.attempts - 1)))
    else:
        row.attempts = 0
    return row.attempts


def request_run(session: Session, roaster: Roaster, mode: str, *, now: datetime, settings: Settings) -> JobSchedule:
    """Make the roaster's ``mode`` run due now (``jobs run-now`` for the embedded scheduler)."""
    row = schedule_for(session, roaster.id, mode)
    if row is None:
        full, price = cadences_of(roaster, settings)
        row = JobSchedule(roaster_id=roaster.id, mode=mode, cadence=full if mode == "full" else price, attempts=0)
        session.add(row)
    row.next_due_at, row.trigger, row.updated_at = now, "manual", now
    session.flush()
    return row


def running_elsewhere(session: Session, roaster_id: int, *, now: datetime, stale_after_s: float) -> bool:
    """A run of this roaster is 'running' and younger than the stale limit (another process has it)."""
    cutoff = now - timedelta(seconds=stale_after_s)
    found = session.scalar(
        select(ScrapeRun.id)
        .where(ScrapeRun.roaster_id == roaster_id, ScrapeRun.status == "running", ScrapeRun.started_at >= cutoff)
        .limit(1)
    )
    return found is not None


# --- the queue's pause switch -----------------------------------------------------------------------


def queue_state(session: Session) -> QueueState:
    """The queue's pause row (created when missing)."""
    state = session.get(QueueState, QUEUE_STATE_ID)
    if state is None:
        state = QueueState(id=QUEUE_STATE_ID, paused=False)
        session.add(state)
        session.flush()
    return state


def queue_paused(session: Session) -> tuple[bool, str | None]:
    state = session.get(QueueState, QUEUE_STATE_ID)
    return (bool(state.paused), state.reason) if state is not None else (False, None)


def pause_queue(session: Session, *, reason: str, by: str, now: datetime) -> bool:
    """Pause every run (returns False when it was paused already; the first reason stays)."""
    state = queue_state(session)
    if state.paused:
        return False
    state.paused, state.reason, state.paused_at, state.paused_by = True, reason, now, by
    return True


def resume_queue(session: Session, *, now: datetime) -> bool:
    """Resume the queue (returns False when it was not paused)."""
    state = queue_state(session)
    if not state.paused:
        return False
    state.paused, state.resumed_at = False, now
    return True


# --- roaster pause ----------------------------------------------------------------------------------


def pause_roaster(session: Session, roaster: Roaster, *, reason: str, now: datetime) -> None:
    roaster.active, roaster.paused_reason, roaster.paused_at = False, reason, now


def resume_roaster(session: Session, roaster: Roaster) -> bool:
    """Activate a paused roaster again and forget its failure streak (returns False if it was active)."""
    was_paused = not roaster.active
    roaster.active, roaster.paused_reason, roaster.paused_at = True, None, None
    roaster.consecutive_failed_runs = 0
    return was_paused


@dataclass(frozen=True)
class PausedRoaster:
    """A paused roaster as the incident watchdog sees it."""

    name: str
    reason: str | None
    paused_at: datetime | None
    consecutive_failed_runs: int


def paused_roasters(session: Session) -> list[PausedRoaster]:
    """Every roaster with active=False, oldest pause first (input for the incident system)."""
    stmt = select(Roaster).where(Roaster.active.is_(False)).order_by(Roaster.paused_at, Roaster.name)
    return [
        PausedRoaster(r.name, r.paused_reason, r.paused_at, r.consecutive_failed_runs) for r in session.scalars(stmt)
    ]


def shop_failure_streak(session: Session, roaster_id: int, n: int) -> list[ScrapeRun] | None:
    """The roaster's last ``n`` finished runs when every one failed because of the shop, else None."""
    if n <= 0:
        return None
    runs = list(
        session.scalars(
            select(ScrapeRun)
            .where(
                ScrapeRun.roaster_id == roaster_id,
                ScrapeRun.status != "running",
                ScrapeRun.mode.in_(("full", "price")),
            )
            .order_by(ScrapeRun.id.desc())
            .limit(n)
        )
    )
    if len(runs) < n or not all(is_shop_failure(r.status, r.errors) for r in runs):
        return None
    return runs


def is_shop_failure(status: str, errors: Iterable[dict[str, Any]] | None) -> bool:
    """A run that failed and whose errors are the shop's (HTTP, robots, payload), not storage or ours."""
    if status != "fail":
        return False
    kinds = [e.get("kind") for e in errors or [] if isinstance(e, dict)]
    fatal = [k for k in kinds if k not in NOT_SHOP_ERRORS]
    return bool(fatal) and not any(k in {"internal", "storage"} for k in kinds)


# --- heartbeats -------------------------------------------------------------------------------------


def beat(
    session: Session,
    identity: Identity,
    *,
    now: datetime,
    info: dict[str, Any] | None = None,
    pid_alive: Callable[[int], bool] = psutil.pid_exists,
) -> Heartbeat:
    """Write this process's heartbeat (one row per component and instance; a new session restarts it).

    A process's first beat also retires the rows of processes on this host that died without stopping
    (``retire_dead_local``), whatever their component."""
    row = session.scalar(
        select(Heartbeat).where(Heartbeat.component == identity.component, Heartbeat.instance == identity.instance)
    )
    if row is None or row.session_id != identity.session_id:  # this process's first beat
        retire_dead_local(session, identity, now=now, pid_alive=pid_alive)
    if row is None:
        row = Heartbeat(component=identity.component, instance=identity.instance, started_at=now)
        session.add(row)
    if row.session_id != identity.session_id:
        row.started_at = now
    row.session_id, row.host, row.pid = identity.session_id, identity.host, identity.pid
    row.last_beat_at, row.stopped_at = now, None
    row.info = dict(info or {})
    session.flush()
    return row


def stop_heartbeat(session: Session, identity: Identity, *, now: datetime) -> None:
    """A clean stop: the row stays (history) but no longer counts as expected or stale."""
    session.execute(
        update(Heartbeat)
        .where(
            Heartbeat.component == identity.component,
            Heartbeat.instance == identity.instance,
            Heartbeat.session_id == identity.session_id,
        )
        .values(stopped_at=now, last_beat_at=now)
        .execution_options(synchronize_session=False)
    )


def retire_dead_local(
    session: Session, identity: Identity, *, now: datetime, pid_alive: Callable[[int], bool]
) -> list[str]:
    """Heartbeat rows of processes on this host whose pid is gone (a crash, `kill -9`) are marked stopped, so
    they are neither reported stale forever nor waited for before their claims resume."""
    rows = session.scalars(
        select(Heartbeat).where(
            Heartbeat.host == identity.host,
            Heartbeat.stopped_at.is_(None),
            Heartbeat.session_id != identity.session_id,
        )
    ).all()
    retired = []
    for row in rows:
        if row.pid != identity.pid and not pid_alive(row.pid):
            get_logger("scheduler").warning("heartbeat_of_dead_process_retired", component=row.component,
                                            instance=row.instance, pid=row.pid)  # fmt: skip
            row.stopped_at = now
            retired.append(row.instance)
    return retired


def heartbeats(session: Session, *, include_stopped: bool = False) -> list[Heartbeat]:
    stmt = select(Heartbeat).order_by(Heartbeat.component, Heartbeat.instance)
    if not include_stopped:
        stmt = stmt.where(Heartbeat.stopped_at.is_(None))
    return list(session.scalars(stmt))


def stale_heartbeats(session: Session, now: datetime, max_age_s: float) -> list[Heartbeat]:
    """Running (not cleanly stopped) schedulers and workers whose last heartbeat is older than ``max_age_s``."""
    cutoff = now - timedelta(seconds=max_age_s)
    return list(
        session.scalars(
            select(Heartbeat)
            .where(Heartbeat.stopped_at.is_(None), Heartbeat.last_beat_at < cutoff)
            .order_by(Heartbeat.last_beat_at)
        )
    )


def heartbeat_health(
    session: Session, now: datetime, max_age_s: float, *, expected_session: str | None = None
) -> dict[str, Any] | None:
    """Readiness view of the heartbeats: None when no scheduler or worker is expected (none expected here and
    no running one recorded), else ``{"ok", "components", "stale": [...]}`` naming each stale component."""
    rows = heartbeats(session)
    if expected_session is None and not rows:
        return None
    stale = [
        {
            "component": h.component,
            "instance": h.instance,
            "last_beat_at": h.last_beat_at.isoformat(),
            "age_s": round((now - h.last_beat_at).total_seconds(), 1),
        }
        for h in rows
        if (now - h.last_beat_at).total_seconds() > max_age_s
    ]
    components = [f"{h.component} {h.instance}" for h in rows]
    result: dict[str, Any] = {"ok": not stale, "components": components, "max_age_s": max_age_s, "stale": stale}
    if expected_session is not None and not any(h.session_id == expected_session for h in rows):
        result["ok"] = False
        result["error"] = "the embedded scheduler has written no heartbeat; see scheduler.log"
    elif stale:
        names = ", ".join(f"{s['component']} {s['instance']} ({s['age_s']:.0f} s ago)" for s in stale)
        result["error"] = (
            f"no heartbeat from {names}; restart it, or `coffee-scraper jobs forget INSTANCE` if it is gone for good"
        )
    return result


def live_sessions(session: Session, now: datetime, max_age_s: float) -> set[str]:
    """Session ids of processes that beat within ``max_age_s`` and did not stop."""
    cutoff = now - timedelta(seconds=max_age_s)
    return set(
        session.scalars(
            select(Heartbeat.session_id).where(Heartbeat.stopped_at.is_(None), Heartbeat.last_beat_at >= cutoff)
        )
    )


def forget_heartbeat(session: Session, instance: str, component: str | None = None) -> int:
    """Delete the heartbeat rows of an instance that is gone for good (a removed machine)."""
    rows = session.scalars(
        select(Heartbeat).where(
            Heartbeat.instance == instance, *([Heartbeat.component == component] if component else [])
        )
    ).all()
    for row in rows:
        session.delete(row)
    return len(rows)


# --- queue depth and procrastinate's tables (read only) ----------------------------------------------


def embedded_due_counts(session: Session, now: datetime) -> dict[str, int]:
    """Due runs not started yet, per mode (the embedded scheduler's queue depth)."""
    counts: dict[str, int] = dict.fromkeys(MODES, 0)
    rows = session.execute(
        select(JobSchedule.mode, func.count())
        .join(Roaster, Roaster.id == JobSchedule.roaster_id)
        .where(Roaster.active.is_(True), JobSchedule.next_due_at <= now, JobSchedule.pending_since.is_(None))
        .group_by(JobSchedule.mode)
    )
    for mode, n in rows:
        counts[str(mode)] = int(n)
    return counts


def has_procrastinate(session: Session) -> bool:
    bind = session.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    return bool(session.scalar(text("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")))


def procrastinate_todo_counts(session: Session) -> dict[str, int]:
    """Jobs waiting ('todo') per procrastinate queue."""
    rows = session.execute(
        text("SELECT queue_name, count(*) FROM procrastinate_jobs WHERE status = 'todo' GROUP BY queue_name")
    )
    return {str(q): int(n) for q, n in rows}


def queued_runs(session: Session) -> set[tuple[str, str]]:
    """(roaster, mode) of every run job waiting or in progress in procrastinate."""
    rows = session.execute(
        text(
            "SELECT args->>'roaster', args->>'mode' FROM procrastinate_jobs "
            "WHERE task_name = :task AND status IN ('todo', 'doing')"
        ),
        {"task": RUN_TASK},
    )
    return {(str(r), str(m)) for r, m in rows}


def queue_depth(session: Session, now: datetime) -> dict[str, int]:
    """Runs waiting per queue: procrastinate's todo jobs when its schema exists, else due-but-not-started."""
    if has_procrastinate(session):
        counts: dict[str, int] = dict.fromkeys(MODES, 0)
        counts.update(procrastinate_todo_counts(session))
        return counts
    return embedded_due_counts(session, now)


# --- listing ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleView:
    """One roaster and mode for `jobs list` / `roasters list`: cadence, next due, last result."""

    roaster: str
    active: bool
    paused_reason: str | None
    mode: str
    cadence: str
    cadence_is_default: bool
    next_due_at: datetime | None
    pending_since: datetime | None
    last_status: str | None
    last_finished_at: datetime | None
    error: str | None = None  # a cadence croniter rejects


def schedule_views(
    session: Session, settings: Settings, now: datetime, roaster: str | None = None
) -> list[ScheduleView]:
    """Every roaster's price and full schedule: the stored due time, or the one the next sync would store."""
    stored = {(s.roaster_id, s.mode): s for s in session.scalars(select(JobSchedule))}
    stmt = select(Roaster).order_by(Roaster.name)
    if roaster:
        stmt = stmt.where(Roaster.name == roaster)
    views: list[ScheduleView] = []
    for r in session.scalars(stmt):
        cad = effective_cadences(
            r.full_cadence, r.price_cadence, full_default=settings.full_cadence, price_default=settings.price_cadence
        )
        for mode in MODES:
            cron = cad.of(mode)
            row = stored.get((r.id, mode))
            error = None
            if row is not None and row.cadence == cron:
                due: datetime | None = row.next_due_at
            else:
                try:
                    due = first_due(r, mode, cron, settings, now) if row is None else _retime(cron, settings, now)
                except CadenceError as exc:
                    due, error = None, str(exc)
            views.append(
                ScheduleView(
                    roaster=r.name,
                    active=r.active,
                    paused_reason=r.paused_reason,
                    mode=mode,
                    cadence=cron,
                    cadence_is_default=cad.full_is_default if mode == "full" else cad.price_is_default,
                    next_due_at=due,
                    pending_since=row.pending_since if row else None,
                    last_status=row.last_status if row else None,
                    last_finished_at=row.last_finished_at if row else None,
                    error=error,
                )
            )
    return views


def orphaned_claims(session: Session, *, alive: set[str], own_session: str) -> list[Due]:
    """Claimed, unfinished schedules whose claimer is neither us nor a live process (interrupted runs)."""
    return [d for d in pending_schedules(session) if d.claimed_by != own_session and d.claimed_by not in alive]


__all__ = [
    "NOT_SHOP_ERRORS",
    "RUN_TASK",
    "Due",
    "PausedRoaster",
    "ScheduleView",
    "backoff_s",
    "beat",
    "claim",
    "due_schedules",
    "embedded_due_counts",
    "finish_schedule",
    "forget_heartbeat",
    "has_procrastinate",
    "heartbeat_health",
    "heartbeats",
    "is_shop_failure",
    "live_sessions",
    "orphaned_claims",
    "pause_queue",
    "pause_roaster",
    "paused_roasters",
    "pending_schedules",
    "procrastinate_todo_counts",
    "queue_depth",
    "queue_paused",
    "queue_state",
    "queued_runs",
    "release_for_retry",
    "request_run",
    "resume_queue",
    "resume_roaster",
    "retire_dead_local",
    "running_elsewhere",
    "schedule_views",
    "shop_failure_streak",
    "stale_heartbeats",
    "stop_heartbeat",
    "sync_schedules",
    "unclaim",
]
