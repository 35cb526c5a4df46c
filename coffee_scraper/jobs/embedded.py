"""The embedded scheduler: an asyncio loop inside `coffee-scraper serve` that starts due runs (default mode).

Every tick it writes its heartbeat, brings the schedules in line with the roasters' cadences, resumes runs
an earlier process claimed but never finished, claims due runs (compare-and-set, so a second scheduler on
the same database cannot take the same tick) and starts them under a semaphore of ``max_concurrent_runs``.
A roaster never has two runs at once: not in this process (a set of running roasters) and not across
processes (a younger-than-stale 'running' run row blocks the claim). All state lives in the database, so a
restart continues where the previous process stopped. The run itself is ``execute.execute_run``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from coffee_scraper.catalog import db
from coffee_scraper.catalog import service as catalog
from coffee_scraper.catalog.db import session_scope
from coffee_scraper.catalog.models import utcnow
from coffee_scraper.jobs import service
from coffee_scraper.jobs.cadence import MODES
from coffee_scraper.jobs.execute import QueuePaused, RetryableRunError, StorageGuard, execute_run, process_guard
from coffee_scraper.jobs.runtime import Identity, ModeError, resolve_mode
from coffee_scraper.observability.logging import get_logger
from coffee_scraper.observability.metrics import HEARTBEAT, QUEUE_DEPTH
from coffee_scraper.pipeline.run import Mode
from coffee_scraper.settings import Settings


@dataclass(frozen=True)
class Claimed:
    """A run this scheduler claimed and will start."""

    roaster_id: int
    roaster: str
    mode: str
    trigger: str  # schedule | manual | resume


def liveness_window_s(settings: Settings) -> float:
    """How old a scheduler's heartbeat may be before its unfinished claims count as abandoned."""
    return max(3 * settings.scheduler_tick_s, 5.0)


class EmbeddedScheduler:
    """Starts due runs in this process. ``tick()`` is one pass (tests drive it with an injected clock);
    ``start()``/``stop()`` run it every ``scheduler_tick_s`` seconds until stopped."""

    def __init__(
        self,
        settings: Settings,
        factory: sessionmaker[Session],
        *,
        now: Callable[[], datetime] = utcnow,
        identity: Identity | None = None,
        guard: StorageGuard | None = None,
    ):
        self.settings = settings
        self.factory = factory
        self.now = now
        self.identity = identity or Identity.for_process("scheduler")
        self.guard = guard if guard is not None else process_guard(settings)
        self.capacity = max(1, settings.max_concurrent_runs)
        self._slots = asyncio.Semaphore(self.capacity)
        self._running: set[int] = set()  # roaster ids claimed by this process and not finished
        self._waiting: dict[str, int] = dict.fromkeys(MODES, 0)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self.in_flight = 0
        self.peak_in_flight = 0  # most runs this process had executing at once (checked against the cap)
        self.log = get_logger("scheduler")

    # --- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Write the first heartbeat now (readiness can see the scheduler at once), then tick in the background."""
        try:
            await asyncio.to_thread(self._beat)
        except Exception as exc:  # no schema yet, database down: readiness reports it; the loop retries
            self.log.error("scheduler_first_heartbeat_failed", error=f"{type(exc).__name__}: {exc}")
        self._stop.clear()
        self._loop_task = asyncio.create_task(self._loop(), name="embedded-scheduler")
        self.log.info("scheduler_started", instance=self.identity.instance, tick_s=self.settings.scheduler_tick_s)

    async def stop(self, timeout_s: float | None = None) -> None:
        """Stop ticking; let runs finish for up to ``timeout_s`` (default worker_shutdown_timeout_s), then
        cancel the rest: their run rows are marked failed and their claims stay, so the next start resumes them."""
        self._stop.set()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        await self.drain(self.settings.worker_shutdown_timeout_s if timeout_s is None else timeout_s)
        try:
            await asyncio.to_thread(self._stopped)
        except Exception:
            self.log.exception("scheduler_stop_not_recorded")
        self.log.info("scheduler_stopped", instance=self.identity.instance)

    async def drain(self, timeout_s: float | None = None) -> None:
        """Wait for the runs this scheduler started; cancel what is left after ``timeout_s``."""
        if not self._tasks:
            return
        _done, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    async def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("scheduler_tick_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.settings.scheduler_tick_s)

    # --- one pass ----------------------------------------------------------------------------------

    async def tick(self) -> list[Claimed]:
        """Heartbeat, sync cadences, resume orphaned claims, claim due runs, start them. Returns what started."""
        claimed = await asyncio.to_thread(self._plan)
        for item in claimed:
            self._waiting[item.mode] = self._waiting.get(item.mode, 0) + 1
            task = asyncio.create_task(self._run(item), name=f"run {item.roaster} {item.mode}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return claimed

    def _beat(self) -> None:
        now = self.now()
        info = {"mode": "embedded", "running": len(self._running), "capacity": self.capacity}
        with session_scope(self.factory) as session:
            service.beat(session, self.identity, now=now, info=info)
        HEARTBEAT.labels(self.identity.metric_label).set(now.timestamp())

    def _stopped(self) -> None:
        with session_scope(self.factory) as session:
            service.stop_heartbeat(session, self.identity, now=self.now())

    def _plan(self) -> list[Claimed]:
        """The database part of a tick (runs in a thread: SQLite may wait on its write lock)."""
        now = self.now()
        if self.guard.tripped and not self.guard.persisted:  # first: the pause must reach the database
            self.guard.persist(self.factory, by=self.identity.instance, now=now)
        self._beat()
        claimed: list[Claimed] = []
        with session_scope(self.factory) as session:
            paused, _reason = service.queue_paused(session)
            self.guard.sync(paused)
            if paused or self.guard.tripped:
                self._report_depth(session, now)
                return []
            service.sync_schedules(session, self.settings, now)
        taken = set(self._running)
        with session_scope(self.factory) as session:
            alive = service.live_sessions(session, now, liveness_window_s(self.settings))
            orphans = service.orphaned_claims(session, alive=alive, own_session=self.identity.session_id)
            # our own claims with no run in this process: the release after a failed run could not be written
            lost = [
                d
                for d in service.pending_schedules(session)
                if d.claimed_by == self.identity.session_id and d.roaster_id not in self._running
            ]
            for due in orphans + lost:
                if due.roaster_id in taken:
                    continue
                if service.claim(
                    session,
                    due,
                    now=now,
                    settings=self.settings,
                    session_id=self.identity.session_id,
                    trigger="resume",
                    advance=False,
                ):
                    taken.add(due.roaster_id)
                    claimed.append(Claimed(due.roaster_id, due.roaster, due.mode, "resume"))
        with session_scope(self.factory) as session:
            for due in service.due_schedules(session, now):
                if due.roaster_id in taken:
                    continue
                if service.running_elsewhere(
                    session, due.roaster_id, now=now, stale_after_s=self.settings.run_stale_after_s
                ):
                    continue
                trigger = service.schedule_for(session, due.roaster_id, due.mode)
                how = trigger.trigger if trigger is not None and trigger.trigger == "manual" else "schedule"
                if service.claim(session, due, now=now, settings=self.settings, session_id=self.identity.session_id):
                    taken.add(due.roaster_id)
                    claimed.append(Claimed(due.roaster_id, due.roaster, due.mode, how))
            self._running.update(c.roaster_id for c in claimed)
        with session_scope(self.factory) as session:
            self._report_depth(session, now, pending=claimed)
        if claimed:
            self.log.info("scheduler_claimed", runs=[f"{c.roaster}:{c.mode}:{c.trigger}" for c in claimed])
        return claimed

    def _report_depth(self, session: Session, now: datetime, pending: list[Claimed] | None = None) -> None:
        """Due runs not started: due and unclaimed, plus claimed ones waiting for a slot in this process."""
        counts = service.embedded_due_counts(session, now)
        for item in pending or []:
            counts[item.mode] = counts.get(item.mode, 0) + 1
        for mode in MODES:
            QUEUE_DEPTH.labels(mode).set(counts.get(mode, 0) + self._waiting.get(mode, 0))

    async def _run(self, item: Claimed) -> None:
        waiting = True  # counted in tick(), when the task was created
        try:
            async with self._slots:
                self._waiting[item.mode] -= 1
                waiting = False
                self.in_flight += 1
                self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
                try:
                    await self._execute(item)
                finally:
                    self.in_flight -= 1
        finally:
            if waiting:
                self._waiting[item.mode] -= 1
            self._running.discard(item.roaster_id)

    async def _execute(self, item: Claimed) -> None:
        mode: Mode = "full" if item.mode == "full" else "price"
        try:
            await execute_run(
                item.roaster,
                mode,
                settings=self.settings,
                factory=self.factory,
                now=self.now,
                trigger=item.trigger,
                guard=self.guard,
                identity=self.identity,
            )
        except QueuePaused:
            await asyncio.to_thread(self._unclaim, item)
        except RetryableRunError as exc:
            self.log.warning("scheduled_run_will_retry", roaster=item.roaster, mode=item.mode, error=str(exc))
            await asyncio.to_thread(self._retry_later, item)
        except catalog.CatalogError:
            self.log.warning("scheduled_roaster_gone", roaster=item.roaster)
        except asyncio.CancelledError:
            raise  # the claim stays: the next scheduler start resumes this run
        except Exception:
            self.log.exception("scheduled_run_crashed", roaster=item.roaster, mode=item.mode)
            await asyncio.to_thread(self._retry_later, item)

    def _unclaim(self, item: Claimed) -> None:
        with session_scope(self.factory) as session:
            service.unclaim(session, item.roaster_id, item.mode, now=self.now())

    def _retry_later(self, item: Claimed) -> None:
        try:
            with session_scope(self.factory) as session:
                service.release_for_retry(session, item.roaster_id, item.mode, now=self.now(), settings=self.settings)
        except Exception:  # the database is down: the claim stays and a later start resumes it
            self.log.warning("retry_not_recorded", roaster=item.roaster, mode=item.mode)


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[EmbeddedScheduler | None]:
    """The embedded scheduler for the web app's lifetime when the scheduler mode is embedded (else None)."""
    log = get_logger("scheduler")
    try:
        mode = resolve_mode(settings)
    except ModeError as exc:
        log.error("scheduler_not_started", error=str(exc))
        yield None
        return
    if mode != "embedded":
        if mode == "distributed":
            log.info("scheduler_distributed", hint="runs are started by `coffee-scraper worker` processes")
        yield None
        return
    engine = db.make_engine(settings.database_url)
    scheduler = EmbeddedScheduler(settings, db.session_factory(engine))
    await scheduler.start()
    try:
        yield scheduler
    finally:
        await scheduler.stop()
        engine.dispose()
