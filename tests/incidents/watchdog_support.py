"""Helpers for the watchdog tests: an injectable clock, a PostgreSQL cluster the test can stop and start, a small
tmpfs, a real OOM kill in a memory cgroup, and a Watchdog wired to throwaway files.

Plain functions and classes (fixtures live in the test modules).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from coffee_scraper.catalog import db
from coffee_scraper.incidents.alert_config import AlertRule, AlertSettings, load_alert_config
from coffee_scraper.incidents.models import Incident
from coffee_scraper.incidents.watchdog import Evaluation, Watchdog
from coffee_scraper.settings import Settings
from tests.support import fast_settings, free_port

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


class Clock:
    """A settable UTC clock: ``clock()`` is now, ``advance(seconds=...)`` moves it."""

    def __init__(self, start: datetime = T0) -> None:
        self.t = start

    def __call__(self) -> datetime:
        return self.t

    def advance(self, **delta: float) -> datetime:
        self.t += timedelta(**delta)
        return self.t


def watchdog_settings(catalog_url: str, tmp: Path, **extra: Any) -> Settings:
    """Fast settings with the incident store in its own SQLite file and every watchdog file under ``tmp``."""
    values: dict[str, Any] = dict(
        incidents_database_url=f"sqlite:///{tmp / 'incidents.db'}",
        log_dir=tmp / "logs",
        watchdog_spool_file=tmp / "spool.jsonl",
        watchdog_state_file=tmp / "watchdog-state.json",
        watchdog_disk_paths=[str(tmp)],
        watchdog_probe_timeout_s=2.0,
        prometheus_url=None,
        incident_runner_enabled=False,
        watchdog_enabled=False,
    )
    values.update(extra)
    return fast_settings(catalog_url, **values)


def make_watchdog(
    settings: Settings,
    clock: Clock,
    *,
    alert_settings: AlertSettings | None = None,
    only: tuple[str, ...] | None = None,
    for_zero: bool = False,
) -> Watchdog:
    """A Watchdog on ``settings`` with the incident store migrated; ``only`` limits the rules evaluated."""
    db.upgrade(settings.incidents_database_url or settings.database_url)
    alerts = alert_settings or AlertSettings(_env_file=None)  # type: ignore[call-arg]
    rules: list[AlertRule] = list(load_alert_config(alerts).rules)
    if only is not None:
        rules = [r for r in rules if r.id in only]
    if for_zero:
        rules = [replace(r, for_="0s") for r in rules]
    return Watchdog(settings, alert_settings=alerts, now=clock, rules=rules, load_state=False)


def drive(watchdog: Watchdog, clock: Clock, *, seconds: float, step_s: float = 30.0) -> list[Evaluation]:
    """Advance the clock by ``step_s`` and evaluate (and emit), until ``seconds`` of clock time passed."""
    out: list[Evaluation] = []
    elapsed = 0.0
    while elapsed < seconds:
        clock.advance(seconds=step_s)
        elapsed += step_s
        out.append(watchdog.run_once())
    return out


def incidents_of(settings: Settings, rule: str) -> list[Incident]:
    """Incidents (any status) opened for ``rule`` in the settings' incident store."""
    engine = db.make_engine(settings.incidents_database_url or settings.database_url)
    try:
        with db.session_factory(engine)() as session:
            return list(session.scalars(select(Incident).where(Incident.rule == rule).order_by(Incident.opened_at)))
    finally:
        engine.dispose()


# --- a PostgreSQL cluster a test can stop and start ---------------------------------------------------------


def port_outside_ephemeral_range() -> int:
    """A free port below the kernel's ephemeral range (bind(0) of other tests never hands it out)."""
    import random
    import socket

    for _ in range(200):
        port = random.randint(15000, 30000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return free_port()


class PgCluster:
    """A throwaway PostgreSQL cluster (Debian's binaries) with ``stop()`` / ``start()`` for outage tests."""

    def __init__(self) -> None:
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not bins:
            raise RuntimeError("no PostgreSQL binaries under /usr/lib/postgresql (apt-get install postgresql)")
        self.bin = bins[-1].parent
        self.as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.tmp = tempfile.mkdtemp(prefix="coffee-scraper-pgwd-")
        if self.as_pg:
            shutil.chown(self.tmp, "postgres", "postgres")
        self.data = os.path.join(self.tmp, "data")
        self.port = port_outside_ephemeral_range()  # stopped, its port must not be taken by someone's bind(0)
        self._run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8",
                  "--no-sync")  # fmt: skip
        self.start()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *cmd: str) -> None:
        subprocess.run([*self.as_pg, str(self.bin / cmd[0]), *cmd[1:]], check=True, capture_output=True)

    def start(self) -> None:
        self._run(
            "pg_ctl", "-D", self.data, "-l", f"{self.tmp}/log", "-w", "start", "-o",
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.tmp} -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c max_connections=100",
        )  # fmt: skip

    def stop(self) -> None:
        self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")  # clean: no commit is lost

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


# --- a small filesystem and a real OOM kill -----------------------------------------------------------------


@contextlib.contextmanager
def small_tmpfs(size_kib: int = 1024) -> Iterator[Path | None]:
    """A tmpfs of ``size_kib`` mounted on a fresh directory (root only); None when mounting is not allowed."""
    where = Path(tempfile.mkdtemp(prefix="coffee-scraper-tmpfs-"))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(where)],
                          capture_output=True)  # fmt: skip
    if done.returncode != 0:
        where.rmdir()
        yield None
        return
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)
        shutil.rmtree(where, ignore_errors=True)


def fill_to(path: Path, ratio: float) -> None:
    """Write one file so the filesystem holding ``path`` is ``ratio`` used (tmpfs: used = written bytes)."""
    import psutil

    target = path / "filler.bin"
    target.unlink(missing_ok=True)
    usage = psutil.disk_usage(str(path))
    want = int(usage.total * ratio) - usage.used
    with target.open("wb") as fh:
        fh.write(b"\0" * max(0, want))
        fh.flush()
        os.fsync(fh.fileno())


def oom_kill_in_cgroup(limit_bytes: int = 32 * 1024 * 1024) -> str | None:
    """Let the kernel OOM-kill a child process confined to a memory cgroup of ``limit_bytes``.

    Returns None when done, or the reason it could not be done here (no root, no memory cgroup).
    """
    if os.geteuid() != 0:
        return "needs root to create a memory cgroup"
    name = f"coffee-scraper-oom-{uuid.uuid4().hex[:8]}"
    v1 = Path("/sys/fs/cgroup/memory")
    v2 = Path("/sys/fs/cgroup")
    if (v1 / "memory.limit_in_bytes").exists():
        group, limit_file = v1 / name, "memory.limit_in_bytes"
    elif (v2 / "cgroup.controllers").exists() and "memory" in (v2 / "cgroup.controllers").read_text():
        group, limit_file = v2 / name, "memory.max"
    else:
        return "no memory cgroup controller on this machine"
    try:
        group.mkdir()
    except OSError as exc:
        return f"cannot create a memory cgroup: {exc}"
    try:
        (group / limit_file).write_text(str(limit_bytes))
        if limit_file == "memory.limit_in_bytes" and (group / "memory.memsw.limit_in_bytes").exists():
            with contextlib.suppress(OSError):
                (group / "memory.memsw.limit_in_bytes").write_text(str(limit_bytes))
        code = (
            "import os,sys\n"
            f"open({str(group / 'cgroup.procs')!r},'w').write(str(os.getpid()))\n"
            "x=[]\n"
            "for i in range(256): x.append(bytearray(4*1024*1024))\n"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True)
        if done.returncode != -9:
            return f"the confined process was not OOM-killed (exit {done.returncode})"
        return None
    finally:
        with contextlib.suppress(OSError):
            group.rmdir()
