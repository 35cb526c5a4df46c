"""Distributed mode: procrastinate (PostgreSQL-backed job queue, no extra service) runs roaster runs on workers.

A roaster run is the task ``coffee_scraper.run_roaster(roaster, mode)`` on queue ``price`` or ``full``, with
``lock=roaster:<id>`` (never two runs of one roaster at once), ``queueing_lock=run:<id>:<mode>`` (a waiting run
is never queued twice), priority price > full (manual runs above both) and a retry strategy that retries storage
trouble and released runs with exponential backoff but never a shop's own errors. Periodic tasks, deduplicated
across workers by procrastinate's ``periodic_id``: ``enqueue_due`` (claims due schedules with the same
compare-and-set as the embedded scheduler and defers their jobs in the same transaction), ``retry_stalled``
(runs of workers whose procrastinate heartbeat stopped: retried on a live worker) and ``prune_jobs``.
The task body is ``execute.execute_run``, the same as in embedded mode. `coffee-scraper worker` calls
``run_worker``; SIGTERM stops it gracefully (procrastinate waits ``worker_shutdown_timeout_s`` for running jobs,
then cancels them: ``execute_run`` marks their run rows failed and the retry strategy puts them back in the queue).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import procrastinate
import psycopg
from procrastinate import exceptions as pexc
from procrastinate.jobs import Job, Status
from procrastinate.manager import JobManager
from procrastinate.retry import BaseRetryStrategy, RetryDecision
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from structlog.contextvars import bound_contextvars

from coffee_scraper.catalog import db
from coffee_scraper.catalog import service as catalog
from coffee_scraper.catalog.db import session_scope
from coffee_scraper.catalog.models import Roaster, utcnow
from coffee_scraper.jobs import service
from coffee_scraper.jobs.execute import QueuePaused, RetryableRunError, StorageGuard, execute_run
from coffee_scraper.jobs.runtime import Identity
from coffee_scraper.observability.logging import get_logger
from coffee_scraper.observability.metrics import HEARTBEAT, QUEUE_DEPTH
from coffee_scraper.settings import Settings

RUN_TASK = service.RUN_TASK
ENQUEUE_TASK = "coffee_scraper.enqueue_due"
STALLED_TASK = "coffee_scraper.retry_stalled"
PRUNE_TASK = "coffee_scraper.prune_jobs"
RUN_QUEUES = ("price", "full")
MAINTENANCE_QUEUE = "maintenance"
ALL_QUEUES = (*RUN_QUEUES, MAINTENANCE_QUEUE)
PRIORITY = {"price": 10, "full": 0}
MANUAL_PRIORITY = 100  # `jobs run-now` goes before every scheduled run
SLOT_LOCK_CLASS = 0x0C0FFEE  # advisory lock class id of the global run slots
PRUNE_AFTER_HOURS = 14 * 24  # finished jobs kept this long (procrastinate's own history)


def conninfo(database_url: str) -> str:
    """The libpq connection string procrastinate needs, from the SQLAlchemy URL of the settings."""
    url = make_url(db.normalize_url(database_url))
    if url.get_backend_name() != "postgresql":
        raise ValueError(
            f"distributed mode needs PostgreSQL, not {url.get_backend_name()}; "
            "set COFFEE_SCRAPER_DATABASE_URL=postgresql+psycopg://user@host/db"
        )
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


# --- retries ----------------------------------------------------------------------------------------


class RunRetryStrategy(BaseRetryStrategy):
    """Retry storage trouble with exponential backoff (up to retry_max_attempts tries), put back runs
    released at shutdown at once, re-check a paused queue later; never retry a shop's own errors (they are
    a finished run with status fail, not an exception)."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        if isinstance(exception, QueuePaused):
            return RetryDecision(retry_in={"seconds": int(self.settings.queue_pause_recheck_s)})
        if isinstance(exception, asyncio.CancelledError | pexc.JobAborted):
            return RetryDecision(retry_in={"seconds": 0})  # released by a stopping worker
        if isinstance(exception, RetryableRunError) and job.attempts + 1 < self.settings.retry_max_attempts:
            return RetryDecision(retry_in={"seconds": int(service.backoff_s(self.settings, job.attempts))})
        return None


# --- deferring runs ---------------------------------------------------------------------------------

_deferrer: JobManager | None = None


def _job_manager() -> JobManager:
    """A JobManager that only ever uses the connection it is handed (never opens a pool of its own)."""
    global _deferrer
    if _deferrer is None:
        _deferrer = JobManager(procrastinate.SyncPsycopgConnector())
    return _deferrer


def run_job(roaster_id: int, roaster: str, mode: str, *, trigger: str = "schedule", due: datetime | None = None) -> Job:
    """The procrastinate job of one roaster run."""
    kwargs: dict[str, Any] = {"roaster": roaster, "mode": mode, "trigger": trigger}
    if due is not None:
        kwargs["due"] = due.isoformat()
    return Job(
        id=None,
        queue=mode,
        task_name=RUN_TASK,
        lock=f"roaster:{roaster_id}",
        queueing_lock=f"run:{roaster_id}:{mode}",
        task_kwargs=kwargs,
        priority=MANUAL_PRIORITY if trigger == "manual" else PRIORITY.get(mode, 0),
        scheduled_at=None,
    )


def defer_in_session(session: Session, job: Job) -> int | None:
    """Insert ``job`` through the session's own connection, inside its transaction (so a claim and its job
    commit together). Returns the job id, or None when the same run is already waiting (queueing lock)."""
    raw = session.connection().connection.driver_connection
    try:
        with session.begin_nested():
            deferred = _job_manager().batch_defer_jobs([job], connection=raw)
    except pexc.AlreadyEnqueued:
        return None
    return deferred[0].id


@dataclass
class EnqueueResult:
    deferred: list[str] = field(default_factory=list)  # "roaster:mode"
    skipped_queued: int = 0
    released: int = 0  # claims whose job vanished (failed for good, cancelled): released
    paused: bool = False


def enqueue_due(factory: sessionmaker[Session], settings: Settings, *, now: datetime, session_id: str) -> EnqueueResult:
    """Claim every due schedule and defer its run job in the same transaction (one periodic tick)."""
    result = EnqueueResult()
    with session_scope(factory) as session:
        paused, _ = service.queue_paused(session)
        if paused:
            result.paused = True
            return result
        service.sync_schedules(session, settings, now)
    with session_scope(factory) as session:
        queued = service.queued_runs(session)
        for due in service.due_schedules(session, now, include_pending=True):
            if (due.roaster, due.mode) in queued:
                result.skipped_queued += 1  # still waiting or running: the tick folds into that run
                continue
            if service.claim(session, due, now=now, settings=settings, session_id=session_id):
                job = run_job(due.roaster_id, due.roaster, due.mode, due=due.next_due_at)
                if defer_in_session(session, job) is not None:
                    result.deferred.append(f"{due.roaster}:{due.mode}")
        # claims with no job left and older than a minute (their job failed for good or was cancelled)
        grace = now - timedelta(seconds=60)
        for pending in service.pending_schedules(session):
            if (pending.roaster, pending.mode) in queued or pending.pending_since is None:
                continue
            if pending.pending_since < grace and pending.next_due_at > now:
                service.finish_schedule(session, pending.roaster_id, pending.mode, now=now, status="lost", run_id=None)
                result.released += 1
    if result.deferred:
        get_logger("scheduler").info("runs_enqueued", runs=result.deferred)
    return result


def enqueue_now(
    factory: sessionmaker[Session], roaster_name: str, mode: str, *, now: datetime, session_id: str = "manual"
) -> int | None:
    """`jobs run-now` in distributed mode: defer a manual run at once (None: the same run is already waiting)."""
    with session_scope(factory) as session:
        roaster = catalog.get_roaster(session, roaster_name)
        job_id = defer_in_session(session, run_job(roaster.id, roaster.name, mode, trigger="manual"))
        if job_id is not None:
            row = service.schedule_for(session, roaster.id, mode)
            if row is not None and row.pending_since is None:
                row.pending_since, row.claimed_by, row.trigger, row.last_enqueued_at = now, session_id, "manual", now
        return job_id


# --- the global cap of concurrent runs ----------------------------------------------------------------


class RunSlots:
    """``max_concurrent_runs`` slots shared by every worker: a PostgreSQL session advisory lock per slot.

    A run holds one slot (its own connection) from start to end; a worker that dies loses its connection and
    PostgreSQL releases the slot by itself. ``size`` 0 disables the cap (then only worker concurrency limits).
    """

    def __init__(self, dsn: str, size: int, poll_s: float = 0.1):
        self.dsn, self.size, self.poll_s = dsn, size, poll_s

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[int | None]:
        if self.size <= 0:
            yield None
            return
        conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        try:
            slot = await self._acquire(conn)
            yield slot
        finally:
            await conn.close()  # ends the session: PostgreSQL releases the advisory lock

    async def _acquire(self, conn: psycopg.AsyncConnection[Any]) -> int:
        order = list(range(self.size))
        while True:
            random.shuffle(order)
            for slot in order:
                cur = await conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (SLOT_LOCK_CLASS, slot))
                row = await cur.fetchone()
                if row and row[0]:
                    return slot
            await asyncio.sleep(self.poll_s * (1 + random.random()))


# --- the procrastinate app ----------------------------------------------------------------------------


@dataclass
class WorkerRuntime:
    """What the tasks of one worker process share: settings, database sessions, identity, guard, slots."""

    settings: Settings
    factory: sessionmaker[Session]
    identity: Identity
    guard: StorageGuard
    slots: RunSlots


def build_app(settings: Settings, runtime: WorkerRuntime | None = None) -> procrastinate.App:
    """The procrastinate App for ``settings.database_url`` with the run task and the periodic tasks.

    ``runtime`` is needed only by a process that executes tasks (a worker); deferring works without it.
    """
    dsn = conninfo(settings.database_url)
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(
            conninfo=dsn, min_size=1, max_size=max(4, settings.worker_concurrency + 4)
        ),
    )

    def need_runtime() -> WorkerRuntime:
        if runtime is None:
            raise RuntimeError("this procrastinate app was built without a worker runtime; use run_worker()")
        return runtime

    @app.task(name=RUN_TASK, queue="full", retry=RunRetryStrategy(settings), pass_context=True)
    async def run_roaster_task(
        context: procrastinate.JobContext,
        roaster: str,
        mode: str,
        trigger: str = "schedule",
        due: str | None = None,
    ) -> dict[str, Any]:
        rt = need_runtime()
        job_id = context.job.id if context.job is not None else None
        # every log line and Sentry event of this run carries its job id (the pipeline adds roaster and run_id)
        with bound_contextvars(job_id=job_id):
            return await _run_task(rt, roaster, mode, trigger)

    async def _run_task(rt: WorkerRuntime, roaster: str, mode: str, trigger: str) -> dict[str, Any]:
        async with rt.slots.hold():
            report = await execute_run(
                roaster,
                "price" if mode == "price" else "full",
                settings=rt.settings,
                factory=rt.factory,
                trigger=trigger,
                guard=rt.guard,
                identity=rt.identity,
            )
        return {"status": report.status, "run_id": report.run_id, "pages": report.pages}

    @app.periodic(cron=settings.enqueue_cron, periodic_id="enqueue-due")
    @app.task(name=ENQUEUE_TASK, queue=MAINTENANCE_QUEUE, queueing_lock="enqueue-due")
    async def enqueue_due_task(timestamp: int) -> dict[str, Any]:
        rt = need_runtime()
        result = await asyncio.to_thread(
            enqueue_due, rt.factory, rt.settings, now=utcnow(), session_id=rt.identity.session_id
        )
        return {"deferred": len(result.deferred), "already_queued": result.skipped_queued, "paused": result.paused}

    @app.periodic(cron=settings.stalled_check_cron, periodic_id="retry-stalled")
    @app.task(name=STALLED_TASK, queue=MAINTENANCE_QUEUE, queueing_lock="retry-stalled")
    async def retry_stalled_task(timestamp: int) -> dict[str, Any]:
        return {"retried": await retry_stalled(app, need_runtime())}

    @app.periodic(cron="17 5 * * *", periodic_id="prune-jobs")
    @app.task(name=PRUNE_TASK, queue=MAINTENANCE_QUEUE, queueing_lock="prune-jobs")
    async def prune_jobs_task(timestamp: int) -> None:
        await app.job_manager.delete_old_jobs(nb_hours=PRUNE_AFTER_HOURS, include_failed=True)

    return app


async def retry_stalled(app: procrastinate.App, runtime: WorkerRuntime) -> int:
    """Jobs left 'doing' by workers whose heartbeat stopped: mark their run rows failed, then retry them
    (or fail them for good after retry_max_attempts). Returns how many were retried."""
    settings = runtime.settings
    stalled = await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=settings.worker_stalled_after_s)
    retried = 0
    log = get_logger("scheduler")
    for job in stalled:
        assert job.id is not None
        if job.task_name == RUN_TASK:
            await asyncio.to_thread(_fail_runs_of, runtime.factory, str(job.task_kwargs.get("roaster", "")))
        try:
            if job.task_name == RUN_TASK and job.attempts + 1 < settings.retry_max_attempts:
                await app.job_manager.retry_job_by_id_async(job.id, retry_at=utcnow())
                retried += 1
                log.warning("stalled_run_retried", job_id=job.id, roaster=job.task_kwargs.get("roaster"))
            else:
                await app.job_manager.finish_job_by_id_async(job.id, status=Status.FAILED, delete_job=False)
                log.warning("stalled_job_failed", job_id=job.id, task=job.task_name)
        except pexc.ConnectorException:
            log.info("stalled_job_already_handled", job_id=job.id)  # another worker got there first
    return retried


def _fail_runs_of(factory: sessionmaker[Session], roaster_name: str) -> None:
    """The dead worker's run row of this roaster: 'running' → 'fail' (the job lock means no other run is live)."""
    with session_scope(factory) as session:
        roaster = session.scalar(select(Roaster).where(Roaster.name == roaster_name))
        if roaster is not None:
            catalog.fail_interrupted_runs(session, utcnow(), roaster_id=roaster.id)


# --- the worker process -----------------------------------------------------------------------------


async def _heartbeats(runtime: WorkerRuntime, info: dict[str, Any], stop: asyncio.Event) -> None:
    """Our heartbeat row + metric, and the queue depth gauge, every heartbeat_interval_s."""
    log = get_logger("scheduler")
    while not stop.is_set():
        try:
            await asyncio.to_thread(_beat_once, runtime, info)
        except Exception as exc:
            log.warning("worker_heartbeat_failed", error=f"{type(exc).__name__}: {exc}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=runtime.settings.heartbeat_interval_s)


def _beat_once(runtime: WorkerRuntime, info: dict[str, Any]) -> None:
    now = utcnow()
    with session_scope(runtime.factory) as session:
        service.beat(session, runtime.identity, now=now, info=info)
        paused, _ = service.queue_paused(session)
        depth = service.procrastinate_todo_counts(session)
    HEARTBEAT.labels(runtime.identity.metric_label).set(now.timestamp())
    for queue in ALL_QUEUES:
        QUEUE_DEPTH.labels(queue).set(depth.get(queue, 0))
    runtime.guard.sync(paused)
    if runtime.guard.tripped and not runtime.guard.persisted:
        runtime.guard.persist(runtime.factory, by=runtime.identity.instance, now=now)


async def run_worker(
    settings: Settings,
    *,
    concurrency: int | None = None,
    queues: list[str] | None = None,
    name: str | None = None,
    wait: bool = True,
    guard: StorageGuard | None = None,
) -> None:
    """Run one worker until SIGTERM/SIGINT (or, with ``wait=False``, until the queues are empty)."""
    concurrency = concurrency or settings.worker_concurrency
    identity = Identity.for_process("worker", name)
    engine = db.make_engine(settings.database_url, pool_size=concurrency + 2, max_overflow=concurrency)
    factory = db.session_factory(engine)
    runtime = WorkerRuntime(
        settings=settings,
        factory=factory,
        identity=identity,
        guard=guard if guard is not None else StorageGuard(settings),
        slots=RunSlots(conninfo(settings.database_url), settings.max_concurrent_runs),
    )
    app = build_app(settings, runtime)
    stop = asyncio.Event()
    info = {"mode": "distributed", "concurrency": concurrency, "queues": list(queues or ALL_QUEUES)}
    log = get_logger("scheduler")
    await asyncio.to_thread(_beat_once, runtime, info)
    beats = asyncio.create_task(_heartbeats(runtime, info, stop), name="worker-heartbeats")
    log.info("worker_started", instance=identity.instance, concurrency=concurrency, queues=info["queues"])
    try:
        async with app.open_async():
            options: procrastinate.app.WorkerOptions = {
                "concurrency": concurrency,
                "name": identity.instance,
                "wait": wait,
                "shutdown_graceful_timeout": settings.worker_shutdown_timeout_s,
                "update_heartbeat_interval": min(settings.heartbeat_interval_s, settings.worker_stalled_after_s / 3),
                "stalled_worker_timeout": settings.worker_stalled_after_s,
                "fetch_job_polling_interval": min(5.0, settings.heartbeat_interval_s),
                "abort_job_polling_interval": min(5.0, settings.heartbeat_interval_s),
            }
            if queues:
                options["queues"] = queues
            await app.run_worker_async(**options)
    finally:
        stop.set()
        await beats
        try:
            await asyncio.to_thread(_stopped, runtime)
        except Exception:
            log.warning("worker_stop_not_recorded", instance=identity.instance)
        engine.dispose()
        log.info("worker_stopped", instance=identity.instance)


def _stopped(runtime: WorkerRuntime) -> None:
    with session_scope(runtime.factory) as session:
        service.stop_heartbeat(session, runtime.identity, now=utcnow())
