"""The one task body both scheduler modes run: ``execute_run`` (pause checks → pipeline run → bookkeeping).

Around ``pipeline.run.run_roaster`` it adds what scheduling needs: the queue's and the roaster's pause
switches, pausing a roaster after N shop failures in a row, the storage guard that pauses the whole queue
when the database keeps failing, the JOBS metric, and the split of failures into retryable (storage,
interruption) and final (the shop's own errors, which the next cadence tick retries).
Not here: deciding when runs are due (``service``), starting them (``embedded``/``distributed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections import deque
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any, TypeVar

import httpx
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from coffee_scraper.catalog import service as catalog
from coffee_scraper.catalog.db import session_scope
from coffee_scraper.catalog.models import Roaster, utcnow
from coffee_scraper.jobs import service
from coffee_scraper.jobs.runtime import Identity
from coffee_scraper.observability import instrument
from coffee_scraper.observability.logging import get_logger
from coffee_scraper.observability.metrics import JOBS
from coffee_scraper.pipeline.run import Mode, RunReport, run_roaster
from coffee_scraper.settings import Settings
from coffee_scraper.storefronts import Fetcher

T = TypeVar("T")
OUTCOMES = ("ok", "partial", "fail", "skipped", "error", "interrupted", "paused")


class QueuePaused(Exception):
    """The queue is paused (by an operator or the storage guard): the run was not started."""

    def __init__(self, reason: str | None):
        super().__init__(reason or "the queue is paused")
        self.reason = reason


class RetryableRunError(Exception):
    """The run could not be done or recorded because of storage (or our own) errors: try it again later.

    Shop errors (404, robots, bad payloads) never raise this: they are recorded and wait for the next tick.
    """

    def __init__(self, message: str, report: RunReport | None = None):
        super().__init__(message)
        self.report = report


def _subclass_names(cls: type) -> set[str]:
    names = {cls.__name__}
    sub: type
    for sub in cls.__subclasses__():
        names |= _subclass_names(sub)
    return names


# run_roaster records an unexpected exception as kind "internal" with "<ExceptionClass>: message"
STORAGE_EXCEPTIONS = frozenset(_subclass_names(sa_exc.DBAPIError) | {"DisconnectionError", "TimeoutError"})


def is_storage_failure(report: RunReport) -> bool:
    """The run hit a database error (recorded in the report, not raised)."""
    for error in report.errors:
        kind = error.get("kind")
        if kind == "storage":
            return True
        if kind == "internal" and str(error.get("message", "")).split(":", 1)[0] in STORAGE_EXCEPTIONS:
            return True
    return False


class StorageGuard:
    """Storage error share over a process's last runs; over the threshold it pauses the queue.

    The pause is written to ``job_queue_state`` (so `coffee-scraper jobs resume` lifts it everywhere); while the
    database cannot even take that write the guard keeps this process paused on its own and retries the write
    at every tick, instead of hammering the failing database with runs.
    """

    def __init__(self, settings: Settings):
        self.ratio = settings.storage_error_pause_ratio
        self.min_runs = max(1, settings.storage_error_min_runs)
        self.window: deque[bool] = deque(maxlen=max(1, settings.storage_error_window))
        self.tripped = False
        self.persisted = False
        self.reason: str | None = None
        self.last_detail: str | None = None
        self._lock = threading.Lock()  # runs record outcomes from their own threads

    def rate(self) -> float:
        return sum(self.window) / len(self.window) if self.window else 0.0

    def record(self, storage_error: bool, detail: str | None = None) -> bool:
        """Note one run's outcome; True when this outcome trips the guard."""
        with self._lock:
            return self._record(storage_error, detail)

    def _record(self, storage_error: bool, detail: str | None) -> bool:
        self.window.append(storage_error)
        if storage_error and detail:
            self.last_detail = detail
        if self.tripped or len(self.window) < self.min_runs or self.rate() < self.ratio:
            return False
        errors = sum(self.window)
        self.tripped = True
        self.reason = (
            f"storage errors in {errors} of the last {len(self.window)} runs"
            + (f" (last: {self.last_detail[:200]})" if self.last_detail else "")
            + "; check the database, then run `coffee-scraper jobs resume`"
        )
        return True

    def persist(self, factory: sessionmaker[Session], *, by: str, now: datetime) -> bool:
        """Write the pause to the database once; False while the database refuses."""
        if not self.tripped or self.persisted:
            return self.persisted
        try:
            with session_scope(factory) as session:
                service.pause_queue(session, reason=self.reason or "storage errors", by=by, now=now)
        except Exception:
            get_logger("scheduler").warning("queue_pause_not_recorded", reason=self.reason)
            return False
        self.persisted = True
        return True

    def sync(self, db_paused: bool) -> None:
        """After an operator resumed the queue in the database, this process resumes too."""
        if self.tripped and self.persisted and not db_paused:
            self.reset()

    def reset(self) -> None:
        self.window.clear()
        self.tripped = self.persisted = False
        self.reason = None


_process_guard: StorageGuard | None = None
_ssl_context: ssl.SSLContext | None = None
_ssl_lock = threading.Lock()


def run_transport(settings: Settings) -> httpx.AsyncHTTPTransport:
    """The HTTP transport of one run's Fetcher: its own connection pool, but the process's one TLS context
    (building a context loads the CA bundle: ~70 ms, which a fresh Fetcher per run would pay every time)."""
    global _ssl_context
    with _ssl_lock:
        if _ssl_context is None:
            _ssl_context = httpx.create_ssl_context()
    per_shop = max(1, settings.per_shop_concurrency)
    limits = httpx.Limits(
        max_connections=2 * per_shop + 2,
        max_keepalive_connections=2 * per_shop + 2,
        keepalive_expiry=max(5.0, 2 * settings.request_delay_s + 5.0),
    )
    return httpx.AsyncHTTPTransport(verify=_ssl_context, limits=limits, trust_env=False)


def process_guard(settings: Settings) -> StorageGuard:
    """The guard of this process (one per scheduler or worker process)."""
    global _process_guard
    if _process_guard is None:
        _process_guard = StorageGuard(settings)
    return _process_guard


async def in_own_loop(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine on an event loop of its own, in a thread of its own.

    The pipeline does its bookkeeping with blocking database calls; on the caller's loop they would stall
    every other run of the worker and, in embedded mode, the web app (a SQLite write may wait for the lock).
    Cancelling the caller cancels the run inside its loop and waits until it has stopped, including a page
    still being written by the pipeline's page thread, so the caller can then mark the run interrupted.
    """
    started = threading.Event()
    holder: dict[str, Any] = {}

    def runner() -> T:
        loop = asyncio.new_event_loop()
        task = loop.create_task(make())
        holder["loop"], holder["task"] = loop, task
        started.set()
        try:
            return loop.run_until_complete(task)
        finally:
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    thread_run = asyncio.ensure_future(asyncio.to_thread(runner))
    try:
        return await asyncio.shield(thread_run)
    except asyncio.CancelledError:
        await asyncio.to_thread(started.wait)
        holder["loop"].call_soon_threadsafe(holder["task"].cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await thread_run
        raise


def _count(queue: str, outcome: str) -> None:
    JOBS.labels(queue, outcome).inc()


def _note_storage(
    guard: StorageGuard,
    factory: sessionmaker[Session],
    *,
    error: bool,
    detail: str | None,
    by: str,
    now: Callable[[], datetime],
) -> None:
    if guard.record(error, detail):
        get_logger("scheduler").error("queue_paused_storage_errors", reason=guard.reason, rate=round(guard.rate(), 2))
        guard.persist(factory, by=by, now=now())


async def execute_run(
    roaster_name: str,
    mode: Mode,
    *,
    settings: Settings,
    factory: sessionmaker[Session],
    fetcher: Fetcher | None = None,
    now: Callable[[], datetime] = utcnow,
    trigger: str = "schedule",
    guard: StorageGuard | None = None,
    identity: Identity | None = None,
) -> RunReport:
    """Run one roaster's ``mode`` run for a scheduler or worker, with every safety switch applied.

    ``fetcher`` None opens a fresh Fetcher for this run (shop state and politeness then come from the
    database each time, right for long-running processes). Raises ``QueuePaused`` (nothing ran),
    ``RetryableRunError`` (storage trouble: try again later) and lets ``asyncio.CancelledError`` through after
    marking the interrupted run failed; every other outcome, shop failures included, is a returned report.
    With ``fetcher`` None everything happens on an event loop and thread of its own (``in_own_loop``): the
    pipeline's blocking database calls then never stall the caller's loop (other runs, the web app).
    """

    def body(own: Fetcher | None) -> Coroutine[Any, Any, RunReport]:
        return _execute_run(
            roaster_name,
            mode,
            settings=settings,
            factory=factory,
            fetcher=own,
            now=now,
            trigger=trigger,
            guard=guard if guard is not None else process_guard(settings),
            identity=identity,
        )

    if fetcher is not None:
        return await body(fetcher)
    return await in_own_loop(lambda: body(None))


async def _execute_run(
    roaster_name: str,
    mode: Mode,
    *,
    settings: Settings,
    factory: sessionmaker[Session],
    fetcher: Fetcher | None,
    now: Callable[[], datetime],
    trigger: str,
    guard: StorageGuard,
    identity: Identity | None,
) -> RunReport:
    log = get_logger("scheduler")
    who = identity.instance if identity else "scheduler"
    queue = mode
    if guard.tripped:
        _count(queue, "paused")
        raise QueuePaused(guard.reason)
    try:
        with session_scope(factory) as session:
            paused, reason = service.queue_paused(session)
            roaster = catalog.get_roaster(session, roaster_name)
            roaster_id, active, paused_reason = roaster.id, roaster.active, roaster.paused_reason
    except catalog.CatalogError:
        raise
    except Exception as exc:
        _count(queue, "error")
        detail = f"{type(exc).__name__}: {exc}"
        _note_storage(guard, factory, error=True, detail=detail, by=who, now=now)
        raise RetryableRunError(f"could not read the roaster {roaster_name!r}: {detail}") from exc
    guard.sync(paused)
    if paused:
        _count(queue, "paused")
        raise QueuePaused(reason)
    if not active:
        _count(queue, "skipped")
        with session_scope(factory) as session:
            service.finish_schedule(session, roaster_id, mode, now=now(), status="skipped", run_id=None)
        report = RunReport(roaster=roaster_name, run_id=0, mode=mode, status="skipped")
        report.errors.append(
            {
                "kind": "paused",
                "message": f"roaster {roaster_name} is paused: {paused_reason or 'no reason given'}",
                "hint": f"`coffee-scraper jobs resume {roaster_name}` scrapes it again",
            }
        )
        return report

    log.info("job_run_start", roaster=roaster_name, mode=mode, trigger=trigger)
    try:
        if fetcher is None:
            cache = catalog.ArtifactCache(factory)
            transport = run_transport(settings)
            async with Fetcher(
                settings, cache=cache, transport=transport, on_event=instrument.record_request_event
            ) as own:
                report = await run_roaster(roaster_name, mode, settings=settings, factory=factory, fetcher=own, now=now)
        else:
            report = await run_roaster(roaster_name, mode, settings=settings, factory=factory, fetcher=fetcher, now=now)
    except asyncio.CancelledError:
        _count(queue, "interrupted")
        _mark_interrupted(factory, roaster_id, now)
        log.warning("job_run_interrupted", roaster=roaster_name, mode=mode)
        raise
    except Exception as exc:  # the run's own bookkeeping failed: the database is in trouble
        _count(queue, "error")
        detail = f"{type(exc).__name__}: {exc}"
        log.error("job_run_storage_error", roaster=roaster_name, mode=mode, error=detail)
        _note_storage(guard, factory, error=True, detail=detail, by=who, now=now)
        raise RetryableRunError(f"run of {roaster_name} ({mode}) could not be recorded: {detail}") from exc

    storage_error = is_storage_failure(report)
    _note_storage(guard, factory, error=storage_error, detail=report.error_summary, by=who, now=now)
    if storage_error:
        _count(queue, "error")
        raise RetryableRunError(
            f"run {report.run_id} of {roaster_name} hit storage errors: {report.error_summary}", report
        )
    try:
        with session_scope(factory) as session:
            service.finish_schedule(session, roaster_id, mode, now=now(), status=report.status, run_id=report.run_id)
            if report.status == "fail":
                _maybe_pause_roaster(session, settings, roaster_id, now())
    except Exception as exc:
        _count(queue, "error")
        raise RetryableRunError(f"run {report.run_id} of {roaster_name} finished but was not recorded: {exc}") from exc
    _count(queue, report.status)
    log.info("job_run_done", roaster=roaster_name, mode=mode, status=report.status, run_id=report.run_id)
    return report


def _maybe_pause_roaster(session: Session, settings: Settings, roaster_id: int, now: datetime) -> bool:
    """Pause the roaster after ``pause_after_failed_runs`` shop failures in a row (logged as a warning)."""
    n = settings.pause_after_failed_runs
    roaster = session.get(Roaster, roaster_id)
    # the pipeline's counter of failed runs in a row (reset by a good run and by `jobs resume`), and the last
    # n run rows to tell the shop's failures from ours
    if n <= 0 or roaster is None or not roaster.active or roaster.consecutive_failed_runs < n:
        return False
    streak = service.shop_failure_streak(session, roaster_id, n)
    if not streak:
        return False
    last = streak[0].error_summary or "failed"
    reason = (
        f"paused after {n} failed runs in a row (last: {last[:300]}); fix the shop or its URL, then run "
        f"`coffee-scraper jobs resume {roaster.name}`"
    )
    service.pause_roaster(session, roaster, reason=reason, now=now)
    get_logger("scheduler").warning("roaster_paused", roaster=roaster.name, failed_runs=n, last_error=last[:300])
    return True


def _mark_interrupted(factory: sessionmaker[Session], roaster_id: int, now: Callable[[], datetime]) -> None:
    """The run was cancelled (shutdown): its row must not stay 'running'."""
    try:
        with session_scope(factory) as session:
            catalog.fail_interrupted_runs(session, now(), roaster_id=roaster_id)
    except Exception:
        get_logger("scheduler").exception("interrupted_run_not_recorded", roaster_id=roaster_id)


def outcome_counts() -> dict[tuple[str, str], float]:
    """JOBS counter values by (queue, outcome), for tests and `jobs list` (this process only)."""
    out: dict[tuple[str, str], float] = {}
    for metric in JOBS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                out[(sample.labels["queue"], sample.labels["outcome"])] = sample.value
    return out
