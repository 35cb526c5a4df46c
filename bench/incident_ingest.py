"""Alert ingestion throughput (alerts/s) with dedup, on SQLite and PostgreSQL, in one process.

What is timed is what the receiver does per request, minus HTTP: JSON bytes → ``receivers.parse_prometheus`` →
``flows.ingest`` in one transaction (commit included). Three workloads over ``--alerts`` distinct alerts
(alertname ``Bench`` + an ``instance`` label, 50 components so they group into 50 incidents):

* first-time alerts (each opens or joins an incident: rows, timeline entries, reactions);
* repeats of open alerts (the at-least-once case: dedup → counters only), ``--rounds`` times;
* repeats sent one alert per request (one transaction per alert: the worst case for commit cost).

Batches are ``--batch`` alerts (Prometheus posts up to 64). ``--http`` adds the same repeat workload through
the real app over HTTP on 127.0.0.1 (one keep-alive client). ``--one-core`` pins this process to CPU 0.
`python -m bench.incident_ingest`.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from coffee_scraper.catalog import db
from coffee_scraper.incidents import flows, receivers
from coffee_scraper.settings import Settings

from ._common import Timer, pg_database

T0 = datetime.now(UTC)


def alerts(n: int, at: datetime) -> list[dict[str, Any]]:
    return [
        {
            "labels": {"alertname": "Bench", "severity": "P2", "component": f"c{i % 50}", "instance": f"host-{i}"},
            "annotations": {"summary": f"bench alert {i}", "description": "ingestion benchmark"},
            "startsAt": T0.isoformat(),
            "endsAt": (at + timedelta(days=1)).isoformat(),  # firing for the whole run (HTTP uses the wall clock)
            "generatorURL": "http://prometheus:9090/graph",
        }
        for i in range(n)
    ]


def batches(items: list[dict[str, Any]], size: int) -> Iterator[bytes]:
    for i in range(0, len(items), size):
        yield json.dumps(items[i : i + size]).encode()


def ingest_bodies(factory: Any, engine: Any, bodies: list[bytes], policy: flows.Policy, at: datetime) -> dict[str, int]:
    counts: dict[str, int] = {}
    for body in bodies:
        value, problems = receivers.decode_json(body)
        parsed = receivers.parse_prometheus(value, received_at=at, limits=policy.limits)
        assert not problems and parsed.ok, (problems, parsed.problems)
        with flows.write_lock(engine), db.session_scope(factory) as session:
            result = flows.ingest(session, parsed.events, now=at, settings=policy)
        for k, v in result.counts().items():
            counts[k] = counts.get(k, 0) + v
    return counts


def run(url: str, n: int, batch: int, rounds: int, http: bool) -> dict[str, float]:
    db.upgrade(url)
    engine = db.make_engine(url)
    factory = db.session_factory(engine)
    settings = Settings(_env_file=None, database_url=url)  # type: ignore[call-arg]
    policy = flows.Policy.from_settings(settings)
    at = T0 + timedelta(seconds=1)
    rates: dict[str, float] = {}

    first = list(batches(alerts(n, at), batch))
    with Timer() as t:
        counts = ingest_bodies(factory, engine, first, policy, at)
    assert counts.get("opened", 0) + counts.get("grouped", 0) == n, counts
    rates["first"] = n / t.seconds

    repeats = list(batches(alerts(n, at), batch))
    with Timer() as t:
        for r in range(rounds):
            counts = ingest_bodies(factory, engine, repeats, policy, at + timedelta(seconds=r + 1))
    assert counts == {"duplicate": n}, counts
    rates["repeat"] = n * rounds / t.seconds

    singles = list(batches(alerts(min(n, 1000), at), 1))
    with Timer() as t:
        counts = ingest_bodies(factory, engine, singles, policy, at + timedelta(seconds=rounds + 2))
    assert counts == {"duplicate": len(singles)}, counts
    rates["repeat_single"] = len(singles) / t.seconds

    if http:
        rates["repeat_http"] = over_http(url, repeats, rounds)
    engine.dispose()
    return rates


def over_http(url: str, bodies: list[bytes], rounds: int) -> float:
    import httpx

    from coffee_scraper.web import create_app
    from tests.support import serve_in_thread

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            database_url=url,
            log_dir=Path(tmp),
            api_token="bench-token",
            incident_sweep_interval_s=0,
            incident_runner_enabled=False,
            watchdog_enabled=False,
            scheduler_mode="off",
            recovery_interval_s=0,
            diagnostics_on_open=False,
        )
        app = create_app(settings)
        headers = {"Authorization": "Bearer bench-token", "Content-Type": "application/json"}
        n = sum(len(json.loads(b)) for b in bodies)
        with (
            serve_in_thread(app) as port,
            httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as c,
            Timer() as t,
        ):
            for _ in range(rounds):
                for body in bodies:
                    answer = c.post("/api/v2/alerts", content=body)
                    expected = {"duplicate": len(json.loads(body))}
                    assert answer.status_code == 200 and answer.json()["results"] == expected, answer.text
        return n * rounds / t.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alerts", type=int, default=2000, help="distinct alerts")
    parser.add_argument("--batch", type=int, default=64, help="alerts per request/transaction")
    parser.add_argument("--rounds", type=int, default=5, help="repeat rounds over all alerts")
    parser.add_argument("--http", action="store_true", help="also through the real app over HTTP")
    parser.add_argument("--one-core", action="store_true", help="pin this process to CPU 0")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    if args.one_core:
        os.sched_setaffinity(0, {0})
    print(f"{args.alerts:,} alerts, batches of {args.batch}, {args.rounds} repeat rounds (alerts/s)")
    print(
        "| backend | first-time | repeats (dedup) | repeats, 1 per transaction |"
        + (" repeats over HTTP |" if args.http else "")
    )
    print("|---|---|---|---|" + ("---|" if args.http else ""))

    def row(name: str, r: dict[str, float]) -> None:
        extra = f" {r['repeat_http']:,.0f} |" if args.http else ""
        print(f"| {name} | {r['first']:,.0f} | {r['repeat']:,.0f} | {r['repeat_single']:,.0f} |{extra}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        row("SQLite", run(f"sqlite:///{Path(tmp) / 'b.db'}", args.alerts, args.batch, args.rounds, args.http))
    if args.no_postgres:
        return
    with pg_database() as pg:
        if pg is None:
            print("| PostgreSQL | (no server on 127.0.0.1:5432) | | |")
            return
        row("PostgreSQL", run(pg, args.alerts, args.batch, args.rounds, args.http))


if __name__ == "__main__":
    main()
