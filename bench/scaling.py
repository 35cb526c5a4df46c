"""Distributed-mode scaling: 500 demo shops run by 1, 2 and 4 `coffee-scraper worker` processes on PostgreSQL.

For each worker count: a fresh PostgreSQL database (127.0.0.1:5432), 500 roasters pointing at demo shops
served by their own processes, N long-running workers (started and heartbeating before the clock starts),
then every roaster's run deferred at once and timed until the last job succeeded. Two passes: ``full``
(first load: every product inserted) and ``price`` (the weekly refresh: same catalogs, unchanged products
are only marked seen). Prints runs/s, wall time and the machine's CPU use during each pass.

`python -m bench.scaling [--shops 500 --products 10 --workers 1,2,4 --concurrency 8 --delay 0.01]`
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import func, select, text

from coffee_scraper.catalog import db, service
from coffee_scraper.catalog.db import session_scope
from coffee_scraper.demo.catalog import make_shopify_products
from coffee_scraper.demo.server import DemoServer, DemoShop
from coffee_scraper.jobs import distributed
from coffee_scraper.jobs.models import Heartbeat

from ._common import pg_database


def serve(shops: list[DemoShop], conn: Connection) -> None:
    """Child process: serve the shops until told to stop."""
    with DemoServer(shops) as server:
        conn.send({s.name: server.url(s.name) for s in shops})
        conn.recv()


def start_servers(shops: list[DemoShop], processes: int) -> tuple[dict[str, str], list[Any]]:
    urls: dict[str, str] = {}
    handles = []
    for i in range(processes):
        part = shops[i::processes]
        parent, child = mp.Pipe()
        proc = mp.get_context("fork").Process(target=serve, args=(part, child), daemon=True)
        proc.start()
        urls.update(parent.recv())
        handles.append((proc, parent))
    return urls, handles


def worker_env(url: str, log_dir: Path, delay: float) -> dict[str, str]:
    env = {
        **os.environ,
        "COFFEE_SCRAPER_DATABASE_URL": url,
        "COFFEE_SCRAPER_LOG_DIR": str(log_dir),
        "COFFEE_SCRAPER_LOG_FORMAT": "json",
        "COFFEE_SCRAPER_ALLOW_PRIVATE_ADDRESSES": "true",
        "COFFEE_SCRAPER_REQUEST_DELAY_S": str(delay),
        "COFFEE_SCRAPER_REQUEST_JITTER_S": "0",
        "COFFEE_SCRAPER_MAX_CONCURRENT_RUNS": "0",  # measure the workers, not the global cap
        "COFFEE_SCRAPER_ENQUEUE_CRON": "0 0 1 1 *",  # runs are deferred by the benchmark
        "COFFEE_SCRAPER_HEARTBEAT_INTERVAL_S": "2",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def command(concurrency: int, index: int) -> list[str]:
    cli = [sys.executable, "-m", "coffee_scraper.cli", "worker"]
    return [*cli, "--concurrency", str(concurrency), "--name", f"bench-{index}"]


def succeeded(factory: Any) -> int:
    with factory() as session:
        return int(
            session.scalar(
                text("SELECT count(*) FROM procrastinate_jobs WHERE task_name = :t AND status = 'succeeded'"),
                {"t": distributed.RUN_TASK},
            )
            or 0
        )


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def postgres_cpu() -> dict[int, float]:
    """CPU seconds of every PostgreSQL process (other databases' work on the server is included)."""
    out: dict[int, float] = {}
    for proc in psutil.process_iter(["name", "cpu_times"]):
        if proc.info["name"] == "postgres" and proc.info["cpu_times"] is not None:
            out[proc.pid] = proc.info["cpu_times"].user + proc.info["cpu_times"].system
    return out


def transactions(factory: Any) -> int:
    with factory() as session:
        return int(
            session.scalar(text("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")) or 0
        )


def one_pass(factory: Any, ids: dict[str, int], mode: str, workers: list[int], servers: list[int]) -> dict[str, float]:
    """Defer every roaster's ``mode`` run at once; time it and the CPU each party spent per run."""
    before = succeeded(factory)
    pg0 = postgres_cpu()
    tx0 = transactions(factory)
    cpu0 = (cpu_seconds(workers), cpu_seconds(servers))
    load0 = os.getloadavg()[0]
    psutil.cpu_percent(None)
    t0 = time.perf_counter()
    with session_scope(factory) as session:
        for name, roaster_id in ids.items():
            distributed.defer_in_session(session, distributed.run_job(roaster_id, name, mode))
    while succeeded(factory) - before < len(ids):
        time.sleep(0.1)
    wall = time.perf_counter() - t0
    cpu = psutil.cpu_percent(None)
    cpu1 = (cpu_seconds(workers), cpu_seconds(servers))
    pg_s = sum(v - pg0.get(pid, 0.0) for pid, v in postgres_cpu().items())
    time.sleep(0.6)  # pg_stat_database is updated by the backends about every 0.5 s
    tx = transactions(factory) - tx0
    n = len(ids)
    return {
        "wall": wall,
        "runs_per_s": n / wall,
        "cpu": cpu,
        "worker_ms": (cpu1[0] - cpu0[0]) / n * 1000,
        "server_ms": (cpu1[1] - cpu0[1]) / n * 1000,
        "postgres_ms": pg_s / n * 1000,
        "tx_per_run": tx / n,
        "load": (load0 + os.getloadavg()[0]) / 2,
    }


def run_for(
    workers: int, a: argparse.Namespace, urls: dict[str, str], servers: list[int], tmp: Path
) -> dict[str, dict[str, float]]:
    with pg_database() as url:
        if url is None:
            sys.exit("no PostgreSQL on 127.0.0.1:5432 (see bench/_common.py)")
        db.upgrade(url)
        engine = db.make_engine(url)
        factory = db.session_factory(engine)
        with session_scope(factory) as session:
            ids = {
                name: service.add_roaster(session, name, shop_url, platform="shopify", currency="INR").id
                for name, shop_url in urls.items()
            }
        env = worker_env(url, tmp / f"w{workers}", a.delay)
        procs = [
            subprocess.Popen(command(a.concurrency, i), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for i in range(workers)
        ]
        deadline = time.monotonic() + 120
        while True:
            with factory() as session:
                ready = session.scalar(
                    select(func.count()).select_from(Heartbeat).where(Heartbeat.stopped_at.is_(None))
                )
            if ready == workers:
                break
            if time.monotonic() > deadline:
                sys.exit("workers did not start")
            time.sleep(0.2)
        try:
            pids = [p.pid for p in procs]
            results = {mode: one_pass(factory, ids, mode, pids, servers) for mode in ("full", "price")}
            with factory() as session:
                bad = session.scalar(text("SELECT count(*) FROM scrape_runs WHERE status <> 'ok'"))
            results["full"]["not_ok"] = float(bad or 0)
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(60)
            engine.dispose()
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--shops", type=int, default=500)
    p.add_argument("--products", type=int, default=10, help="products per shop (one catalog page)")
    p.add_argument("--workers", default="1,2,4")
    p.add_argument("--concurrency", type=int, default=8, help="runs at once per worker process")
    p.add_argument("--delay", type=float, default=0.01, help="politeness delay between requests to one shop")
    p.add_argument("--servers", type=int, default=2, help="demo server processes")
    a = p.parse_args()
    shops = [
        DemoShop(f"shop{i:03d}", "shopify", make_shopify_products(a.products, seed=i, id_base=i * 10**6))
        for i in range(a.shops)
    ]
    urls, handles = start_servers(shops, a.servers)
    print(f"cores={psutil.cpu_count()} shops={a.shops} products/shop={a.products} concurrency/worker={a.concurrency}")
    print("| workers | pass | wall s | runs/s | CPU % | CPU ms/run: workers | shops | PostgreSQL | tx/run | load |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n in [int(x) for x in a.workers.split(",")]:
                results = run_for(n, a, urls, [proc.pid for proc, _ in handles], Path(tmp))
                for mode in ("full", "price"):
                    r = results[mode]
                    print(
                        f"| {n} | {mode} | {r['wall']:.1f} | {r['runs_per_s']:.1f} | {r['cpu']:.0f} | "
                        f"{r['worker_ms']:.0f} | {r['server_ms']:.0f} | {r['postgres_ms']:.0f} | "
                        f"{r['tx_per_run']:.0f} | {r['load']:.1f} |",
                        flush=True,
                    )
                if results["full"].get("not_ok"):
                    print(f"  ({results['full']['not_ok']:.0f} runs not ok)")
    finally:
        for proc, conn in handles:
            conn.send("stop")
            proc.join(5)


if __name__ == "__main__":
    main()
