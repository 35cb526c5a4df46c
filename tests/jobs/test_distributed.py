"""Distributed mode on real PostgreSQL: `coffee-scraper worker` processes against demo shops on 127.0.0.1.

Two workers share runs without running any twice, the per-roaster lock holds under contention, a worker killed
with SIGKILL mid-run has its run retried by another worker with the catalog left consistent, periodic
enqueueing fires once per tick across workers, and SIGTERM stops a worker gracefully.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from coffee_scraper.catalog import db, service
from coffee_scraper.catalog.models import Coffee, Roaster, ScrapeRun
from coffee_scraper.demo.catalog import make_shopify_products
from coffee_scraper.demo.server import DemoServer, DemoShop, RequestRecord
from coffee_scraper.jobs import distributed
from coffee_scraper.jobs import service as jobs
from coffee_scraper.jobs.models import Heartbeat

pytestmark = pytest.mark.pg

FAST_WORKER_ENV = {
    "COFFEE_SCRAPER_ALLOW_PRIVATE_ADDRESSES": "true",
    "COFFEE_SCRAPER_REQUEST_DELAY_S": "0.01",
    "COFFEE_SCRAPER_REQUEST_JITTER_S": "0",
    "COFFEE_SCRAPER_BACKOFF_BASE_S": "0.01",
    "COFFEE_SCRAPER_MAX_ATTEMPTS": "2",
    "COFFEE_SCRAPER_SHOPIFY_PAGE_LIMIT": "25",
    "COFFEE_SCRAPER_HEARTBEAT_INTERVAL_S": "0.5",
    "COFFEE_SCRAPER_WORKER_STALLED_AFTER_S": "2",
    "COFFEE_SCRAPER_STALLED_CHECK_CRON": "* * * * *",
    "COFFEE_SCRAPER_ENQUEUE_CRON": "0 0 1 1 *",  # effectively never, unless a test says otherwise
    "COFFEE_SCRAPER_SCHEDULER_FIRST_RUN_IMMEDIATELY": "false",
    "COFFEE_SCRAPER_WORKER_SHUTDOWN_TIMEOUT_S": "30",
    "COFFEE_SCRAPER_LOG_FORMAT": "json",
}


@pytest.fixture
def factory(pg_url: str) -> Iterator[sessionmaker[Session]]:
    db.upgrade(pg_url)
    engine = db.make_engine(pg_url)
    yield db.session_factory(engine)
    engine.dispose()


class Workers:
    """`coffee-scraper worker` subprocesses of one test; every one still alive is killed at the end."""

    def __init__(self, url: str, tmp: Path) -> None:
        self.url, self.tmp, self.procs = url, tmp, {}  # type: ignore[var-annotated]

    def start(self, name: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
        environ = {
            **os.environ,
            **FAST_WORKER_ENV,
            "COFFEE_SCRAPER_DATABASE_URL": self.url,
            "COFFEE_SCRAPER_LOG_DIR": str(self.tmp / name),
            **env,
        }
        environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "coffee_scraper.cli", "worker", "--name", name, *args],
            env=environ,
            stdout=subprocess.DEVNULL,
            stderr=open(self.tmp / f"{name}.err", "wb"),  # noqa: SIM115
        )
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        path = self.tmp / name / "scheduler.log"
        return path.read_text() if path.exists() else ""

    def stderr(self, name: str) -> str:
        return (self.tmp / f"{name}.err").read_text(errors="replace")

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def workers(pg_url: str, tmp_path: Path) -> Iterator[Workers]:
    w = Workers(pg_url, tmp_path)
    yield w
    w.stop_all()


def wait_until(check: Callable[[], bool], timeout: float, what: str, workers: Workers | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            logs = "".join(f"\n--- {n}\n{workers.stderr(n)[-3000:]}" for n in workers.procs) if workers else ""
            pytest.fail(f"timed out waiting for {what}{logs}")
        time.sleep(0.1)


def register(factory: sessionmaker[Session], server: DemoServer, names: list[str]) -> dict[str, int]:
    with db.session_scope(factory) as session:
        return {n: service.add_roaster(session, n, server.url(n), platform="shopify", currency="INR").id for n in names}


def defer(factory: sessionmaker[Session], job: Any) -> int | None:
    with db.session_scope(factory) as session:
        return distributed.defer_in_session(session, job)


def job_rows(factory: sessionmaker[Session], task: str = distributed.RUN_TASK) -> list[dict[str, Any]]:
    with factory() as session:
        rows = session.execute(
            text("SELECT id, status, attempts, args FROM procrastinate_jobs WHERE task_name = :t ORDER BY id"),
            {"t": task},
        )
        return [dict(r._mapping) for r in rows]


def finished(factory: sessionmaker[Session], n: int) -> Callable[[], bool]:
    return lambda: sum(r["status"] == "succeeded" for r in job_rows(factory)) >= n


def run_rows(factory: sessionmaker[Session]) -> list[tuple[str, str, str, Any, Any]]:
    with factory() as session:
        stmt = (
            select(Roaster.name, ScrapeRun.mode, ScrapeRun.status, ScrapeRun.started_at, ScrapeRun.finished_at)
            .join(Roaster)
            .order_by(ScrapeRun.started_at)
        )
        return [tuple(r) for r in session.execute(stmt)]  # type: ignore[misc]


def shops(n: int, products: int = 8, latency: float = 0.0) -> list[DemoShop]:
    return [
        DemoShop(f"s{i}", "shopify", make_shopify_products(products, seed=i, id_base=i * 10**6), latency_s=latency)
        for i in range(n)
    ]


def peak_overlap(spans: list[tuple[float, float]]) -> int:
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans], key=lambda e: (e[0], e[1]))
    peak = current = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak


def span(records: list[RequestRecord]) -> tuple[float, float]:
    return min(r.started for r in records), max(r.finished for r in records)


def test_two_workers_share_40_runs_none_twice_under_the_global_cap(
    factory: sessionmaker[Session], workers: Workers
) -> None:
    with DemoServer(shops(40, products=3, latency=0.02)) as server:
        names = server.shop_names
        ids = register(factory, server, names)
        for w in ("w1", "w2"):
            workers.start(w, "--concurrency", "4", COFFEE_SCRAPER_MAX_CONCURRENT_RUNS="3")
        for i, name in enumerate(names):
            assert defer(factory, distributed.run_job(ids[name], name, "price" if i % 2 else "full")) is not None
        wait_until(finished(factory, 40), 60, "40 runs", workers)
        spans = [span(server.requests(n)) for n in names]
        for proc in workers.procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in workers.procs.values():
            assert proc.wait(30) == 0
    runs = run_rows(factory)
    assert sorted(r[0] for r in runs) == sorted(names)  # every roaster exactly once
    assert {r[2] for r in runs} == {"ok"}
    done = {w: workers.log(w).count('"job_run_done"') for w in ("w1", "w2")}
    assert sum(done.values()) == 40 and min(done.values()) > 0, done  # both workers took a share
    assert peak_overlap(spans) <= 3  # max_concurrent_runs across both workers (4 + 4 slots)
    with factory() as session:
        beats = {h.instance: h for h in session.scalars(select(Heartbeat))}
        assert set(beats) == {"w1", "w2"} and all(h.stopped_at is not None for h in beats.values())
        assert jobs.stale_heartbeats(session, beats["w1"].last_beat_at, 0) == []  # stopped: never stale


def test_lock_per_roaster_holds_under_contention_and_price_goes_first(
    factory: sessionmaker[Session], workers: Workers
) -> None:
    with DemoServer(shops(1, products=30, latency=0.03)) as server:
        ids = register(factory, server, ["s0"])
        for i in range(6):  # six runs of one roaster, queued together (no queueing lock: all six stay)
            mode = "full" if i < 3 else "price"
            job = distributed.run_job(ids["s0"], "s0", mode).evolve(queueing_lock=None)
            assert defer(factory, job) is not None
        for w in ("w1", "w2"):
            workers.start(w, "--concurrency", "4")
        wait_until(finished(factory, 6), 60, "6 runs", workers)
    runs = run_rows(factory)
    assert [r[1] for r in runs] == ["price"] * 3 + ["full"] * 3  # priority: price runs first
    assert all(r[2] == "ok" for r in runs)
    for earlier, later in itertools.pairwise(runs):
        assert earlier[4] <= later[3], (earlier, later)  # one run of the roaster at a time, never overlapping


def test_worker_killed_mid_run_is_retried_by_another_and_catalog_is_whole(
    factory: sessionmaker[Session], workers: Workers
) -> None:
    products = make_shopify_products(200, seed=21)
    with DemoServer([DemoShop("slow", "shopify", products, latency_s=0.25)]) as server:
        ids = register(factory, server, ["slow"])
        env = {"COFFEE_SCRAPER_SHOPIFY_PAGE_LIMIT": "20", "COFFEE_SCRAPER_STALLED_CHECK_CRON": "* * * * * */1"}
        first = workers.start("w1", **env)
        assert defer(factory, distributed.run_job(ids["slow"], "slow", "full")) is not None

        def coffees() -> int:
            with factory() as session:
                return int(session.scalar(select(func.count()).select_from(Coffee)) or 0)

        wait_until(lambda: coffees() >= 40, 60, "the first pages", workers)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        partial = coffees()
        assert 40 <= partial < 200 and partial % 20 == 0  # whole pages only
        workers.start("w2", **env)
        wait_until(finished(factory, 1), 60, "the retried run", workers)
    with factory() as session:
        stored = session.scalars(select(Coffee)).all()
        assert len(stored) == 200
        by_id = {str(p["id"]): p for p in products}
        assert all(len(c.variants) == len(by_id[c.platform_product_id]["variants"]) for c in stored)
    assert [r[2] for r in run_rows(factory)] == ["fail", "ok"]  # the dead worker's run was closed, not left running
    (job,) = job_rows(factory)
    assert job["attempts"] == 2 and job["status"] == "succeeded"  # the killed try + the retry
    assert "stalled_run_retried" in workers.log("w2")


def test_periodic_enqueue_fires_once_per_tick_across_two_workers(
    factory: sessionmaker[Session], workers: Workers
) -> None:
    every_second = "* * * * * */1"
    with DemoServer(shops(3, products=4)) as server:
        names = server.shop_names
        register(factory, server, names)
        with db.session_scope(factory) as session:
            for roaster in session.scalars(select(Roaster)):
                roaster.price_cadence = every_second
        env = {"COFFEE_SCRAPER_ENQUEUE_CRON": every_second}
        for w in ("w1", "w2"):
            workers.start(w, "--concurrency", "2", **env)
        wait_until(lambda: len({r["args"]["timestamp"] for r in job_rows(factory, distributed.ENQUEUE_TASK)}) >= 3,
                   60, "three enqueue ticks", workers)  # fmt: skip
        for proc in workers.procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in workers.procs.values():
            assert proc.wait(30) == 0
    ticks = [r["args"]["timestamp"] for r in job_rows(factory, distributed.ENQUEUE_TASK)]
    assert len(ticks) == len(set(ticks))  # one enqueue job per tick, though both workers defer periodic tasks
    runs = job_rows(factory)
    dues = [(r["args"]["roaster"], r["args"]["due"]) for r in runs]
    assert len(dues) == len(set(dues))  # no due tick of a roaster was enqueued twice
    assert {r for r, _ in dues} == set(names)
    with factory() as session:
        stmt = select(Roaster.name, func.count(ScrapeRun.id)).join(ScrapeRun).group_by(Roaster.name)
        per_roaster = {name: n for name, n in session.execute(stmt)}
    ran = [r for r in runs if r["status"] == "succeeded"]
    assert sum(per_roaster.values()) == len(ran)  # every run row belongs to one enqueued job


def test_sigterm_finishes_or_releases_the_current_run(factory: sessionmaker[Session], workers: Workers) -> None:
    products = make_shopify_products(40, seed=31)
    with DemoServer([DemoShop("slow", "shopify", products, latency_s=0.2)]) as server:
        ids = register(factory, server, ["slow"])
        page10 = {"COFFEE_SCRAPER_SHOPIFY_PAGE_LIMIT": "10"}

        def running() -> bool:
            return any(r[2] == "running" for r in run_rows(factory))

        # 1. enough grace: the run finishes, then the worker exits
        patient = workers.start("patient", **page10)
        defer(factory, distributed.run_job(ids["slow"], "slow", "full"))
        wait_until(running, 30, "the run to start", workers)
        patient.send_signal(signal.SIGTERM)
        assert patient.wait(60) == 0
        assert [r[2] for r in run_rows(factory)] == ["ok"]
        assert [r["status"] for r in job_rows(factory)] == ["succeeded"]

        # 2. too little grace: the run is released back to the queue and its row closed
        hasty = workers.start("hasty", COFFEE_SCRAPER_WORKER_SHUTDOWN_TIMEOUT_S="0.3", **page10)
        defer(factory, distributed.run_job(ids["slow"], "slow", "price"))
        wait_until(running, 30, "the second run to start", workers)
        hasty.send_signal(signal.SIGTERM)
        assert hasty.wait(60) == 0
        assert [r[2] for r in run_rows(factory)] == ["ok", "fail"]  # interrupted, not left 'running'
        released = job_rows(factory)[-1]
        assert released["status"] == "todo" and released["attempts"] == 1

        # 3. the released run is done by the next worker
        workers.start("next", "--one-shot", **page10).wait(60)
        assert [r[2] for r in run_rows(factory)] == ["ok", "fail", "ok"]
    with factory() as session:
        beats = {h.instance: h.stopped_at for h in session.scalars(select(Heartbeat))}
    assert set(beats) == {"patient", "hasty", "next"} and all(beats.values())
