"""Diagnostics: the runbook's investigation steps as checks that run concurrently, each with a time limit.

Lives here: one small function per check (service, database, cpu_memory, disk, processes, logs, roasters,
notifications, deployments, largest_files), each returning a ``CheckResult`` {name, status ok|warn|fail|skipped,
summary, details, hint, duration_ms}; ``run_diagnostics`` runs them in daemon threads so a failing or hanging check
never blocks the others; start-up records (git revision + settings fingerprint) behind "recent deployments".
Does not live here: putting results on an incident's timeline and running them when an incident opens
(``followup.py``), remediation (``remediation.py``), printing (``ops_commands.py``) and HTTP (``ops_views.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import itertools
import json
import math
import os
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
import psutil
from pydantic import SecretStr
from sqlalchemy import Engine, create_engine, desc, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from coffee_scraper.catalog import db
from coffee_scraper.catalog.models import Roaster, ScrapeRun
from coffee_scraper.incidents.alert_config import AlertSettings
from coffee_scraper.incidents.ops_models import Deployment
from coffee_scraper.observability.logging import COMPONENTS
from coffee_scraper.observability.redact import mask_url
from coffee_scraper.observability.system import watched_paths
from coffee_scraper.settings import Settings

Status = Literal["ok", "warn", "fail", "skipped"]
STATUS_RANK: dict[str, int] = {"ok": 0, "skipped": 0, "warn": 1, "fail": 2}
TEMP_PATTERN = "coffee-scraper-*"
RECENT_CHANGE = timedelta(hours=24)  # a deployment or settings change this recent is a suspect
LOG_TAIL_BYTES = 1024 * 1024  # per component log file: only the newest MB is read
SCAN_MAX_ENTRIES = 20_000  # largest_files: entries visited per directory at most
TOP_FILES = 10
TOP_PROCESSES = 10
MAX_SHOPS = 10  # roasters: shops probed per run at most
SECRET_NAMES = re.compile(r"(token|password|secret|dsn|webhook_url)", re.I)  # hashed to 16 bits only


@dataclass
class CheckResult:
    """The outcome of one check; ``hint`` says what to do next when it is not ok."""

    name: str
    status: Status
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    hint: str | None = None
    duration_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "summary": self.summary,
            "hint": self.hint,
            "duration_ms": self.duration_ms,
            "details": self.details,
        }


@dataclass
class DiagnosticsReport:
    started_at: datetime
    finished_at: datetime
    checks: list[CheckResult]
    incident_id: str | None = None

    @property
    def status(self) -> Status:
        worst = max((STATUS_RANK[c.status] for c in self.checks), default=0)
        return {0: "ok", 1: "warn", 2: "fail"}[worst]  # type: ignore[return-value]

    def check(self, name: str) -> CheckResult:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def counts(self) -> dict[str, int]:
        out = {"ok": 0, "warn": 0, "fail": 0, "skipped": 0}
        for c in self.checks:
            out[c.status] += 1
        return out

    def summary_line(self) -> str:
        """One line for a timeline entry: "diagnostics: FAIL database, service; WARN logs; 6 ok"."""
        parts = []
        for status in ("fail", "warn"):
            names = [c.name for c in self.checks if c.status == status]
            if names:
                parts.append(f"{status.upper()} {', '.join(names)}")
        counts = self.counts()
        parts.append(f"{counts['ok']} ok" + (f", {counts['skipped']} skipped" if counts["skipped"] else ""))
        return "diagnostics: " + "; ".join(parts)

    def summary_text(self) -> str:
        """A few lines for the incident's next status update: each non-ok check with its summary."""
        lines = [self.summary_line()]
        for c in self.checks:
            if c.status in ("fail", "warn"):
                lines.append(f"- {c.status.upper()} {c.name}: {c.summary}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "incident_id": self.incident_id,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "summary": self.summary_line(),
            "counts": self.counts(),
            "checks": [c.to_dict() for c in self.checks],
        }


class DiagnosticContext:
    """What every check may use: settings, thresholds, clock, the incident's scope and a shared probe engine."""

    def __init__(
        self,
        settings: Settings,
        *,
        alert_settings: AlertSettings | None = None,
        now: Callable[[], datetime] | None = None,
        timeout_s: float | None = None,
        incident_id: str | None = None,
        roasters: Sequence[str] = (),
        engines: Mapping[str, Engine] | None = None,
        service_url: str | None = None,
    ) -> None:
        self.settings = settings
        self.alert_settings = alert_settings or AlertSettings()
        self.now = now or (lambda: datetime.now(UTC))
        self.timeout_s = timeout_s if timeout_s is not None else settings.diagnostics_timeout_s
        self.incident_id = incident_id
        self.roasters = tuple(roasters)
        self.engines = dict(engines or {})
        self.service_url = (service_url or settings.diagnostics_service_url).rstrip("/")
        self._engine: Engine | None = None
        self._incidents_engine: Engine | None = None
        self._lock = threading.Lock()

    @property
    def short_timeout(self) -> float:
        """Time for one network step inside a check (leaves room for the check to report)."""
        return max(0.2, min(self.timeout_s * 0.6, 5.0))

    def engine(self) -> Engine:
        """A probe engine on the catalog database: no pool, short connect timeout, never creates a SQLite file."""
        with self._lock:
            if self._engine is None:
                self._engine = probe_engine(self.settings.database_url, self.short_timeout)
            return self._engine

    def session(self) -> Session:
        return sessionmaker(self.engine(), expire_on_commit=False)()

    def incidents_session(self) -> Session:
        """A session on the incident store (``incidents_database_url``, else the catalog database)."""
        from coffee_scraper.incidents.store import incidents_url, is_separate

        if not is_separate(self.settings):
            return self.session()
        url = incidents_url(self.settings)
        with self._lock:
            if self._incidents_engine is None:
                self._incidents_engine = probe_engine(url, self.short_timeout)
            engine = self._incidents_engine
        return sessionmaker(engine, expire_on_commit=False)()

    def close(self) -> None:
        with self._lock:
            for engine in (self._engine, self._incidents_engine):
                if engine is not None:
                    engine.dispose()
            self._engine = self._incidents_engine = None


class DatabaseFileMissing(RuntimeError):
    """The SQLite file does not exist (diagnostics never creates one)."""


def probe_engine(database_url: str, timeout_s: float) -> Engine:
    url = db.normalize_url(database_url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database
        if path and path != ":memory:" and not path.startswith("file:") and not Path(path).exists():
            raise DatabaseFileMissing(f"the SQLite database file {path} does not exist")
        return create_engine(url, poolclass=NullPool, connect_args={"timeout": timeout_s})
    return create_engine(
        url,
        poolclass=NullPool,
        connect_args={
            "connect_timeout": max(1, math.ceil(timeout_s)),
            "options": f"-c statement_timeout={int(timeout_s * 1000)}",
        },
    )


def _error_text(exc: BaseException) -> str:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return mask_url(f"{type(exc).__name__}: {message}" if message else type(exc).__name__)


# --- the checks -------------------------------------------------------------------------------------------


def _systemd_available(settings: Settings) -> bool:
    if settings.service_manager == "systemd":
        return True
    if settings.service_manager == "none":
        return False
    return shutil.which("systemctl") is not None and Path("/run/systemd/system").is_dir()


def _coffee_processes() -> list[dict[str, Any]]:
    """Running coffee-scraper serve/worker processes (not this one)."""
    found = []
    me = os.getpid()
    for proc in psutil.process_iter(["pid", "cmdline", "create_time"]):
        try:
            cmd = proc.info["cmdline"] or []
            if proc.info["pid"] == me or not cmd:
                continue
            joined = " ".join(cmd)
            if ("coffee-scraper" in joined or "coffee_scraper" in joined) and any(
                word in cmd for word in ("serve", "worker")
            ):
                role = "serve" if "serve" in cmd else "worker"
                found.append({"pid": proc.info["pid"], "role": role, "started": proc.info["create_time"]})
        except (psutil.Error, OSError):
            continue
    return found


def _heartbeats(ctx: DiagnosticContext) -> list[dict[str, Any]]:
    """Heartbeats of running (not cleanly stopped) schedulers and workers, with their age."""
    from coffee_scraper.jobs import service as jobs

    now = ctx.now()
    with ctx.session() as session:
        return [
            {"component": hb.component, "instance": hb.instance, "host": hb.host, "pid": hb.pid,
             "last_beat_at": hb.last_beat_at.isoformat(), "age_s": round((now - hb.last_beat_at).total_seconds(), 1)}
            for hb in jobs.heartbeats(session)
        ]  # fmt: skip


def check_service(ctx: DiagnosticContext) -> CheckResult:
    """systemd unit status when present; otherwise the app's own processes, /health/ready and heartbeats."""
    s = ctx.settings
    if _systemd_available(s):
        try:
            done = subprocess.run(
                ["systemctl", "show", s.systemd_unit, "--no-pager",
                 "--property=LoadState,ActiveState,SubState,MainPID,NRestarts,ActiveEnterTimestamp"],
                capture_output=True, text=True, timeout=ctx.short_timeout,
            )  # fmt: skip
            props = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
        except (OSError, subprocess.TimeoutExpired) as exc:
            props = {"error": _error_text(exc)}
        if props.get("LoadState") not in (None, "not-found") and "error" not in props:
            active = props.get("ActiveState", "unknown")
            status: Status = "ok" if active == "active" else "fail"
            return CheckResult(
                "service", status,
                f"systemd unit {s.systemd_unit}: {active} ({props.get('SubState', '?')}), "
                f"pid {props.get('MainPID', '?')}, restarts {props.get('NRestarts', '?')}",
                {"manager": "systemd", **props},
                hint=None if status == "ok" else f"journalctl -u {s.systemd_unit} -n 100; "
                "coffee-scraper remediate restart-service",
            )  # fmt: skip
    details: dict[str, Any] = {"manager": "none", "service_url": ctx.service_url}
    problems: list[str] = []
    notes: list[str] = []
    processes = _coffee_processes()
    details["processes"] = processes
    notes.append(f"{len(processes)} coffee-scraper serve/worker process(es) running")
    ready: dict[str, Any] | None = None
    try:
        response = httpx.get(f"{ctx.service_url}/health/ready", timeout=ctx.short_timeout)
        try:
            ready = response.json()
        except ValueError:
            ready = {"status": f"HTTP {response.status_code}", "failed": []}
        details["health"] = {"http_status": response.status_code, **(ready or {})}
        if response.status_code == 200:
            notes.append(f"{ctx.service_url}/health/ready ok")
        else:
            failed = ", ".join((ready or {}).get("failed", [])) or f"HTTP {response.status_code}"
            problems.append(f"{ctx.service_url}/health/ready not ready ({failed})")
    except httpx.HTTPError as exc:
        details["health"] = {"error": _error_text(exc)}
        problems.append(f"no answer from {ctx.service_url}/health/ready ({_error_text(exc)})")
    beats: list[dict[str, Any]] | None = None
    try:
        beats = _heartbeats(ctx)
    except Exception as exc:
        details["heartbeats_error"] = _error_text(exc)
    if beats is not None:
        details["heartbeats"] = beats
        limit = ctx.alert_settings.heartbeat_max_age_s
        stale = [b for b in beats if b["age_s"] is None or b["age_s"] > limit]
        if stale:
            problems.append(
                "stale heartbeat: "
                + ", ".join(f"{b['component']} ({b['age_s']:.0f} s)" if b["age_s"] else b["component"] for b in stale)
            )
        elif beats:
            notes.append("heartbeats fresh: " + ", ".join(f"{b['component']} {b['age_s']:.0f} s" for b in beats))
    status = "fail" if problems else "ok"
    return CheckResult(
        "service", status, "; ".join(problems + notes), details,
        hint=None if status == "ok" else "start or restart it: `coffee-scraper serve` (or "
        "`coffee-scraper remediate restart-service` under systemd); logs: `coffee-scraper diagnose` logs section",
    )  # fmt: skip


def _db_port(url: str) -> tuple[str | None, int | None]:
    parsed = make_url(db.normalize_url(url))
    if parsed.get_backend_name() != "postgresql":
        return None, None
    return parsed.host or "127.0.0.1", parsed.port or 5432


def _port_connections(port: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.raddr and conn.raddr.port == port:
                counts[conn.status] = counts.get(conn.status, 0) + 1
    return counts


def pool_state(engine: Engine) -> dict[str, Any]:
    pool = engine.pool
    state: dict[str, Any] = {"status": pool.status()}
    for attr in ("size", "checkedin", "checkedout", "overflow"):
        method = getattr(pool, attr, None)
        if callable(method):
            with contextlib.suppress(Exception):
                state[attr] = method()
    return state


def check_database(ctx: DiagnosticContext) -> CheckResult:
    """SELECT 1 with latency, schema revision, server connections, this process's pools, TCP connections to the port."""
    url = ctx.settings.database_url
    details: dict[str, Any] = {"url": mask_url(url)}
    host, port = _db_port(url)
    if port is not None:
        details["port_connections"] = _port_connections(port)
    if ctx.engines:
        details["pools"] = {name: pool_state(engine) for name, engine in ctx.engines.items()}
    try:
        engine = ctx.engine()
        started = time.perf_counter()
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            latency_ms = round((time.perf_counter() - started) * 1000, 2)
            details["latency_ms"] = latency_ms
            if engine.dialect.name == "postgresql":
                details["server_connections"] = conn.scalar(
                    text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
                )
                details["max_connections"] = int(conn.scalar(text("SHOW max_connections")) or 0)
                details["server_version"] = conn.scalar(text("SHOW server_version"))
            else:
                database = make_url(db.normalize_url(url)).database or ""
                details["journal_mode"] = conn.scalar(text("PRAGMA journal_mode"))
                if database and Path(database).exists():
                    details["file_bytes"] = Path(database).stat().st_size
                    wal = Path(database + "-wal")
                    details["wal_bytes"] = wal.stat().st_size if wal.exists() else 0
        details["revision"] = db.current_revision(engine)
    except Exception as exc:
        where = f" ({host}:{port})" if port else ""
        return CheckResult(
            "database", "fail", f"cannot run SELECT 1 on {mask_url(url)}{where}: {_error_text(exc)}", details,
            hint="PostgreSQL: `systemctl status postgresql`, `pg_isready -h HOST -p PORT`, its log; "
            "SQLite: check the file and disk. Then `coffee-scraper remediate reconnect-db`"
            if port else "check COFFEE_SCRAPER_DATABASE_URL, the file and the disk; "
            "then `coffee-scraper remediate reconnect-db`",
        )  # fmt: skip
    head = db.head_revision()
    details["head"] = head
    problems = []
    if details["revision"] != head:
        problems.append(f"schema at {details['revision']}, code expects {head}")
    max_conn = details.get("max_connections")
    if max_conn and details.get("server_connections", 0) >= 0.8 * max_conn:
        problems.append(f"{details['server_connections']} of {max_conn} server connections in use")
    summary = f"SELECT 1 in {details['latency_ms']} ms"
    if "server_connections" in details:
        summary += f"; {details['server_connections']} connections to this database (max {max_conn})"
    if "port_connections" in details:
        established = details["port_connections"].get("ESTABLISHED", 0)
        summary += f"; {established} established TCP connections to port {port} from this host"
    if "pools" in details:
        summary += "; pools: " + ", ".join(f"{n} {p['status']}" for n, p in details["pools"].items())
    return CheckResult(
        "database", "warn" if problems else "ok", "; ".join([*problems, summary]), details,
        hint="run `coffee-scraper db upgrade`" if details["revision"] != head else None,
    )  # fmt: skip


def _ratio_status(ratio: float, warn_at: float, fail_at: float) -> Status:
    if ratio > fail_at:
        return "fail"
    if ratio > warn_at:
        return "warn"
    return "ok"


def _gib(n: float) -> str:
    return f"{n / 1024**3:.1f} GiB"


def check_cpu_memory(ctx: DiagnosticContext) -> CheckResult:
    """What `free -h` and the top of `htop` show: CPU, load, memory and swap, against the runbook's thresholds."""
    a = ctx.alert_settings
    cpu = psutil.cpu_percent(interval=min(0.3, ctx.short_timeout / 2)) / 100
    vm = psutil.virtual_memory()
    swap = psutil.swap_memory()
    mem_ratio = 1.0 - vm.available / vm.total if vm.total else 0.0
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    details = {
        "cpu_ratio": round(cpu, 3),
        "cpus": psutil.cpu_count(),
        "load_avg": [round(x, 2) for x in load],
        "memory": {"total": vm.total, "available": vm.available, "used_ratio": round(mem_ratio, 4)},
        "swap": {"total": swap.total, "used": swap.used, "used_ratio": round(swap.percent / 100, 4)},
    }
    status = _ratio_status(mem_ratio, a.memory_pressure_ratio, a.memory_exhaustion_ratio)
    problems = []
    if mem_ratio > a.memory_exhaustion_ratio:
        problems.append(f"memory {mem_ratio:.0%} > {a.memory_exhaustion_ratio:.0%} (P0 Memory Exhaustion)")
    elif mem_ratio > a.memory_high_ratio:
        problems.append(f"memory {mem_ratio:.0%} > {a.memory_high_ratio:.0%} (P1 Memory Usage High)")
    elif mem_ratio > a.memory_pressure_ratio:
        problems.append(f"memory {mem_ratio:.0%} > {a.memory_pressure_ratio:.0%} (P2 Resource Constraints)")
    if cpu > a.cpu_pressure_ratio:
        problems.append(f"CPU {cpu:.0%} > {a.cpu_pressure_ratio:.0%}")
        status = "warn" if status == "ok" else status
    summary = (
        f"CPU {cpu:.0%} of {details['cpus']} cores, load {load[0]:.2f}; memory {mem_ratio:.0%} used "
        f"({_gib(vm.available)} of {_gib(vm.total)} available); swap {swap.percent:.0f}% of {_gib(swap.total)}"
    )
    return CheckResult(
        "cpu_memory", status, "; ".join([*problems, summary]), details,
        hint=None if status == "ok" else "see the processes check for the biggest users; "
        "`coffee-scraper remediate pause-queue` to stop new runs",
    )  # fmt: skip


def check_disk(ctx: DiagnosticContext) -> CheckResult:
    """What `df -h` shows, per mount and for each watched path (data, log dirs), against the runbook's thresholds."""
    a = ctx.alert_settings
    mounts = []
    seen: set[str] = set()
    for part in psutil.disk_partitions(all=False):
        if part.mountpoint in seen:
            continue
        seen.add(part.mountpoint)
        try:
            usage = psutil.disk_usage(part.mountpoint)
        except OSError:
            continue
        mounts.append({"path": part.mountpoint, "device": part.device, "fstype": part.fstype,
                       "total": usage.total, "used": usage.used, "free": usage.free,
                       "used_ratio": round(usage.used / usage.total, 4) if usage.total else 0.0})  # fmt: skip
    for path in watched_paths(ctx.settings):
        if path in seen:
            continue
        seen.add(path)
        probe = Path(path)
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
        try:
            usage = psutil.disk_usage(str(probe))
        except OSError:
            continue
        mounts.append({"path": path, "device": "(watched path)", "fstype": "", "total": usage.total,
                       "used": usage.used, "free": usage.free,
                       "used_ratio": round(usage.used / usage.total, 4) if usage.total else 0.0})  # fmt: skip
    worst: Status = "ok"
    problems = []
    for m in mounts:
        st = _ratio_status(m["used_ratio"], a.disk_warning_ratio, a.disk_critical_ratio)
        m["status"] = st
        if STATUS_RANK[st] > STATUS_RANK[worst]:
            worst = st
        if st != "ok":
            level = "P0 Disk Usage Critical" if st == "fail" else "P1 Disk Usage Warning"
            problems.append(f"{m['path']} {m['used_ratio']:.0%} used ({level})")
    fullest = max(mounts, key=lambda m: m["used_ratio"], default=None)
    summary = f"{len(mounts)} filesystems/paths" + (
        f"; fullest {fullest['path']} {fullest['used_ratio']:.0%} ({_gib(fullest['free'])} free)" if fullest else ""
    )
    return CheckResult(
        "disk", worst, "; ".join([*problems, summary]), {"mounts": mounts},
        hint=None if worst == "ok" else "see largest_files; `coffee-scraper remediate clean-temp`, "
        "`remediate rotate-logs`, `remediate prune-artifacts` (each with --dry-run first)",
    )  # fmt: skip


def check_processes(ctx: DiagnosticContext) -> CheckResult:
    """What `ps aux --sort=-%mem | head` shows: the processes using the most memory."""
    rows = []
    for proc in psutil.process_iter(["pid", "name", "username", "memory_info", "memory_percent", "cmdline"]):
        try:
            info = proc.info
            rss = info["memory_info"].rss if info["memory_info"] else 0
            rows.append({"pid": info["pid"], "name": info["name"], "user": info["username"], "rss": rss,
                         "mem_percent": round(info["memory_percent"] or 0.0, 2),
                         "command": mask_url(" ".join(info["cmdline"] or []))[:160]})  # fmt: skip
        except (psutil.Error, OSError, TypeError):
            continue
    rows.sort(key=lambda r: r["rss"], reverse=True)
    top = rows[:TOP_PROCESSES]
    summary = f"{len(rows)} processes; top by memory: " + ", ".join(
        f"{r['name']} ({r['pid']}) {r['rss'] / 1024**2:.0f} MiB" for r in top[:3]
    )
    return CheckResult("processes", "ok", summary, {"top": top})


def log_dir_of(settings: Settings) -> Path | None:
    """The component log directory in use (the configured one, else ./logs), without creating anything."""
    for candidate in (settings.log_dir, Path("logs")):
        if candidate.is_dir():
            return candidate.absolute()
    return None


def _tail(path: Path, max_bytes: int) -> list[str]:
    with path.open("rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, size - max_bytes))
        data = fh.read()
    lines = data.decode("utf-8", errors="replace").splitlines()
    return lines[1:] if size > max_bytes else lines


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def error_lines(path: Path, *, since: datetime, limit: int) -> tuple[list[dict[str, Any]], int]:
    """The newest ``limit`` ERROR/CRITICAL lines newer than ``since`` in one log file, and how many there were."""
    found: list[dict[str, Any]] = []
    for line in _tail(path, LOG_TAIL_BYTES):
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict):
            level = str(record.get("level", "")).lower()
            if level not in ("error", "critical", "exception", "fatal"):
                continue
            at = _parse_time(record.get("timestamp"))
            if at is not None and at < since:
                continue
            message = str(record.get("event", ""))
            extra = {k: v for k, v in record.items() if k not in ("event", "level", "timestamp", "logger")}
            found.append({"at": at.isoformat() if at else None, "level": level, "message": message,
                          "context": mask_url(json.dumps(extra, default=str))[:300]})  # fmt: skip
        elif " ERROR " in f" {line} " or " CRITICAL " in f" {line} ":
            found.append({"at": None, "level": "error", "message": mask_url(line)[:300], "context": ""})
    return found[-limit:], len(found)


def check_logs(ctx: DiagnosticContext) -> CheckResult:
    """Recent ERROR lines of the component logs (app, fetcher, scheduler, incidents)."""
    log_dir = log_dir_of(ctx.settings)
    if log_dir is None:
        return CheckResult(
            "logs", "skipped", f"no log directory at {ctx.settings.log_dir} or ./logs", {},
            hint="logs are written once a command or `serve` ran; set COFFEE_SCRAPER_LOG_DIR",
        )  # fmt: skip
    since = ctx.now() - timedelta(seconds=ctx.settings.diagnostics_log_window_s)
    per_component: dict[str, Any] = {}
    total = 0
    for component in COMPONENTS:
        path = log_dir / f"{component}.log"
        if not path.exists():
            continue
        try:
            lines, count = error_lines(path, since=since, limit=ctx.settings.diagnostics_error_lines)
        except OSError as exc:
            per_component[component] = {"error": _error_text(exc)}
            continue
        # app.log receives every line of ours; the others are copies of the component's own lines
        if component != "app" or count:
            per_component[component] = {"file": str(path), "recent_errors": count, "lines": lines}
        if component == "app":
            total = count
    if total == 0:
        total = sum(v.get("recent_errors", 0) for v in per_component.values())
    window = f"{ctx.settings.diagnostics_log_window_s / 60:g} min"
    if not per_component:
        return CheckResult("logs", "ok", f"no component log files in {log_dir} yet", {"dir": str(log_dir)})
    if total:
        newest = next((v["lines"][-1] for v in per_component.values() if v.get("lines")), {"message": "?"})
        return CheckResult(
            "logs", "warn", f"{total} ERROR lines in the last {window} in {log_dir}; newest: {newest['message']}",
            {"dir": str(log_dir), "components": per_component},
            hint=f"read them: tail -n 200 {log_dir}/app.log (JSON lines; `jq 'select(.level==\"error\")'`)",
        )  # fmt: skip
    return CheckResult(
        "logs", "ok", f"no ERROR lines in the last {window} in {log_dir}", {"dir": str(log_dir),
                                                                          "components": per_component},
    )  # fmt: skip


def _host_is_private(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    for info in infos:
        try:
            ip = ipaddress.ip_address(info[4][0])
        except ValueError:
            continue
        if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved:
            return True
    return False


async def _probe_shops(shops: list[dict[str, Any]], ctx: DiagnosticContext) -> None:
    timeout = httpx.Timeout(ctx.short_timeout)
    headers = {"User-Agent": ctx.settings.user_agent}
    async with httpx.AsyncClient(timeout=timeout, headers=headers, follow_redirects=False) as client:

        async def one(shop: dict[str, Any]) -> None:
            host = urlsplit(shop["base_url"]).hostname or ""
            if not ctx.settings.allow_private_addresses and await asyncio.to_thread(_host_is_private, host):
                shop["reachable"] = None
                shop["probe"] = "not probed: private address (COFFEE_SCRAPER_ALLOW_PRIVATE_ADDRESSES is off)"
                return
            started = time.perf_counter()
            try:
                response = await client.head(shop["base_url"])
                if response.status_code == 405:
                    response = await client.get(shop["base_url"])
                shop["reachable"] = True
                shop["http_status"] = response.status_code
                shop["probe"] = f"HTTP {response.status_code} in {(time.perf_counter() - started) * 1000:.0f} ms"
            except httpx.HTTPError as exc:
                shop["reachable"] = False
                shop["probe"] = _error_text(exc)

        await asyncio.gather(*(one(s) for s in shops))


def check_roasters(ctx: DiagnosticContext) -> CheckResult:
    """Each affected shop's reachability and last status (affected = the incident's roasters, else troubled ones)."""
    with ctx.session() as session:
        roasters = list(session.scalars(select(Roaster).order_by(Roaster.name)))
        if not roasters:
            return CheckResult("roasters", "skipped", "no roasters configured", {})
        last_runs: dict[int, ScrapeRun] = {}
        newest = (
            select(ScrapeRun.roaster_id, func.max(ScrapeRun.id).label("run_id")).group_by(ScrapeRun.roaster_id)
        ).subquery()
        for run in session.scalars(select(ScrapeRun).join(newest, ScrapeRun.id == newest.c.run_id)):
            last_runs[run.roaster_id] = run
    by_name = {r.name: r for r in roasters}
    if ctx.roasters:
        selected = [by_name[n] for n in ctx.roasters if n in by_name]
        why = "affected by the incident"
    else:
        selected = [
            r for r in roasters
            if r.circuit_state != "closed" or (r.id in last_runs and last_runs[r.id].status == "fail")
        ]  # fmt: skip
        why = "with an open circuit or a failed last run"
    open_circuits = sum(1 for r in roasters if r.circuit_state == "open")
    paused = sum(1 for r in roasters if not r.active)
    overview = {"roasters": len(roasters), "open_circuits": open_circuits, "paused": paused}
    if not selected:
        return CheckResult(
            "roasters", "ok", f"{len(roasters)} roasters: no open circuits, no failed last runs"
            + (f", {paused} paused" if paused else ""), overview,
        )  # fmt: skip
    shops: list[dict[str, Any]] = []
    for r in selected[:MAX_SHOPS]:
        last = last_runs.get(r.id)
        shops.append({
            "roaster": r.name, "base_url": r.base_url, "active": r.active, "paused_reason": r.paused_reason,
            "circuit_state": r.circuit_state, "consecutive_failures": r.consecutive_failures,
            "last_success_at": r.last_success_at.isoformat() if r.last_success_at else None,
            "last_run": {"id": last.id, "status": last.status, "error_summary": last.error_summary,
                         "finished_at": last.finished_at.isoformat() if last.finished_at else None} if last else None,
        })  # fmt: skip
    asyncio.run(_probe_shops(shops, ctx))
    unreachable = [s["roaster"] for s in shops if s.get("reachable") is False]
    status: Status = "warn" if unreachable or open_circuits else "ok"
    if ctx.roasters and unreachable and len(unreachable) == len(shops):
        status = "fail"
    parts = [f"{len(selected)} roasters {why}"]
    if unreachable:
        parts.append("unreachable: " + ", ".join(unreachable))
    parts.append(f"{open_circuits} of {len(roasters)} circuits open")
    parts.append("; ".join(f"{s['roaster']}: {s['probe']}, circuit {s['circuit_state']}, last run "
                           f"{(s['last_run'] or {}).get('status', 'none')}" for s in shops))  # fmt: skip
    return CheckResult(
        "roasters", status, "; ".join(parts), {**overview, "shops": shops},
        hint=None if status == "ok" else "open the shop in a browser; hold a failing shop with "
        "`coffee-scraper remediate open-circuit ROASTER --minutes 60`, release it with `close-circuit`",
    )  # fmt: skip


def _secret(value: SecretStr | str | None) -> str | None:
    if isinstance(value, SecretStr):
        return value.get_secret_value() or None
    return value or None


def _tcp_reach(url: str, timeout: float) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    started = time.perf_counter()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        if parts.scheme == "https":
            context = ssl.create_default_context()
            with context.wrap_socket(sock, server_hostname=host):
                pass
    return f"{host}:{port} reachable in {(time.perf_counter() - started) * 1000:.0f} ms"


def _channel_probes(ctx: DiagnosticContext) -> dict[str, Callable[[], str]]:
    s = ctx.settings
    timeout = ctx.short_timeout
    probes: dict[str, Callable[[], str]] = {}
    slack = _secret(getattr(s, "slack_webhook_url", None))
    if slack:
        probes["slack"] = lambda: _tcp_reach(slack, timeout)
    repo = getattr(s, "github_repo", None)
    if repo:
        api = str(getattr(s, "github_api_url", "https://api.github.com")).rstrip("/")
        token = _secret(getattr(s, "github_token", None))

        def github() -> str:
            headers = {"Accept": "application/vnd.github+json", "User-Agent": "coffee-scraper-diagnostics"}
            if token:
                headers["Authorization"] = f"Bearer {token}"
            response = httpx.get(f"{api}/repos/{repo}", headers=headers, timeout=timeout)
            if response.status_code != 200:
                raise RuntimeError(f"GET /repos/{repo} answered HTTP {response.status_code}")
            return f"{api}/repos/{repo} HTTP 200"

        probes["github"] = github
    smtp_host = getattr(s, "smtp_host", None)
    if smtp_host:
        port = int(getattr(s, "smtp_port", 25))

        def smtp() -> str:
            cls = smtplib.SMTP_SSL if getattr(s, "smtp_ssl", False) else smtplib.SMTP
            with cls(smtp_host, port, timeout=timeout) as client:
                code, _ = client.ehlo()
                client.noop()
            return f"{smtp_host}:{port} answered EHLO {code}"

        probes["email"] = smtp
    webhook = getattr(s, "webhook_url", None)
    if webhook:
        probes["webhook"] = lambda: _tcp_reach(webhook, timeout)
    return probes


def check_notifications(ctx: DiagnosticContext) -> CheckResult:
    """Slack/GitHub/SMTP/webhook reachability (no message is sent) and the outbox's undelivered messages."""
    probes = _channel_probes(ctx)
    channels: dict[str, Any] = {}
    for name, probe in probes.items():
        try:
            channels[name] = {"reachable": True, "probe": probe()}
        except Exception as exc:
            channels[name] = {"reachable": False, "probe": _error_text(exc)}
    details: dict[str, Any] = {"channels": channels}
    with contextlib.suppress(Exception):
        details["outbox"] = _outbox_state(ctx)
    if not probes:
        return CheckResult(
            "notifications", "warn", "no notification channel configured: nobody is paged", details,
            hint="set COFFEE_SCRAPER_SLACK_WEBHOOK_URL, COFFEE_SCRAPER_GITHUB_REPO/TOKEN or COFFEE_SCRAPER_SMTP_HOST",
        )  # fmt: skip
    down = [n for n, c in channels.items() if not c["reachable"]]
    parts = [f"{n}: {c['probe']}" for n, c in channels.items()]
    outbox = details.get("outbox") or {}
    if outbox.get("undelivered"):
        parts.append(f"outbox: {outbox['undelivered']} undelivered")
    status: Status = "fail" if down and len(down) == len(channels) else ("warn" if down else "ok")
    return CheckResult(
        "notifications", status, "; ".join(parts), details,
        hint=None if status == "ok" else "check the channel's URL/credentials and network; "
        "messages wait in the outbox and are retried",
    )  # fmt: skip


def _outbox_state(ctx: DiagnosticContext) -> dict[str, Any] | None:
    """Messages per channel and status in the notification outbox (the incident store)."""
    from coffee_scraper.incidents.notify.models import NotificationOutbox as table

    with ctx.incidents_session() as session:
        rows = session.execute(select(table.channel, table.status, func.count()).group_by(table.channel, table.status))
        per: dict[str, dict[str, int]] = {}
        undelivered = 0
        for channel, status, count in rows:
            per.setdefault(channel, {})[status] = count
            if status not in ("sent", "dead"):
                undelivered += count
    return {"per_channel": per, "undelivered": undelivered}


# --- deployments (start-up records) ---------------------------------------------------------------------------


def git_revision(start: Path | None = None) -> str | None:
    """The commit checked out at the package's repository (read from .git, no subprocess), or None."""
    root = start or Path(__file__).resolve().parents[2]
    git = root / ".git"
    if git.is_file():  # a worktree: "gitdir: PATH"
        content = git.read_text(encoding="utf-8").strip()
        if content.startswith("gitdir:"):
            git = (root / content.split(":", 1)[1].strip()).resolve()
    head_file = git / "HEAD"
    if not head_file.is_file():
        return None
    head = head_file.read_text(encoding="utf-8").strip()
    if not head.startswith("ref:"):
        return head or None
    ref = head.split(":", 1)[1].strip()
    common = git
    commondir = git / "commondir"
    if commondir.is_file():
        common = (git / commondir.read_text(encoding="utf-8").strip()).resolve()
    for base in (git, common):
        ref_file = base / ref
        if ref_file.is_file():
            return ref_file.read_text(encoding="utf-8").strip() or None
    packed = common / "packed-refs"
    if packed.is_file():
        for line in packed.read_text(encoding="utf-8").splitlines():
            if line.endswith(" " + ref):
                return line.split(" ", 1)[0]
    return None


def package_version() -> str:
    try:
        return metadata.version("coffee-scraper")
    except metadata.PackageNotFoundError:
        return "unknown"


def settings_hashes(settings: Settings) -> dict[str, str]:
    """A short hash per setting value, so a change can be named without revealing values.

    Secrets get a 16-bit hash: enough to notice a change, useless for guessing the secret.
    """
    out: dict[str, str] = {}
    for name, spec in type(settings).model_fields.items():
        value = getattr(settings, name)
        secret = isinstance(value, SecretStr) or "SecretStr" in str(spec.annotation) or SECRET_NAMES.search(name)
        if secret:
            raw = value.get_secret_value() if isinstance(value, SecretStr) else str(value or "")
            digest = hashlib.sha256(raw.encode()).hexdigest()[:4]
        else:
            digest = hashlib.sha256(json.dumps(value, default=str, sort_keys=True).encode()).hexdigest()[:12]
        out[name] = digest
    return out


def settings_fingerprint(hashes: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(dict(sorted(hashes.items()))).encode()).hexdigest()[:16]


def current_deployment(settings: Settings) -> dict[str, Any]:
    hashes = settings_hashes(settings)
    return {"version": package_version(), "git_revision": git_revision(),
            "settings_fingerprint": settings_fingerprint(hashes), "settings_hashes": hashes}  # fmt: skip


def record_startup(
    factory: sessionmaker[Session], settings: Settings, component: str, *, now: Callable[[], datetime] | None = None
) -> Deployment:
    """Write a start-up record (git revision + settings fingerprint) for ``component``; returns it."""
    info = current_deployment(settings)
    row = Deployment(
        component=component, version=info["version"], git_revision=info["git_revision"],
        settings_fingerprint=info["settings_fingerprint"], settings_hashes=info["settings_hashes"],
        host=socket.gethostname()[:200], pid=os.getpid(), started_at=(now or (lambda: datetime.now(UTC)))(),
    )  # fmt: skip
    with db.session_scope(factory) as session:
        session.add(row)
    return row


def deployment_changes(older: Deployment | dict[str, Any], newer: Deployment | dict[str, Any]) -> list[str]:
    """What changed between two start-ups: "code abc1234 → def5678", "settings: log_level, request_delay_s"."""

    def get(obj: Deployment | dict[str, Any], key: str) -> Any:
        return obj.get(key) if isinstance(obj, dict) else getattr(obj, key)

    changes = []
    old_rev, new_rev = get(older, "git_revision"), get(newer, "git_revision")
    if old_rev != new_rev:
        changes.append(f"code {(old_rev or 'unknown')[:7]} → {(new_rev or 'unknown')[:7]}")
    elif get(older, "version") != get(newer, "version"):
        changes.append(f"version {get(older, 'version')} → {get(newer, 'version')}")
    old_h, new_h = get(older, "settings_hashes") or {}, get(newer, "settings_hashes") or {}
    changed = sorted(k for k in set(old_h) | set(new_h) if old_h.get(k) != new_h.get(k))
    if changed:
        changes.append("settings: " + ", ".join(changed))
    return changes


def check_deployments(ctx: DiagnosticContext) -> CheckResult:
    """Recent deployments and config changes: start-up records (git revision, settings fingerprint) and what changed."""
    current = current_deployment(ctx.settings)
    details: dict[str, Any] = {"this_process": {k: v for k, v in current.items() if k != "settings_hashes"}}
    with ctx.incidents_session() as session:
        rows = list(session.scalars(select(Deployment).order_by(desc(Deployment.started_at)).limit(10)))
    now = ctx.now()
    details["startups"] = [
        {"component": r.component, "started_at": r.started_at.isoformat(), "git_revision": r.git_revision,
         "version": r.version, "settings_fingerprint": r.settings_fingerprint, "host": r.host, "pid": r.pid}
        for r in rows
    ]  # fmt: skip
    rev = (current["git_revision"] or "unknown")[:7]
    if not rows:
        return CheckResult(
            "deployments", "ok", f"code {rev} (v{current['version']}), settings {current['settings_fingerprint']}; "
            "no start-up recorded yet", details,
        )  # fmt: skip
    recent_changes = []
    for newer, older in itertools.pairwise(rows):
        if newer.component != older.component:
            continue
        changes = deployment_changes(older, newer)
        if changes and now - newer.started_at <= RECENT_CHANGE:
            ago = (now - newer.started_at).total_seconds() / 3600
            recent_changes.append(f"{newer.component} restarted {ago:.1f} h ago with " + "; ".join(changes))
    last = rows[0]
    drift = deployment_changes(last, current)
    details["recent_changes"] = recent_changes
    details["checkout_vs_last_start"] = drift
    parts = [f"last start: {last.component} at {last.started_at:%Y-%m-%d %H:%M} UTC, code "
             f"{(last.git_revision or 'unknown')[:7]}, settings {last.settings_fingerprint}"]  # fmt: skip
    if drift:
        parts.append("this checkout differs from the last start (" + "; ".join(drift) + "): not deployed yet?")
    status: Status = "warn" if recent_changes else "ok"
    return CheckResult(
        "deployments", status, "; ".join(recent_changes + parts), details,
        hint="a change shortly before the incident is a suspect: compare with the previous revision/settings"
        if recent_changes else None,
    )  # fmt: skip


# --- largest files -----------------------------------------------------------------------------------------


def temp_dir_of(settings: Settings) -> Path:
    return (settings.temp_dir or Path(tempfile.gettempdir())).absolute()


def data_dir_of(settings: Settings) -> Path | None:
    if not settings.is_sqlite:
        return None
    database = make_url(db.normalize_url(settings.database_url)).database
    if not database or database == ":memory:":
        return None
    return Path(database).absolute().parent


def _walk_files(root: Path, deadline: float) -> Iterator[tuple[Path, int]]:
    """Regular files under ``root`` (no symlinks followed), at most SCAN_MAX_ENTRIES entries, until ``deadline``."""
    stack = [root]
    seen = 0
    while stack and seen < SCAN_MAX_ENTRIES and time.monotonic() < deadline:
        current = stack.pop()
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    seen += 1
                    if seen >= SCAN_MAX_ENTRIES:
                        break
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
                        elif entry.is_file(follow_symlinks=False):
                            yield Path(entry.path), entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        except OSError:
            continue


def check_largest_files(ctx: DiagnosticContext) -> CheckResult:
    """The largest files in the data, log and temp directories (what `du`/`find -size +100M` would show)."""
    dirs: dict[str, Path] = {}
    data = data_dir_of(ctx.settings)
    if data is not None:
        dirs["data"] = data
    log_dir = log_dir_of(ctx.settings)
    if log_dir is not None:
        dirs["logs"] = log_dir
    dirs["temp"] = temp_dir_of(ctx.settings)
    for i, extra in enumerate(ctx.settings.diagnostics_watched_dirs, 1):
        dirs[f"watched{i}"] = extra.absolute()
    deadline = time.monotonic() + ctx.timeout_s * 0.7
    per_dir: dict[str, Any] = {}
    everything: list[dict[str, Any]] = []
    for label, path in dirs.items():
        if not path.is_dir():
            per_dir[label] = {"path": str(path), "missing": True}
            continue
        total = count = 0
        files = []
        for file, size in _walk_files(path, deadline):
            total += size
            count += 1
            files.append((size, file))
        files.sort(reverse=True)
        per_dir[label] = {"path": str(path), "files": count, "bytes": total,
                          "largest": [{"path": str(f), "bytes": s} for s, f in files[:TOP_FILES]]}  # fmt: skip
        everything.extend({"dir": label, "path": str(f), "bytes": s} for s, f in files[:TOP_FILES])
    everything.sort(key=lambda f: f["bytes"], reverse=True)
    temp = dirs["temp"]
    cleanable = []
    if temp.is_dir():
        cutoff = time.time() - ctx.settings.temp_min_age_s
        for entry in temp.glob(TEMP_PATTERN):
            with contextlib.suppress(OSError):
                if entry.lstat().st_mtime < cutoff:
                    cleanable.append(str(entry))
    details = {"dirs": per_dir, "largest": everything[:TOP_FILES], "cleanable_temp_entries": cleanable}
    sizes = ", ".join(
        f"{label} {info['bytes'] / 1024**2:.1f} MiB in {info['files']} files"
        for label, info in per_dir.items() if not info.get("missing")
    )  # fmt: skip
    top = everything[0] if everything else None
    summary = sizes + (f"; largest {top['path']} ({top['bytes'] / 1024**2:.1f} MiB)" if top else "")
    if cleanable:
        summary += f"; {len(cleanable)} old {TEMP_PATTERN} entries in {temp}"
    return CheckResult(
        "largest_files", "ok", summary, details,
        hint="`coffee-scraper remediate clean-temp --dry-run` lists what would be removed" if cleanable else None,
    )  # fmt: skip


# --- running them -------------------------------------------------------------------------------------------

CheckFn = Callable[[DiagnosticContext], CheckResult]

CHECKS: dict[str, CheckFn] = {
    "service": check_service,
    "database": check_database,
    "cpu_memory": check_cpu_memory,
    "disk": check_disk,
    "processes": check_processes,
    "logs": check_logs,
    "roasters": check_roasters,
    "notifications": check_notifications,
    "deployments": check_deployments,
    "largest_files": check_largest_files,
}


def _run_one(name: str, fn: CheckFn, ctx: DiagnosticContext, results: dict[str, CheckResult]) -> None:
    started = time.perf_counter()
    try:
        result = fn(ctx)
    except DatabaseFileMissing as exc:
        result = CheckResult(name, "fail", f"{exc}", {}, hint="run `coffee-scraper db upgrade` to create it")
    except Exception as exc:
        result = CheckResult(name, "fail", f"check failed: {_error_text(exc)}", {"error": _error_text(exc)})
    result.name = name
    result.duration_ms = round((time.perf_counter() - started) * 1000, 1)
    results[name] = result


def run_diagnostics(
    settings: Settings,
    *,
    incident_id: str | None = None,
    roasters: Sequence[str] = (),
    only: Sequence[str] | None = None,
    checks: Mapping[str, CheckFn] | None = None,
    now: Callable[[], datetime] | None = None,
    timeout_s: float | None = None,
    engines: Mapping[str, Engine] | None = None,
    alert_settings: AlertSettings | None = None,
    service_url: str | None = None,
) -> DiagnosticsReport:
    """Run the checks concurrently (each in a daemon thread) and return when all answered or the time limit passed.

    A check still running at the limit is reported as failed ("no answer within N s") and left behind; it can
    never delay the report or the process's exit.
    """
    clock = now or (lambda: datetime.now(UTC))
    ctx = DiagnosticContext(
        settings, alert_settings=alert_settings, now=clock, timeout_s=timeout_s, incident_id=incident_id,
        roasters=roasters, engines=engines, service_url=service_url,
    )  # fmt: skip
    selected = dict(checks or CHECKS)
    if only:
        unknown = [n for n in only if n not in selected]
        if unknown:
            raise ValueError(f"unknown check(s) {', '.join(unknown)}; choose from {', '.join(selected)}")
        selected = {n: selected[n] for n in only}
    started_at = clock()
    results: dict[str, CheckResult] = {}
    threads = []
    for name, fn in selected.items():
        thread = threading.Thread(target=_run_one, args=(name, fn, ctx, results), daemon=True, name=f"diag-{name}")
        thread.start()
        threads.append((name, thread))
    deadline = time.monotonic() + ctx.timeout_s
    for _name, thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    ordered = []
    for name, _thread in threads:
        result = results.get(name)
        if result is None:
            result = CheckResult(
                name, "fail", f"no answer within {ctx.timeout_s:g} s (the check hangs; the others still ran)",
                {"timeout_s": ctx.timeout_s}, duration_ms=round(ctx.timeout_s * 1000, 1),
                hint="raise COFFEE_SCRAPER_DIAGNOSTICS_TIMEOUT_S if the system is just slow",
            )  # fmt: skip
        ordered.append(result)
    if all(name in results for name, _ in threads):
        ctx.close()  # a hanging check may still hold the probe engine; then it is left to the garbage collector
    return DiagnosticsReport(started_at=started_at, finished_at=clock(), checks=ordered, incident_id=incident_id)
