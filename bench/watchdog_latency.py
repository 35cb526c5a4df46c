"""Condition → first notification: PostgreSQL stopped → first Slack message at a local peer, real loops.

Each sample: a throwaway PostgreSQL cluster is the catalog database, a fresh SQLite file the incident store; the
watchdog loop (``Watchdog.start``, interval shortened with ``--interval``) and the incident runner loop
(``IncidentRunner.start``) run as in ``serve``; a local Slack incoming-webhook peer records when the incident's
first message arrives. The clock starts when ``pg_ctl stop`` has returned (the database is down) and stops when
the peer receives the 🚨 message. By default DatabaseDown's ``for: 2m`` is set to 0 s (as the real-Prometheus
test does), so the number is detection + ingestion + delivery; ``--keep-for`` measures with the real 2 minutes.

    python -m bench.watchdog_latency [--n 8] [--interval 5] [--keep-for]

Target (issue 6): ≤ one evaluation interval + 2 s. Results go in bench/README.md by hand.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import uvicorn
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from coffee_scraper.catalog import db
from coffee_scraper.incidents.alert_config import AlertSettings, load_alert_config
from coffee_scraper.incidents.runner import IncidentRunner
from coffee_scraper.incidents.store import incident_store_settings
from coffee_scraper.incidents.watchdog import Watchdog
from coffee_scraper.settings import Settings

INCIDENT_ID = re.compile(r"INC-\d{8}-\d{3,}")


class SlackPeer:
    """An incoming webhook that notes when the first message of each incident arrived (monotonic seconds)."""

    def __init__(self) -> None:
        self.first: dict[str, float] = {}
        self.cond = threading.Condition()

        async def hook(request: Request) -> Response:
            body = (await request.body()).decode("utf-8", "replace")
            now = time.monotonic()
            with self.cond:
                for iid in INCIDENT_ID.findall(body):
                    self.first.setdefault(iid, now)
                self.cond.notify_all()
            return PlainTextResponse("ok")

        self.app = Starlette(routes=[Route("/services/T/B/X", hook, methods=["POST"])])

    def wait_any(self, timeout: float) -> tuple[str, float]:
        with self.cond:
            if not self.cond.wait_for(lambda: bool(self.first), timeout):
                raise TimeoutError(f"no Slack message within {timeout} s")
            iid = min(self.first, key=lambda k: self.first[k])
            return iid, self.first[iid]

    def reset(self) -> None:
        with self.cond:
            self.first.clear()


def serve(app: Any) -> tuple[uvicorn.Server, int]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return server, port


class Cluster:
    """A throwaway PostgreSQL cluster from Debian's binaries that can be stopped and started."""

    def __init__(self) -> None:
        import socket

        self.bin = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))[-1].parent
        self.as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.tmp = tempfile.mkdtemp(prefix="coffee-bench-pg-")
        if self.as_pg:
            shutil.chown(self.tmp, "postgres", "postgres")
        self.port = 0
        for _ in range(200):  # below the ephemeral range: while stopped, nobody's bind(0) takes the port
            candidate = random.randint(15000, 30000)
            with socket.socket() as s, contextlib.suppress(OSError):
                s.bind(("127.0.0.1", candidate))
                self.port = candidate
                break
        self.data = f"{self.tmp}/data"
        self.run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "--no-sync")
        self.start()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def run(self, *cmd: str) -> None:
        subprocess.run([*self.as_pg, str(self.bin / cmd[0]), *cmd[1:]], check=True, capture_output=True)

    def start(self) -> None:
        self.run("pg_ctl", "-D", self.data, "-l", f"{self.tmp}/log", "-w", "start", "-o",
                 f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.tmp}")  # fmt: skip

    def stop(self) -> None:
        self.run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def close(self) -> None:
        subprocess.run([*self.as_pg, str(self.bin / "pg_ctl"), "-D", self.data, "-m", "immediate", "stop"],
                       capture_output=True)  # fmt: skip
        shutil.rmtree(self.tmp, ignore_errors=True)


def one_sample(cluster: Cluster, peer: SlackPeer, hook: str, interval: float, keep_for: bool, work: Path) -> float:
    store = work / f"incidents-{time.monotonic_ns()}.db"
    settings = Settings(
        database_url=cluster.url,
        incidents_database_url=f"sqlite:///{store}",
        slack_webhook_url=SecretStr(hook),
        oncall_file=Path("/nonexistent/oncall.toml"),
        log_dir=work / "logs",
        watchdog_interval_s=interval,
        watchdog_spool_file=work / "spool.jsonl",
        watchdog_state_file=work / f"state-{store.stem}.json",
        watchdog_disk_paths=[str(work)],
        incident_runner_interval_s=2.0,
        _env_file=None,  # type: ignore[call-arg]
    )
    db.upgrade(f"sqlite:///{store}")
    alerts = AlertSettings(_env_file=None)  # type: ignore[call-arg]
    rule = load_alert_config(alerts).rule("DatabaseDown")
    watchdog = Watchdog(settings, alert_settings=alerts, rules=[rule if keep_for else replace(rule, for_="0s")])
    runner = IncidentRunner(incident_store_settings(settings), heartbeat=False)
    peer.reset()
    runner.start()
    watchdog.start()
    try:
        time.sleep(interval * 1.5 + random.uniform(0, interval))  # a random phase of the watchdog's loop
        cluster.stop()
        started = time.monotonic()
        _iid, received = peer.wait_any(timeout=interval * 4 + (150 if keep_for else 30))
        return received - started
    finally:
        watchdog.stop()
        watchdog.close()
        runner.stop()
        cluster.start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=8, help="samples (each stops and restarts PostgreSQL)")
    parser.add_argument("--interval", type=float, default=5.0, help="watchdog_interval_s (default 30 in serve)")
    parser.add_argument("--keep-for", action="store_true", help="keep DatabaseDown's for: 2m (slow: >2 min/sample)")
    args = parser.parse_args()
    peer = SlackPeer()
    server, port = serve(peer.app)
    cluster = Cluster()
    db.upgrade(cluster.url)
    work = Path(tempfile.mkdtemp(prefix="coffee-bench-wd-"))
    latencies: list[float] = []
    try:
        for i in range(args.n):
            latency = one_sample(cluster, peer, f"http://127.0.0.1:{port}/services/T/B/X", args.interval,
                                 args.keep_for, work)  # fmt: skip
            latencies.append(latency)
            print(f"sample {i + 1}: {latency:.2f} s (interval + {latency - args.interval:+.2f} s)", flush=True)
    finally:
        cluster.close()
        server.should_exit = True
        shutil.rmtree(work, ignore_errors=True)
    med = statistics.median(latencies)
    worst = max(latencies)
    print(f"\nPostgreSQL stopped → first Slack message, watchdog interval {args.interval:g} s, "
          f"for {'2m' if args.keep_for else '0s'}, n={len(latencies)}")  # fmt: skip
    print(f"  median {med:.2f} s, min {min(latencies):.2f} s, max {worst:.2f} s")
    print(f"  worst case = interval + {worst - args.interval:.2f} s (target: interval + 2 s)")


if __name__ == "__main__":
    main()
