"""Run-now for the dashboard and API, through the scheduler (``coffee_scraper/jobs/``) like ``jobs run-now``.

Distributed mode queues a procrastinate job; embedded mode marks the run due and, when this process runs the
scheduler, ticks it at once; with no scheduler anywhere (mode 'off', or a bare app without its lifespan) the run
is started here in a background thread through ``jobs.execute.execute_run`` (same safety switches).
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from coffee_scraper.catalog import service as catalog
from coffee_scraper.catalog.db import session_scope
from coffee_scraper.catalog.models import Roaster
from coffee_scraper.jobs import service as jobs
from coffee_scraper.jobs.embedded import liveness_window_s
from coffee_scraper.jobs.execute import QueuePaused, RetryableRunError, execute_run
from coffee_scraper.jobs.runtime import ModeError, resolve_mode
from coffee_scraper.observability.logging import get_logger
from coffee_scraper.pipeline.run import RunReport
from coffee_scraper.web.security import WebContext

MAX_PARALLEL_RUNS = 2  # background runs of the no-scheduler fallback at once


class RunRefused(Exception):
    """The run cannot start (paused roaster or queue, unknown roaster); ``status`` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class RunRequest:
    roaster: str
    mode: str
    started: bool
    via: str  # queue | scheduler | here | none
    message: str


class RunNow:
    """Starts runs on request; the fallback keeps one run per roaster at a time in this process."""

    def __init__(self, ctx: WebContext) -> None:
        self._ctx = ctx
        self._executor = ThreadPoolExecutor(max_workers=MAX_PARALLEL_RUNS, thread_name_prefix="run-now")
        self._lock = threading.Lock()
        self._active: dict[str, Future[RunReport | None]] = {}

    async def request(self, roaster_id: int, mode: str, scheduler: Any | None) -> RunRequest:
        """Start (or queue) a ``mode`` run of the roaster; raises ``RunRefused`` when it must not run."""
        ctx, now = self._ctx, self._ctx.now()
        name, paused_queue = await run_in_threadpool(self._check, roaster_id)
        if paused_queue is not None:
            raise RunRefused(409, f"the scraping queue is paused ({paused_queue}); resume it first")
        try:
            scheduler_mode = resolve_mode(ctx.settings)
        except ModeError:
            scheduler_mode = "off"
        if scheduler_mode == "distributed":
            from coffee_scraper.jobs.distributed import enqueue_now

            job_id = await run_in_threadpool(enqueue_now, ctx.factory, name, mode, now=now)
            if job_id is None:
                return RunRequest(name, mode, False, "queue", f"a {mode} run of {name} is already waiting in the queue")
            return RunRequest(name, mode, True, "queue", f"queued a {mode} run of {name} for the workers")
        if scheduler_mode == "embedded" and (scheduler is not None or await run_in_threadpool(self._live_scheduler)):
            await run_in_threadpool(self._mark_due, roaster_id, mode)
            if scheduler is not None:
                await scheduler.tick()  # this process's scheduler: start it now rather than at the next tick
                return RunRequest(name, mode, True, "scheduler", f"{mode} run of {name} started")
            return RunRequest(name, mode, True, "scheduler", f"asked the scheduler to run {name} ({mode})")
        if not self._start_here(name, mode):
            return RunRequest(name, mode, False, "here", f"a run of {name} is already in progress")
        return RunRequest(name, mode, True, "here", f"{mode} run of {name} started")

    def _check(self, roaster_id: int) -> tuple[str, str | None]:
        with self._ctx.factory() as session:
            roaster = session.get(Roaster, roaster_id)
            if roaster is None:
                raise RunRefused(404, f"no roaster {roaster_id}; the Scraping page lists them")
            if not roaster.active:
                raise RunRefused(
                    409, f"{roaster.name} is paused ({roaster.paused_reason or 'no reason given'}); resume it first"
                )
            paused, reason = jobs.queue_paused(session)
            return roaster.name, (reason or "no reason given") if paused else None

    def _live_scheduler(self) -> bool:
        now = self._ctx.now()
        with self._ctx.factory() as session:
            alive = jobs.live_sessions(session, now, liveness_window_s(self._ctx.settings))
            return any(h.component == "scheduler" and h.session_id in alive for h in jobs.heartbeats(session))

    def _mark_due(self, roaster_id: int, mode: str) -> None:
        with session_scope(self._ctx.factory) as session:
            roaster = catalog.get_roaster(session, roaster_id)
            jobs.request_run(session, roaster, mode, now=self._ctx.now(), settings=self._ctx.settings)

    # --- the no-scheduler fallback ------------------------------------------------------------------

    def _start_here(self, roaster: str, mode: str) -> bool:
        with self._lock:
            if roaster in self._active:
                return False
            future = self._executor.submit(self._run, roaster, mode)
            self._active[roaster] = future
        future.add_done_callback(lambda _f: self._done(roaster))
        return True

    def _run(self, roaster: str, mode: str) -> RunReport | None:
        log = get_logger("app")
        ctx = self._ctx
        try:
            report = asyncio.run(
                execute_run(roaster, mode, settings=ctx.settings, factory=ctx.factory, trigger="manual")  # type: ignore[arg-type]
            )
        except (QueuePaused, RetryableRunError) as exc:
            log.warning("run_now_not_run", roaster=roaster, mode=mode, error=str(exc))
            return None
        log.info("run_now_done", roaster=roaster, run_id=report.run_id, status=report.status)
        return report

    def _done(self, roaster: str) -> None:
        with self._lock:
            self._active.pop(roaster, None)

    def is_running(self, roaster: str) -> bool:
        """A fallback run of this roaster is queued or running in this process."""
        with self._lock:
            return roaster in self._active

    def wait(self, roaster: str, timeout: float | None = None) -> RunReport | None:
        """Block until the roaster's fallback run ends (tests and scripts); None when none is active."""
        with self._lock:
            future = self._active.get(roaster)
        return None if future is None else future.result(timeout)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
