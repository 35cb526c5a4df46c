"""Latency from an incident opened (its 'opened' event committed) to the first Slack message received by a local
incoming-webhook peer, with the incident runner's real loop running in the background.

Two ways an incident opens: in the runner's own process (the commit wakes the loop at once) and in another process
(a receiver or CLI in another process: the loop finds it at its next pass, so up to one runner interval).
Run: ``python -m bench.notify_latency [--n 30] [--interval 2] [--postgres]``. Nothing here is used by tests.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from bench._common import pg_database
from coffee_scraper.catalog import db
from coffee_scraper.catalog.models import utcnow
from coffee_scraper.incidents import flows
from coffee_scraper.incidents.runner import IncidentRunner
from coffee_scraper.settings import Settings


class SlackReceiver:
    """A Slack incoming webhook on 127.0.0.1 recording when each incident's first message arrived."""

    def __init__(self) -> None:
        self.first_seen: dict[str, float] = {}
        self.cond = threading.Condition()

        async def hook(request: Request) -> PlainTextResponse:
            data = await request.json()
            now = time.time()
            line = data["text"].splitlines()[1] if "\n" in data["text"] else ""
            incident = line.split(": ", 1)[1] if line.startswith("- Incident ID: ") else None
            with self.cond:
                if incident and incident not in self.first_seen:
                    self.first_seen[incident] = now
                    self.cond.notify_all()
            return PlainTextResponse("ok")

        self.app = Starlette(routes=[Route("/services/T/B/X", hook, methods=["POST"])])

    def wait_for(self, incident: str, timeout: float = 30.0) -> float:
        with self.cond:
            if not self.cond.wait_for(lambda: incident in self.first_seen, timeout):
                raise TimeoutError(f"no Slack message for {incident} within {timeout} s")
            return self.first_seen[incident]


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


def settings_for(url: str, hook: str, interval: float) -> Settings:
    return Settings(
        database_url=url,
        slack_webhook_url=hook,
        incident_runner_interval_s=interval,  # type: ignore[arg-type]
        oncall_file=Path("/nonexistent/oncall.toml"),
        log_dir=Path(tempfile.gettempdir()),
    )


def declare(factory: Any, title: str) -> tuple[str, float]:
    with flows.write_lock(factory.kw["bind"]), db.session_scope(factory) as session:
        incident = flows.declare(session, title=title, severity="P1", actor="bench", now=utcnow())
        iid = incident.id
    return iid, time.time()  # after commit


def declare_loop(url: str, n: int, interval: float) -> None:
    """Child process: open ``n`` incidents at random phases of the runner's loop, print (id, commit time)."""
    factory = db.session_factory(db.make_engine(url))
    for i in range(n):
        time.sleep(random.uniform(0.2, interval + 0.2))
        iid, at = declare(factory, f"bench cross-process {i}")
        print(json.dumps({"id": iid, "at": at}), flush=True)


def measure(url: str, n: int, interval: float) -> dict[str, list[float]]:
    db.upgrade(url)
    receiver = SlackReceiver()
    server, port = serve(receiver.app)
    s = settings_for(url, f"http://127.0.0.1:{port}/services/T/B/X", interval)
    runner = IncidentRunner(s, heartbeat=False).start()
    factory = db.session_factory(db.make_engine(url))
    out: dict[str, list[float]] = {"in-process": [], "other process": []}
    try:
        time.sleep(interval)  # let the loop settle
        for i in range(n):
            iid, committed = declare(factory, f"bench in-process {i}")
            out["in-process"].append(receiver.wait_for(iid) - committed)
            time.sleep(random.uniform(0.05, 0.3))
        # every process that records incident events must see the same channel settings (here: the environment)
        env = os.environ | {
            "COFFEE_SCRAPER_SLACK_WEBHOOK_URL": f"http://127.0.0.1:{port}/services/T/B/X",
            "COFFEE_SCRAPER_ONCALL_FILE": "/nonexistent/oncall.toml",
            "COFFEE_SCRAPER_LOG_DIR": tempfile.gettempdir(),
        }
        child = subprocess.run(
            [sys.executable, "-m", "bench.notify_latency", "--child", url, "--n", str(n), "--interval", str(interval)],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
        )
        if child.returncode != 0:
            raise RuntimeError(child.stderr)
        for line in child.stdout.splitlines():
            row = json.loads(line)
            out["other process"].append(receiver.wait_for(row["id"]) - row["at"])
    finally:
        runner.stop()
        server.should_exit = True
    return out


def report(backend: str, results: dict[str, list[float]], interval: float) -> None:
    for mode, values in results.items():
        values = sorted(values)
        p95 = values[max(0, round(0.95 * len(values)) - 1)]
        print(
            f"| {backend} | {mode} | {len(values)} | {statistics.median(values) * 1000:.0f} ms | "
            f"{p95 * 1000:.0f} ms | {max(values) * 1000:.0f} ms | {interval:g} s |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--interval", type=float, default=2.0, help="incident_runner_interval_s")
    parser.add_argument("--postgres", action="store_true", help="also on a fresh PostgreSQL database")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        declare_loop(args.child, args.n, args.interval)
        return
    print("| backend | incident opened in | n | median | p95 | max | runner interval |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        report("SQLite", measure(f"sqlite:///{tmp}/bench.db", args.n, args.interval), args.interval)
    if args.postgres:
        with pg_database() as url:
            if url is None:
                print("PostgreSQL: no server on 127.0.0.1:5432", file=sys.stderr)
            else:
                report("PostgreSQL", measure(url, args.n, args.interval), args.interval)


if __name__ == "__main__":
    main()
