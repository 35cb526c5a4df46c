"""Investigation and drills: how long `coffee-scraper diagnose` takes, and a fast db-outage drill step by step.

1. Diagnostics: ``run_diagnostics`` with every check, on a SQLite catalog with 20 roasters (nothing serves, so the
   service check fails at once), ``--n`` runs; median and worst wall time, and the median per check.
2. Drill: ``Drill("db-outage", fast=True)`` in-process with the real incident runner delivering to a local Slack
   peer and a separate SQLite incident store, ``--drills`` runs; median of each step's time.

    python -m bench.recovery [--n 10] [--drills 3]

Results go in bench/README.md by hand.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from coffee_scraper.catalog import db, service
from coffee_scraper.incidents import diagnostics, drills
from coffee_scraper.incidents.notify import config as notify_config
from coffee_scraper.incidents.runner import IncidentRunner
from coffee_scraper.settings import Settings
from tests.incidents.notify.peers import SlackPeer
from tests.support import free_port, serve_in_thread


def _settings(tmp: Path, **extra: Any) -> Settings:
    values: dict[str, Any] = dict(
        database_url=f"sqlite:///{tmp / 'catalog.db'}",
        log_dir=tmp / "logs",
        temp_dir=tmp,
        diagnostics_service_url=f"http://127.0.0.1:{free_port()}",
        allow_private_addresses=True,
        incident_runner_enabled=False,
        watchdog_enabled=False,
        scheduler_mode="off",
        oncall_file=tmp / "oncall.toml",
    )
    values.update(extra)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def bench_diagnostics(n: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        s = _settings(tmp)
        db.upgrade(s.database_url)
        engine = db.make_engine(s.database_url)
        with db.session_scope(db.session_factory(engine)) as session:
            for i in range(20):
                service.add_roaster(session, f"r{i}", f"https://r{i}.example")
        engine.dispose()
        walls: list[float] = []
        per: dict[str, list[float]] = {}
        for _ in range(n):
            started = time.perf_counter()
            report = diagnostics.run_diagnostics(s)
            walls.append(time.perf_counter() - started)
            for c in report.checks:
                per.setdefault(c.name, []).append(c.duration_ms)
        print(f"diagnose: n={n} median {statistics.median(walls) * 1000:.0f} ms, max {max(walls) * 1000:.0f} ms")
        for name, values in per.items():
            print(f"  {name:14} median {statistics.median(values):7.1f} ms")


def bench_drill(n: int) -> None:
    slack = SlackPeer()
    steps: dict[str, list[float]] = {}
    totals: list[float] = []
    with serve_in_thread(slack.app) as port:
        for _ in range(n):
            with tempfile.TemporaryDirectory() as d:
                tmp = Path(d)
                (tmp / "oncall.toml").write_text(
                    '[people.a]\nname = "A"\n[roles]\nengineering_manager = "a"\noncall_primary = "a"\n'
                )
                s = _settings(
                    tmp,
                    incidents_database_url=f"sqlite:///{tmp / 'incidents.db'}",
                    slack_webhook_url=f"http://127.0.0.1:{port}{slack.path}",
                )
                db.upgrade(s.database_url)
                db.upgrade(str(s.incidents_database_url))
                runner = IncidentRunner(
                    s.model_copy(update={"database_url": s.incidents_database_url}), heartbeat=False
                )
                started = time.perf_counter()
                card = drills.Drill(
                    "db-outage",
                    s,
                    options=drills.DrillOptions(fast=True, timeout_s=60),
                    drive=lambda r=runner: r.run_once(),
                ).run()
                totals.append(time.perf_counter() - started)
                runner.outbox.close()
                notify_config.reset()
                drills.clear_marking()
                assert card["status"] == "passed", card
                for st in card["steps"]:
                    if st["elapsed_s"] is not None:
                        steps.setdefault(f"{st['name']} (after {st['since']})", []).append(st["elapsed_s"])
    print(f"drill db-outage --fast: n={n} median total {statistics.median(totals):.1f} s")
    for name, values in steps.items():
        print(f"  {name:28} median {statistics.median(values):6.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--drills", type=int, default=3)
    args = parser.parse_args()
    bench_diagnostics(args.n)
    bench_drill(args.drills)


if __name__ == "__main__":
    main()
