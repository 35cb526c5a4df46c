"""Incident IDs INC-YYYYMMDD-###: per UTC day, 001..999 then 1000+, never duplicated under concurrency."""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta, timezone

import pytest

from coffee_scraper.catalog import db
from coffee_scraper.incidents import flows, ids
from tests.incidents.core_support import T0


def reserve(url: str, count: int, at: datetime) -> list[str]:
    """``count`` IDs, each in its own transaction (run in threads and in other processes)."""
    engine = db.make_engine(url)
    factory = db.session_factory(engine)
    out = []
    try:
        for _ in range(count):
            with db.session_scope(factory) as session:
                out.append(ids.next_id(session, at))
    finally:
        engine.dispose()
    return out


def test_sequence_per_utc_day(db_url: str) -> None:
    db.upgrade(db_url)
    assert reserve(db_url, 3, T0) == ["INC-20261130-001", "INC-20261130-002", "INC-20261130-003"]
    assert reserve(db_url, 1, T0 + timedelta(days=1)) == ["INC-20261201-001"]
    # the UTC day counts, not the local one: 01:00 in UTC+05:30 on Dec 1 is still Nov 30 in UTC
    local = datetime(2026, 12, 1, 1, 0, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    assert reserve(db_url, 1, local) == ["INC-20261130-004"]


def test_a_rolled_back_transaction_gives_its_number_back(sqlite_url: str) -> None:
    db.upgrade(sqlite_url)
    engine = db.make_engine(sqlite_url)
    factory = db.session_factory(engine)
    with pytest.raises(RuntimeError), db.session_scope(factory) as session:
        ids.next_id(session, T0)
        raise RuntimeError("declaring failed")
    assert reserve(sqlite_url, 1, T0) == ["INC-20261130-001"]
    engine.dispose()


def test_numbers_past_999_keep_counting(sqlite_url: str) -> None:
    db.upgrade(sqlite_url)
    got = reserve(sqlite_url, 1001, T0)
    assert got[998:] == ["INC-20261130-999", "INC-20261130-1000", "INC-20261130-1001"]
    assert all(ids.is_incident_id(x) for x in got)
    assert not ids.is_incident_id("INC-2026113-001") and not ids.is_incident_id("INC-20261130-01")


@pytest.mark.pg
def test_parallel_threads_on_postgresql_never_share_an_id(pg_url: str) -> None:
    db.upgrade(pg_url)
    results: list[list[str]] = []
    lock = threading.Lock()

    def work() -> None:
        got = reserve(pg_url, 25, T0)
        with lock:
            results.append(got)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = [x for r in results for x in r]
    assert len(flat) == 200 and len(set(flat)) == 200
    assert sorted(int(x.rsplit("-", 1)[1]) for x in flat) == list(range(1, 201))


@pytest.mark.pg
def test_parallel_processes_on_postgresql_never_share_an_id(pg_url: str) -> None:
    db.upgrade(pg_url)
    with ProcessPoolExecutor(max_workers=4, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(reserve, pg_url, 30, T0) for _ in range(4)]
        flat = [x for f in futures for x in f.result(timeout=120)]
    assert sorted(int(x.rsplit("-", 1)[1]) for x in flat) == list(range(1, 121))


@pytest.mark.pg
def test_parallel_declarations_on_postgresql_get_distinct_ids(pg_url: str) -> None:
    db.upgrade(pg_url)
    engine = db.make_engine(pg_url, pool_size=10)
    factory = db.session_factory(engine)
    made: list[str] = []
    lock = threading.Lock()

    def declare(n: int) -> None:
        for i in range(10):
            with db.session_scope(factory) as session:
                incident = flows.declare(
                    session, title=f"t{n}-{i}", severity="P3", actor="x", now=datetime(2026, 11, 30, 12, tzinfo=UTC)
                )
                with lock:
                    made.append(incident.id)

    threads = [threading.Thread(target=declare, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    engine.dispose()
    assert len(made) == 60 and len(set(made)) == 60
