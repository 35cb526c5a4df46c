"""The embedded scheduler on SQLite with an injected clock: due runs start once, restarts resume, caps hold.

Real demo shops on 127.0.0.1, a real SQLite file, the real pipeline; only time is injected (``Clock``), so
cadence ticks are reached by moving the clock instead of waiting.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session, sessionmaker

from coffee_scraper.catalog import db, service
from coffee_scraper.catalog.models import Coffee, Roaster, ScrapeRun
from coffee_scraper.demo.catalog import make_shopify_products
from coffee_scraper.demo.server import DemoServer, DemoShop, Fault, RequestRecord
from coffee_scraper.jobs import service as jobs
from coffee_scraper.jobs.embedded import EmbeddedScheduler, liveness_window_s
from coffee_scraper.jobs.execute import StorageGuard
from coffee_scraper.jobs.runtime import Identity
from coffee_scraper.observability.metrics import JOBS, QUEUE_DEPTH
from coffee_scraper.settings import Settings
from tests.support import fast_settings, free_port

T0 = datetime(2026, 3, 2, 10, 1, tzinfo=UTC)
EVERY_10_MIN = "*/10 * * * *"


class Clock:
    def __init__(self, start: datetime) -> None:
        self.t = start

    def __call__(self) -> datetime:
        return self.t

    def set(self, t: datetime) -> None:
        self.t = t


@pytest.fixture
def factory(sqlite_url: str) -> Iterator[sessionmaker[Session]]:
    db.upgrade(sqlite_url)
    engine = db.make_engine(sqlite_url)
    yield db.session_factory(engine)
    engine.dispose()


def settings_for(url: str, **extra: object) -> Settings:
    values: dict[str, object] = {"scheduler_first_run_immediately": False, "max_concurrent_runs": 8}
    values.update(extra)
    return fast_settings(url, **values)


def add(factory: sessionmaker[Session], server: DemoServer, *names: str, price: str | None = EVERY_10_MIN) -> None:
    with db.session_scope(factory) as session:
        for name in names:
            service.add_roaster(
                session, name, server.url(name), platform="shopify", currency="INR", price_cadence=price
            )


def shop(name: str, n: int = 10, seed: int = 1, **kw: object) -> DemoShop:
    return DemoShop(name, "shopify", make_shopify_products(n, seed=seed, id_base=seed * 10**6), **kw)  # type: ignore[arg-type]


def runs(factory: sessionmaker[Session]) -> list[tuple[str, str, str]]:
    with factory() as session:
        rows = session.execute(
            select(Roaster.name, ScrapeRun.mode, ScrapeRun.status).join(Roaster).order_by(ScrapeRun.id)
        )
        return [(r, m, s) for r, m, s in rows]


def scheduler(settings: Settings, factory: sessionmaker[Session], clock: Clock, name: str = "a") -> EmbeddedScheduler:
    return EmbeddedScheduler(
        settings, factory, now=clock, identity=Identity("scheduler", f"test-{name}"), guard=StorageGuard(settings)
    )


async def tick_and_drain(s: EmbeddedScheduler) -> list[str]:
    claimed = await s.tick()
    await s.drain()
    return sorted(f"{c.roaster}:{c.mode}" for c in claimed)


def test_due_runs_start_once_and_missed_ticks_coalesce(factory: sessionmaker[Session], sqlite_url: str) -> None:
    clock = Clock(T0)
    settings = settings_for(sqlite_url)
    with DemoServer([shop("a", seed=1), shop("b", seed=2), shop("c", seed=3)]) as server:
        add(factory, server, "a", "b", "c")

        async def scenario() -> None:
            first, second = scheduler(settings, factory, clock, "a"), scheduler(settings, factory, clock, "b")
            assert await tick_and_drain(first) == []  # 10:01: next price runs at 10:10, full on the 1st of April
            with factory() as session:
                views = {(v.roaster, v.mode): v for v in jobs.schedule_views(session, settings, clock())}
            assert views[("a", "price")].next_due_at == datetime(2026, 3, 2, 10, 10, tzinfo=UTC)
            assert views[("a", "full")].next_due_at == datetime(2026, 4, 1, 3, 0, tzinfo=UTC)
            clock.set(datetime(2026, 3, 2, 10, 10, tzinfo=UTC))
            assert await tick_and_drain(first) == ["a:price", "b:price", "c:price"]
            assert await tick_and_drain(first) == []  # the same tick never starts twice
            assert await tick_and_drain(second) == []  # nor in another scheduler on the same database
            clock.set(datetime(2026, 3, 2, 10, 45, tzinfo=UTC))  # 10:20, 10:30 and 10:40 were missed
            both = await asyncio.gather(second.tick(), first.tick())
            await first.drain()
            await second.drain()
            assert sorted(f"{c.roaster}:{c.mode}" for batch in both for c in batch) == [
                "a:price",
                "b:price",
                "c:price",
            ]

        asyncio.run(scenario())
    assert sorted(runs(factory)) == sorted([(n, "price", "ok") for n in "abc"] * 2)
    with factory() as session:
        views = {(v.roaster, v.mode): v for v in jobs.schedule_views(session, settings, clock())}
        assert views[("b", "price")].next_due_at == datetime(2026, 3, 2, 10, 50, tzinfo=UTC)
        assert views[("b", "price")].last_status == "ok" and views[("b", "price")].pending_since is None


def test_first_full_run_of_a_new_roaster_is_immediate(factory: sessionmaker[Session], sqlite_url: str) -> None:
    clock = Clock(T0)
    settings = settings_for(sqlite_url, scheduler_first_run_immediately=True)
    with DemoServer([shop("new", seed=4)]) as server:
        add(factory, server, "new", price=None)
        s = scheduler(settings, factory, clock)
        assert asyncio.run(tick_and_drain(s)) == ["new:full"]
        assert asyncio.run(tick_and_drain(s)) == []  # it ran: the next full run waits for the cron
    assert runs(factory) == [("new", "full", "ok")]


def _coffees(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return int(session.scalar(select(func.count()).select_from(Coffee)) or 0)


def test_restart_resumes_the_interrupted_run_without_rerunning_finished_ones(
    factory: sessionmaker[Session], sqlite_url: str
) -> None:
    clock = Clock(T0)
    settings = settings_for(sqlite_url, shopify_page_limit=10)
    shops = [shop("slow", n=80, seed=5, latency_s=0.15), shop("quick", seed=6)]
    with DemoServer(shops) as server:
        add(factory, server, "slow", "quick")

        async def first_life() -> None:
            s = scheduler(settings, factory, clock, "first")
            await s.tick()  # schedules: due at 10:10
            clock.set(datetime(2026, 3, 2, 10, 10, tzinfo=UTC))
            assert sorted(c.roaster for c in await s.tick()) == ["quick", "slow"]
            deadline = time.monotonic() + 30
            while _coffees(factory) < 10 + 20 and time.monotonic() < deadline:  # quick done, slow 2+ pages in
                await asyncio.sleep(0.05)
            await s.drain(timeout_s=0)  # the process dies here: slow's run is cut off mid-catalog
            # (no stop(): its heartbeat row stays, as after a crash)

        asyncio.run(first_life())
        assert sorted(runs(factory)) == [("quick", "price", "ok"), ("slow", "price", "fail")]
        assert 20 <= _coffees(factory) - 10 < 80

        async def second_life() -> None:
            s = scheduler(settings, factory, clock, "second")
            assert await tick_and_drain(s) == []  # the first process's heartbeat is still fresh: not orphaned yet
            clock.set(clock() + timedelta(seconds=liveness_window_s(settings) + 1))
            assert await tick_and_drain(s) == ["slow:price"]  # resumed once; quick already ran this tick
            assert await tick_and_drain(s) == []

        asyncio.run(second_life())
    assert sorted(runs(factory)) == [("quick", "price", "ok"), ("slow", "price", "fail"), ("slow", "price", "ok")]
    assert _coffees(factory) == 90
    with factory() as session:
        assert session.scalar(select(func.count()).where(ScrapeRun.status == "running")) == 0


def _overlap(spans: list[tuple[float, float]]) -> int:
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans], key=lambda e: (e[0], e[1]))
    peak = current = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak


def _span(records: list[RequestRecord]) -> tuple[float, float]:
    return min(r.started for r in records), max(r.finished for r in records)


def test_global_cap_of_concurrent_runs(factory: sessionmaker[Session], sqlite_url: str) -> None:
    clock = Clock(T0)
    settings = settings_for(sqlite_url, max_concurrent_runs=2, shopify_page_limit=5)
    names = [f"s{i}" for i in range(6)]
    with DemoServer([shop(n, n=15, seed=10 + i, latency_s=0.05) for i, n in enumerate(names)]) as server:
        add(factory, server, *names)
        s = scheduler(settings, factory, clock)
        asyncio.run(s.tick())
        clock.set(datetime(2026, 3, 2, 10, 10, tzinfo=UTC))
        assert len(asyncio.run(tick_and_drain(s))) == 6
        spans = [_span(server.requests(n)) for n in names]
    assert s.peak_in_flight == 2
    assert _overlap(spans) <= 2  # seen from the shops' side: never more than two shops being scraped
    assert sorted(runs(factory)) == sorted((n, "price", "ok") for n in names)


def test_roaster_paused_after_three_shop_failures_in_a_row(factory: sessionmaker[Session], sqlite_url: str) -> None:
    clock = Clock(T0)
    settings = settings_for(sqlite_url)
    gone = shop("gone", seed=7, faults=[Fault("status", path_prefix="/products.json", status=404, times=-1)])
    with DemoServer([gone, shop("fine", seed=8)]) as server:
        add(factory, server, "gone", "fine")
        s = scheduler(settings, factory, clock)
        asyncio.run(s.tick())
        for minute in (10, 20, 30):
            clock.set(datetime(2026, 3, 2, 10, minute, tzinfo=UTC))
            assert asyncio.run(tick_and_drain(s)) == ["fine:price", "gone:price"]
            with factory() as session:
                paused = jobs.paused_roasters(session)
            assert [p.name for p in paused] == ([] if minute < 30 else ["gone"])
        assert "3 failed runs in a row" in (paused[0].reason or "") and "jobs resume gone" in (paused[0].reason or "")
        assert paused[0].paused_at == clock()
        clock.set(datetime(2026, 3, 2, 10, 40, tzinfo=UTC))
        assert asyncio.run(tick_and_drain(s)) == ["fine:price"]  # a paused roaster is not scheduled
        with db.session_scope(factory) as session:
            assert jobs.resume_roaster(session, service.get_roaster(session, "gone")) is True
        clock.set(datetime(2026, 3, 2, 10, 50, tzinfo=UTC))
        assert asyncio.run(tick_and_drain(s)) == ["fine:price", "gone:price"]
    statuses = [st for name, _, st in runs(factory) if name == "gone"]
    assert statuses == ["fail", "fail", "fail", "fail"]
    with factory() as session:  # the streak was forgotten on resume: one failure since is no pause
        assert session.scalar(select(Roaster.active).where(Roaster.name == "gone")) is True


def test_storage_errors_pause_the_queue_until_resumed(sqlite_url: str) -> None:
    """Writes start failing (SQLite connections turned read-only) after runs were claimed: the guard pauses
    the queue; once the database takes writes again the pause is recorded and nothing runs until
    `jobs resume`; then the interrupted claims run."""
    clock = Clock(T0)
    settings = settings_for(sqlite_url, storage_error_window=4, storage_error_min_runs=4)
    names = ["r1", "r2", "r3", "r4"]
    db.upgrade(sqlite_url)
    read_only = {"on": False}
    engine = db.make_engine(sqlite_url)

    @event.listens_for(engine, "connect")
    def _query_only(conn: Any, _record: Any) -> None:
        if read_only["on"]:
            conn.execute("PRAGMA query_only=ON")

    factory = db.session_factory(engine)

    def writes(on: bool) -> None:
        read_only["on"] = not on
        engine.dispose()  # new connections get (or lose) the pragma

    errors_before = JOBS.labels("price", "error")._value.get()
    with DemoServer([shop(n, seed=20 + i) for i, n in enumerate(names)]) as server:
        add(factory, server, *names)
        s = scheduler(settings, factory, clock)

        async def break_after_claiming() -> None:
            await s.tick()
            clock.set(datetime(2026, 3, 2, 10, 10, tzinfo=UTC))
            claimed = await s.tick()
            assert len(claimed) == 4
            assert QUEUE_DEPTH.labels("price")._value.get() == 4  # claimed, not started yet
            writes(False)  # the runs start only now
            await s.drain()

        asyncio.run(break_after_claiming())
        assert s.guard.tripped and not s.guard.persisted  # the pause itself could not be written yet
        assert JOBS.labels("price", "error")._value.get() - errors_before == 4
        clock.set(datetime(2026, 3, 2, 10, 11, tzinfo=UTC))
        with pytest.raises(Exception, match="readonly"):
            asyncio.run(s.tick())  # not even a heartbeat gets through: nothing is started
        writes(True)
        clock.set(datetime(2026, 3, 2, 10, 30, tzinfo=UTC))
        assert asyncio.run(tick_and_drain(s)) == []  # the pause is recorded first; nothing runs
        with factory() as session:
            paused, reason = jobs.queue_paused(session)
        assert paused and reason and "storage errors in 4 of the last 4 runs" in reason and "jobs resume" in reason
        assert asyncio.run(tick_and_drain(s)) == []  # still paused
        with db.session_scope(factory) as session:
            assert jobs.resume_queue(session, now=clock()) is True
        assert asyncio.run(tick_and_drain(s)) == [f"{n}:price" for n in names]  # the four claims finally run
    assert [st for _, _, st in runs(factory)] == ["ok"] * 4  # the failed attempts never got as far as a run row
    assert not s.guard.tripped
    engine.dispose()


def test_serve_killed_mid_run_resumes_it_after_restart(tmp_path: Path) -> None:
    """The real thing: `coffee-scraper serve` (embedded scheduler, real clock) is SIGKILLed mid-run; the next
    `serve` marks the run failed, runs it again once, and the catalog ends whole."""
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    products = make_shopify_products(60, seed=41)
    with DemoServer([DemoShop("slow", "shopify", products, latency_s=0.15)]) as server:
        db.upgrade(url)
        engine = db.make_engine(url)
        factory = db.session_factory(engine)
        add(factory, server, "slow", price=None)  # never ran: its first full run is due at once
        env = {
            **os.environ,
            "COFFEE_SCRAPER_DATABASE_URL": url,
            "COFFEE_SCRAPER_LOG_DIR": str(tmp_path / "logs"),
            "COFFEE_SCRAPER_ALLOW_PRIVATE_ADDRESSES": "true",
            "COFFEE_SCRAPER_REQUEST_DELAY_S": "0",
            "COFFEE_SCRAPER_SHOPIFY_PAGE_LIMIT": "10",
            "COFFEE_SCRAPER_SCHEDULER_TICK_S": "0.5",
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)

        def serve() -> subprocess.Popen[bytes]:
            cmd = [sys.executable, "-m", "coffee_scraper.cli", "serve", "--port", str(free_port())]
            return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def wait(check: Callable[[], bool], what: str) -> None:
            deadline = time.monotonic() + 60
            while not check():
                assert time.monotonic() < deadline, f"timed out waiting for {what}: {runs(factory)}"
                time.sleep(0.05)

        first = serve()
        try:
            wait(lambda: _coffees(factory) >= 20, "the first pages")
        finally:
            first.kill()
            first.wait(10)
        assert runs(factory) == [("slow", "full", "running")]  # killed: nobody closed the run
        assert 20 <= _coffees(factory) < 60
        second = serve()
        try:
            wait(lambda: ("slow", "full", "ok") in runs(factory), "the resumed run")
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a clean shutdown
        assert runs(factory) == [("slow", "full", "fail"), ("slow", "full", "ok")]
        assert _coffees(factory) == 60
        with factory() as session:
            schedule = jobs.schedule_for(session, 1, "full")
            assert schedule is not None and schedule.pending_since is None and schedule.last_status == "ok"
            assert jobs.stale_heartbeats(session, datetime.now(UTC) + timedelta(days=1), 60) == []
        engine.dispose()
