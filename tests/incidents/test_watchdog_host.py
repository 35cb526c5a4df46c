"""Host, liveness and security rules of the watchdog under real conditions: a small tmpfs filled up, a process
OOM-killed by the kernel, both CPUs kept busy, a scheduler whose heartbeat stopped, a secrets file readable by
everyone. Where the real condition would harm the machine (90% of a 24 GiB host's memory) the thresholds are
lowered around the real measurement instead, and the test says so.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from coffee_scraper.catalog import db
from coffee_scraper.incidents.alert_config import AlertSettings
from coffee_scraper.incidents.watchdog import Clear, Firing, Pending
from coffee_scraper.jobs import service as jobs_service
from coffee_scraper.jobs.runtime import Identity
from tests.incidents.watchdog_support import (
    Clock,
    drive,
    fill_to,
    incidents_of,
    make_watchdog,
    oom_kill_in_cgroup,
    small_tmpfs,
    watchdog_settings,
)


@pytest.fixture
def catalog(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    db.upgrade(url)
    return url


@pytest.fixture
def tmpfs() -> Iterator[Path]:
    with small_tmpfs(1024) as where:
        if where is None:
            pytest.skip("cannot mount a tmpfs here (needs root); the disk rules are covered by the override test")
        yield where


def test_filling_a_small_filesystem_fires_disk_warning_then_critical(catalog: str, tmp_path: Path, tmpfs: Path) -> None:
    settings = watchdog_settings(catalog, tmp_path, watchdog_disk_paths=[str(tmpfs)])
    clock = Clock()
    watchdog = make_watchdog(settings, clock, only=("DiskUsageCritical", "DiskUsageWarning"))
    try:
        assert isinstance(watchdog.run_once().verdict("DiskUsageWarning", str(tmpfs)), Clear)
        fill_to(tmpfs, 0.90)  # a real 1 MiB filesystem, 90% used
        evaluations = drive(watchdog, clock, seconds=330)
        assert isinstance(evaluations[0].verdict("DiskUsageWarning", str(tmpfs)), Pending)
        warning = evaluations[-1].verdict("DiskUsageWarning", str(tmpfs))
        assert isinstance(warning, Firing) and warning.value is not None and 0.85 < warning.value <= 0.95
        assert isinstance(evaluations[-1].verdict("DiskUsageCritical", str(tmpfs)), Clear)

        fill_to(tmpfs, 0.98)
        evaluations = drive(watchdog, clock, seconds=330)
        critical = evaluations[-1].verdict("DiskUsageCritical", str(tmpfs))
        assert isinstance(critical, Firing) and critical.value is not None and critical.value > 0.95
        warned = evaluations[0].verdict("DiskUsageWarning", str(tmpfs))
        assert isinstance(warned, Clear) and warned.resolved  # 85-95% no longer: the warning resolves
        assert [(i.severity, i.component) for i in incidents_of(settings, "DiskUsageWarning")] == [("P1", str(tmpfs))]
        assert [(i.severity, i.component) for i in incidents_of(settings, "DiskUsageCritical")] == [("P0", str(tmpfs))]

        (tmpfs / "filler.bin").unlink()  # the clean-up
        clock.advance(seconds=30)
        cleared = watchdog.run_once().verdict("DiskUsageCritical", str(tmpfs))
        assert isinstance(cleared, Clear) and cleared.resolved
        assert incidents_of(settings, "DiskUsageCritical")[0].resolve_pending_since is not None
    finally:
        watchdog.close()


def test_disk_rules_on_the_real_usage_with_lowered_thresholds(catalog: str, tmp_path: Path) -> None:
    """Without root (no tmpfs), the closest real condition: the real usage of the test's filesystem, with the
    thresholds lowered just under it (filling a real disk to 95% is never an option)."""
    used = psutil.disk_usage(str(tmp_path)).used / psutil.disk_usage(str(tmp_path)).total
    alerts = AlertSettings(disk_warning_ratio=used / 2, disk_critical_ratio=min(0.999, used + 0.05), _env_file=None)  # type: ignore[call-arg]
    settings = watchdog_settings(catalog, tmp_path)
    clock = Clock()
    watchdog = make_watchdog(settings, clock, alert_settings=alerts, only=("DiskUsageWarning",))
    try:
        evaluations = drive(watchdog, clock, seconds=330)
    finally:
        watchdog.close()
    fired = evaluations[-1].verdict("DiskUsageWarning", str(tmp_path))
    assert isinstance(fired, Firing), evaluations[-1].results
    assert [i.severity for i in incidents_of(settings, "DiskUsageWarning")] == ["P1"]


def test_a_real_oom_kill_fires_memory_exhaustion_p0(catalog: str, tmp_path: Path) -> None:
    settings = watchdog_settings(catalog, tmp_path)
    clock = Clock()
    watchdog = make_watchdog(settings, clock, only=("MemoryExhaustion",))
    try:
        assert isinstance(watchdog.run_once().verdict("MemoryExhaustion"), Clear)
        why_not = oom_kill_in_cgroup()  # a child confined to 32 MiB allocates 1 GiB: the kernel kills it
        if why_not is not None:
            pytest.skip(f"no real OOM kill possible here: {why_not}")
        evaluations = drive(watchdog, clock, seconds=90)
    finally:
        watchdog.close()
    assert isinstance(evaluations[0].verdict("MemoryExhaustion"), Pending)
    fired = evaluations[-1].verdict("MemoryExhaustion")
    assert isinstance(fired, Firing) and fired.value == 1.0 and "OOM kill" in fired.detail
    assert [i.severity for i in incidents_of(settings, "MemoryExhaustion")] == ["P0"]


@pytest.mark.parametrize(("rule", "severity"), [("MemoryUsageHigh", "P1"), ("MemoryPressure", "P2")])
def test_memory_usage_rules_with_thresholds_around_the_real_usage(
    catalog: str, tmp_path: Path, rule: str, severity: str
) -> None:
    """Taking a 24 GiB host to 90% memory would hurt everything else on it: the closest real condition is the
    real memory ratio (psutil) against thresholds lowered just under it (AlertSettings overrides)."""
    alerts = AlertSettings(memory_pressure_ratio=0.001, memory_high_ratio=0.002, memory_exhaustion_ratio=0.999,  # type: ignore[call-arg]
                           _env_file=None)  # fmt: skip
    if rule == "MemoryPressure":
        alerts = AlertSettings(memory_pressure_ratio=0.001, memory_high_ratio=0.998, memory_exhaustion_ratio=0.999,  # type: ignore[call-arg]
                               _env_file=None)  # fmt: skip
    settings = watchdog_settings(catalog, tmp_path)
    clock = Clock()
    watchdog = make_watchdog(settings, clock, alert_settings=alerts, only=(rule,))
    try:
        evaluations = drive(watchdog, clock, seconds=930)
    finally:
        watchdog.close()
    fired = evaluations[-1].verdict(rule)
    assert isinstance(fired, Firing), fired
    real = 1 - psutil.virtual_memory().available / psutil.virtual_memory().total
    assert fired.value == pytest.approx(real, abs=0.05)
    assert [i.severity for i in incidents_of(settings, rule)] == [severity]


def _burn(seconds: float) -> None:
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += 1


def burn_all_cpus(seconds: float) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_burn, args=(seconds,)) for _ in range(os.cpu_count() or 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()


def test_busy_cpus_fire_cpu_pressure_p2(catalog: str, tmp_path: Path) -> None:
    """Every CPU kept busy between two samples (real psutil cpu_times); the clock stretches it to 15 minutes."""
    settings = watchdog_settings(catalog, tmp_path)
    clock = Clock()
    watchdog = make_watchdog(settings, clock, only=("CPUPressure",))
    try:
        watchdog.run_once()
        burn_all_cpus(1.5)
        clock.advance(seconds=60)
        first = watchdog.run_once().verdict("CPUPressure")
        assert isinstance(first, Pending), first
        burn_all_cpus(1.5)
        clock.advance(seconds=900)
        fired = watchdog.run_once().verdict("CPUPressure")
        assert isinstance(fired, Firing), fired
        assert [i.severity for i in incidents_of(settings, "CPUPressure")] == ["P2"]
    finally:
        watchdog.close()


def test_a_scheduler_that_stopped_beating_fires_system_down_p0(catalog: str, tmp_path: Path) -> None:
    settings = watchdog_settings(catalog, tmp_path)
    clock = Clock()
    factory = db.session_factory(db.make_engine(catalog))
    scheduler = Identity.for_process("scheduler")
    with db.session_scope(factory) as session:
        jobs_service.beat(session, scheduler, now=clock())  # the scheduler's last sign of life
    watchdog = make_watchdog(settings, clock, only=("SystemDown", "HeartbeatMissing"))
    try:
        assert isinstance(watchdog.run_once().verdict("SystemDown"), Clear)
        clock.advance(seconds=601)  # heartbeat_max_age_s = 600
        evaluations = drive(watchdog, clock, seconds=150)
        fired = evaluations[-1].verdict("SystemDown")
        assert isinstance(fired, Firing) and fired.value == 0.0
        assert evaluations[-1].results["HeartbeatMissing"]["scheduler"][1].verdict == "inhibited"
        assert [i.severity for i in incidents_of(settings, "SystemDown")] == ["P0"]
        assert incidents_of(settings, "HeartbeatMissing") == []

        with db.session_scope(factory) as session:
            jobs_service.beat(session, scheduler, now=clock())  # it is back
        clock.advance(seconds=30)
        cleared = watchdog.run_once().verdict("SystemDown")
        assert isinstance(cleared, Clear) and cleared.resolved
    finally:
        watchdog.close()


def test_one_stale_worker_fires_heartbeat_missing_p0(catalog: str, tmp_path: Path) -> None:
    settings = watchdog_settings(catalog, tmp_path)
    clock = Clock()
    factory = db.session_factory(db.make_engine(catalog))
    scheduler, worker = Identity.for_process("scheduler"), Identity.for_process("worker", "worker-a")
    with db.session_scope(factory) as session:
        jobs_service.beat(session, worker, now=clock())
    watchdog = make_watchdog(settings, clock, only=("SystemDown", "HeartbeatMissing"))
    try:
        watchdog.run_once()
        for _ in range(4):  # the scheduler keeps beating, the worker went silent
            clock.advance(seconds=300)
            with db.session_scope(factory) as session:
                jobs_service.beat(session, scheduler, now=clock())
            evaluation = watchdog.run_once()
        fired = evaluation.verdict("HeartbeatMissing", "worker")
        assert isinstance(fired, Firing) and fired.value is not None and fired.value > 600
        assert isinstance(evaluation.verdict("SystemDown"), Clear)
        assert [(i.severity, i.component) for i in incidents_of(settings, "HeartbeatMissing")] == [("P0", "worker")]
    finally:
        watchdog.close()


def test_world_readable_secrets_fire_security_breach_p0(
    catalog: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The closest local signal of data exposure: the .env holding the API token readable by every user."""
    workdir = tmp_path / "app"
    workdir.mkdir()
    monkeypatch.chdir(workdir)  # .env is read from the working directory, as pydantic-settings does
    env = workdir / ".env"
    env.write_text("COFFEE_SCRAPER_API_TOKEN=s3cr3t-token-value\n")
    env.chmod(0o600)
    settings = watchdog_settings(catalog, tmp_path)
    clock = Clock()
    watchdog = make_watchdog(settings, clock, only=("SecurityBreach",))
    try:
        assert isinstance(watchdog.run_once().verdict("SecurityBreach"), Clear)
        env.chmod(0o644)
        clock.advance(seconds=30)
        fired = watchdog.run_once().verdict("SecurityBreach")
        assert isinstance(fired, Firing) and ".env" in fired.detail and "s3cr3t" not in fired.detail
        assert [i.severity for i in incidents_of(settings, "SecurityBreach")] == ["P0"]
        env.chmod(0o600)
        clock.advance(seconds=30)
        cleared = watchdog.run_once().verdict("SecurityBreach")
        assert isinstance(cleared, Clear) and cleared.resolved
    finally:
        watchdog.close()
