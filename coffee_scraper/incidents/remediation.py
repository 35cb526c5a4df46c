"""Remediation actions: explicit, audited and safe by default (the runbook's "Resolution Phase" as commands).

Lives here: the registry ``ACTIONS`` (restart-service, pause-queue, resume-queue, open-circuit, close-circuit,
clean-temp, rotate-logs, prune-artifacts, reconnect-db), each with a description, a dry-run plan and a real run
(open-circuit / close-circuit act on a roaster's shop breaker, or with the ``channel`` parameter on a notification
channel's breaker, ``notify/circuit.py``);
``remediate(...)`` which runs one and writes the audit row (``remediation_runs``) plus, with an incident, a timeline
entry; the automatic-remediation policy (``auto_remediate``: only actions the settings switch on, never deletion of
catalog data); the registry of this process's database engines (``reconnect-db`` disposes their pools).
Does not live here: the queue's pause switch (``jobs/service.py``), the breakers' logic (``storefronts/http.py``,
``notify/circuit.py``), printing (``ops_commands.py``), HTTP (``ops_views.py``).
"""

from __future__ import annotations

import contextlib
import fnmatch
import gzip
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import psutil
from sqlalchemy import Engine, delete, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from coffee_scraper.catalog import db
from coffee_scraper.catalog import service as catalog
from coffee_scraper.catalog.models import RawArtifact, Roaster, ScrapeRun
from coffee_scraper.incidents.diagnostics import (
    TEMP_PATTERN,
    _error_text,
    _systemd_available,
    log_dir_of,
    pool_state,
    probe_engine,
    temp_dir_of,
)
from coffee_scraper.incidents.ops_models import RemediationRun
from coffee_scraper.observability.logging import COMPONENTS, get_logger
from coffee_scraper.observability.metrics import CIRCUIT_STATE
from coffee_scraper.settings import Settings

Outcome = Literal["ok", "failed", "skipped", "planned"]
CIRCUIT_VALUES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
AUTO_ACTOR = "system (auto-remediation)"
ARTIFACT_DELETE_CHUNK = 500


class RemediationError(ValueError):
    """An action cannot run as asked (unknown action, missing target); the message says what to do."""


@dataclass
class ActionResult:
    status: Outcome
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class RemediationContext:
    settings: Settings
    catalog: sessionmaker[Session] | None  # catalog database sessions (None: not reachable / not needed)
    now: Callable[[], datetime]
    actor: str
    target: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    incidents: sessionmaker[Session] | None = None  # the incident store (notification circuits live there)


@dataclass(frozen=True)
class Action:
    name: str
    description: str
    run: Callable[[RemediationContext, bool], ActionResult]  # (context, dry_run)
    target: str | None = None  # what the target argument names ("ROASTER"), None when the action takes none
    destructive: bool = False  # removes files/rows or restarts: the CLI asks before a real run
    channel: bool = False  # also acts on a notification channel (parameter ``channel``) instead of the target


# --- this process's engines (reconnect-db, pool state in diagnostics) ------------------------------------------

_ENGINES: dict[str, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def register_engine(name: str, engine: Engine) -> None:
    """Let ``reconnect-db`` reset this engine's pool and diagnostics show its state (the app registers its own)."""
    with _ENGINES_LOCK:
        _ENGINES[name] = engine


def unregister_engine(name: str) -> None:
    with _ENGINES_LOCK:
        _ENGINES.pop(name, None)


def registered_engines() -> dict[str, Engine]:
    with _ENGINES_LOCK:
        return dict(_ENGINES)


# --- actions ------------------------------------------------------------------------------------------------


def _restart_service(ctx: RemediationContext, dry_run: bool) -> ActionResult:
    unit = ctx.settings.systemd_unit
    if not _systemd_available(ctx.settings):
        return ActionResult(
            "skipped",
            "no service manager to restart through (not running under systemd): restart the `coffee-scraper serve` "
            "process with whatever runs it (e.g. `docker compose restart app`), or set "
            "COFFEE_SCRAPER_SERVICE_MANAGER=systemd",
            {"manager": "none"},
        )
    command = ["systemctl", "restart", "--no-block", unit]
    if dry_run:
        return ActionResult("planned", f"would run: {' '.join(command)}", {"manager": "systemd", "command": command})
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return ActionResult("failed", f"{' '.join(command)} failed: {_error_text(exc)}", {"command": command})
    details = {"manager": "systemd", "command": command, "returncode": done.returncode,
               "stderr": done.stderr.strip()[-500:]}  # fmt: skip
    if done.returncode != 0:
        return ActionResult(
            "failed",
            f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()[:200]} "
            f"(check `systemctl status {unit}`; restarting needs root or a polkit rule)",
            details,
        )
    return ActionResult("ok", f"restart of {unit} queued with systemd; check `systemctl status {unit}`", details)


def _queue(ctx: RemediationContext, dry_run: bool, *, pause: bool) -> ActionResult:
    from coffee_scraper.jobs import service as jobs

    if ctx.catalog is None:
        return ActionResult("failed", "the catalog database is not reachable: the queue switch lives there")
    with db.session_scope(ctx.catalog) as session:
        paused, reason = jobs.queue_paused(session)
        details = {"was_paused": paused, "reason": reason}
        if pause:
            if paused:
                return ActionResult("skipped", f"the scraping queue is already paused ({reason})", details)
            if dry_run:
                return ActionResult("planned", "would pause the scraping queue (runs in flight finish)", details)
            why = str(ctx.params.get("reason") or f"paused by {ctx.actor}")
            jobs.pause_queue(session, reason=why, by=ctx.actor, now=ctx.now())
            return ActionResult("ok", f"scraping queue paused ({why}); resume with `remediate resume-queue`", details)
        if not paused:
            return ActionResult("skipped", "the scraping queue is not paused", details)
        if dry_run:
            return ActionResult("planned", f"would resume the scraping queue (paused: {reason})", details)
        jobs.resume_queue(session, now=ctx.now())
        return ActionResult("ok", f"scraping queue resumed (was paused: {reason})", details)


def _roaster(session: Session, ctx: RemediationContext) -> Roaster:
    if not ctx.target:
        raise RemediationError("name the roaster: `coffee-scraper remediate open-circuit ROASTER`")
    try:
        return catalog.get_roaster(session, ctx.target)
    except catalog.CatalogError as exc:
        raise RemediationError(str(exc)) from exc


def _channel_circuit(ctx: RemediationContext, dry_run: bool, *, open_it: bool) -> ActionResult:
    """Hold a notification channel's circuit open for N minutes, or close it now (manual override)."""
    from coffee_scraper.incidents.notify import circuit

    try:
        channel = circuit.check_channel(str(ctx.params.get("channel")))
    except circuit.CircuitError as exc:
        raise RemediationError(str(exc)) from exc
    if ctx.incidents is None:
        return ActionResult("failed", "the incident store is not reachable: notification circuits live there")
    now = ctx.now()
    with db.session_scope(ctx.incidents) as session:
        row = circuit.state_of(session, channel)
        was = row.state if row is not None else "closed"
        failures = row.consecutive_failures if row is not None else 0
        details: dict[str, Any] = {"channel": channel, "was": was, "consecutive_failures": failures}
        if open_it:
            minutes = float(ctx.params.get("minutes") or ctx.settings.notify_circuit_reset_s / 60)
            if minutes <= 0:
                raise RemediationError("--minutes must be positive")
            until = now + timedelta(minutes=minutes)
            details["until"] = until.isoformat()
            if dry_run:
                return ActionResult(
                    "planned", f"would hold the {channel} notification circuit open (now {was}) until "
                    f"{until:%Y-%m-%d %H:%M} UTC: its messages wait in the outbox, none is dropped", details,
                )  # fmt: skip
            circuit.force_open(session, channel, now=now, until=until, by=ctx.actor, reason=ctx.params.get("reason"))
            return ActionResult(
                "ok", f"{channel} notification circuit held open until {until:%Y-%m-%d %H:%M} UTC (then one probe "
                f"message); its messages wait. Release earlier with `remediate close-circuit --channel {channel}`",
                details,
            )  # fmt: skip
        if was == "closed" and not failures:
            return ActionResult("skipped", f"the {channel} notification circuit is already closed", details)
        if dry_run:
            return ActionResult(
                "planned", f"would close the {channel} notification circuit (now {was}, {failures} failures in a "
                "row) so its waiting messages go on the next delivery pass", details,
            )  # fmt: skip
        circuit.force_close(session, channel, now=now, by=ctx.actor, reason=ctx.params.get("reason"))
    return ActionResult(
        "ok", f"{channel} notification circuit closed; its waiting messages go on the next delivery pass", details
    )


def _open_circuit(ctx: RemediationContext, dry_run: bool) -> ActionResult:
    """Hold a shop's circuit open for N minutes (manual override); the breaker's half-open probe follows after."""
    if ctx.params.get("channel"):
        return _channel_circuit(ctx, dry_run, open_it=True)
    if ctx.catalog is None:
        return ActionResult("failed", "the catalog database is not reachable: circuit states live there")
    reset_s = ctx.settings.breaker_reset_s
    minutes = float(ctx.params.get("minutes") or reset_s / 60)
    if minutes <= 0:
        raise RemediationError("--minutes must be positive")
    now = ctx.now()
    until = now + timedelta(minutes=minutes)
    with db.session_scope(ctx.catalog) as session:
        roaster = _roaster(session, ctx)
        details = {"roaster": roaster.name, "was": roaster.circuit_state, "until": until.isoformat()}
        if dry_run:
            return ActionResult(
                "planned", f"would open the circuit of {roaster.name} (now {roaster.circuit_state}) until "
                f"{until:%Y-%m-%d %H:%M} UTC: no requests to {roaster.base_url} before then", details,
            )  # fmt: skip
        # the breaker lets a half-open probe through breaker_reset_s after circuit_opened_at
        roaster.circuit_state = "open"
        roaster.circuit_opened_at = until - timedelta(seconds=reset_s)
        roaster.fetch_state = {
            **(roaster.fetch_state or {}),
            "circuit_override": {"state": "open", "by": ctx.actor, "at": now.isoformat(), "until": until.isoformat()},
        }
        name = roaster.name
    CIRCUIT_STATE.labels(name).set(CIRCUIT_VALUES["open"])
    return ActionResult(
        "ok", f"circuit of {name} held open until {until:%Y-%m-%d %H:%M} UTC (then one probe request); "
        f"release earlier with `remediate close-circuit {name}`", details,
    )  # fmt: skip


def _close_circuit(ctx: RemediationContext, dry_run: bool) -> ActionResult:
    if ctx.params.get("channel"):
        return _channel_circuit(ctx, dry_run, open_it=False)
    if ctx.catalog is None:
        return ActionResult("failed", "the catalog database is not reachable: circuit states live there")
    with db.session_scope(ctx.catalog) as session:
        roaster = _roaster(session, ctx)
        details = {"roaster": roaster.name, "was": roaster.circuit_state,
                   "consecutive_failures": roaster.consecutive_failures}  # fmt: skip
        if roaster.circuit_state == "closed" and not roaster.consecutive_failures:
            return ActionResult("skipped", f"the circuit of {roaster.name} is already closed", details)
        if dry_run:
            return ActionResult(
                "planned", f"would close the circuit of {roaster.name} (now {roaster.circuit_state}, "
                f"{roaster.consecutive_failures} failures in a row) so the next run fetches normally", details,
            )  # fmt: skip
        roaster.circuit_state = "closed"
        roaster.circuit_opened_at = None
        roaster.consecutive_failures = 0
        state = dict(roaster.fetch_state or {})
        state.pop("circuit_override", None)
        roaster.fetch_state = state
        name = roaster.name
    CIRCUIT_STATE.labels(name).set(CIRCUIT_VALUES["closed"])
    return ActionResult("ok", f"circuit of {name} closed; its next run fetches normally", details)


def _paths_in_use(paths: list[Path]) -> dict[str, str]:
    """Which of ``paths`` a running process uses (cwd inside, an open file inside, or named on its command line)."""
    if not paths:
        return {}
    prefixes = {str(p): str(p) + os.sep for p in paths}
    used: dict[str, str] = {}
    me = os.getpid()
    for proc in psutil.process_iter(["pid", "name", "cmdline", "cwd"]):
        try:
            if proc.info["pid"] == me:
                continue
            cmdline = " ".join(proc.info["cmdline"] or [])
            cwd = proc.info["cwd"] or ""
            try:
                files = [f.path for f in proc.open_files()]
            except (psutil.Error, OSError):
                files = []
            for path, prefix in prefixes.items():
                if path in used:
                    continue
                if path in cmdline or cwd == path or cwd.startswith(prefix) or any(
                    f == path or f.startswith(prefix) for f in files
                ):  # fmt: skip
                    used[path] = f"in use by {proc.info['name']} (pid {proc.info['pid']})"
        except (psutil.Error, OSError):
            continue
    return used


def _newest_mtime(path: Path, limit: int = 5000) -> float:
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for i, (root, dirs, files) in enumerate(os.walk(path)):
            for name in dirs + files:
                with contextlib.suppress(OSError):
                    newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
            if i > limit:
                break
    return newest


def _size(path: Path) -> int:
    if path.is_symlink() or not path.is_dir():
        return path.lstat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def _clean_temp(ctx: RemediationContext, dry_run: bool) -> ActionResult:
    """Remove ``coffee-scraper-*`` entries directly under the temp dir: old enough and used by no process."""
    temp = temp_dir_of(ctx.settings)
    if not temp.is_dir():
        return ActionResult("skipped", f"temp directory {temp} does not exist", {"temp_dir": str(temp)})
    min_age = ctx.settings.temp_min_age_s
    cutoff = ctx.now().timestamp() - min_age
    candidates = sorted(p for p in temp.iterdir() if fnmatch.fnmatch(p.name, TEMP_PATTERN))
    in_use = _paths_in_use(candidates)
    remove: list[dict[str, Any]] = []
    kept: list[dict[str, Any]] = []
    for path in candidates:
        try:
            if str(path) in in_use:
                kept.append({"path": str(path), "why": in_use[str(path)]})
            elif _newest_mtime(path) > cutoff:
                kept.append({"path": str(path), "why": f"modified within the last {min_age:g} s"})
            else:
                remove.append({"path": str(path), "bytes": _size(path)})
        except OSError as exc:
            kept.append({"path": str(path), "why": _error_text(exc)})
    freed = sum(r["bytes"] for r in remove)
    details: dict[str, Any] = {"temp_dir": str(temp), "pattern": TEMP_PATTERN, "remove": remove, "kept": kept}
    if dry_run:
        return ActionResult(
            "planned", f"would remove {len(remove)} {TEMP_PATTERN} entries in {temp} ({freed / 1024**2:.1f} MiB); "
            f"keeps {len(kept)}", details,
        )  # fmt: skip
    removed, errors = 0, []
    for item in remove:
        path = Path(item["path"])
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed += 1
        except OSError as exc:
            errors.append({"path": str(path), "error": _error_text(exc)})
    details["errors"] = errors
    status: Outcome = "failed" if errors and not removed else "ok"
    return ActionResult(
        status, f"removed {removed} {TEMP_PATTERN} entries in {temp} ({freed / 1024**2:.1f} MiB freed), kept "
        f"{len(kept)}" + (f", {len(errors)} could not be removed" if errors else ""), details,
    )  # fmt: skip


def _rotated_logs(log_dir: Path) -> Iterator[Path]:
    """Rotated backups of the component logs (``app.log.1`` …); never the live ``*.log`` files."""
    for component in COMPONENTS:
        for path in sorted(log_dir.glob(f"{component}.log.*")):
            if path.suffix != ".gz" and path.name.removeprefix(f"{component}.log.").isdigit():
                yield path


def _rotate_logs(ctx: RemediationContext, dry_run: bool) -> ActionResult:
    """gzip rotated component logs older than log_compress_after_days; delete archives older than retention."""
    log_dir = log_dir_of(ctx.settings)
    if log_dir is None:
        return ActionResult("skipped", f"no log directory at {ctx.settings.log_dir} or ./logs")
    now = ctx.now().timestamp()
    compress_before = now - ctx.settings.log_compress_after_days * 86400
    delete_before = now - ctx.settings.log_retention_days * 86400
    to_compress = [p for p in _rotated_logs(log_dir) if p.stat().st_mtime < compress_before]
    to_delete = [p for p in sorted(log_dir.glob("*.gz")) if p.stat().st_mtime < delete_before]
    details: dict[str, Any] = {
        "log_dir": str(log_dir),
        "compress": [str(p) for p in to_compress],
        "delete": [str(p) for p in to_delete],
    }
    deleted_bytes = sum(p.stat().st_size for p in to_delete)
    if dry_run:
        return ActionResult(
            "planned", f"would gzip {len(to_compress)} rotated logs older than "
            f"{ctx.settings.log_compress_after_days:g} days and delete {len(to_delete)} archives older than "
            f"{ctx.settings.log_retention_days:g} days ({deleted_bytes / 1024**2:.1f} MiB) in {log_dir}", details,
        )  # fmt: skip
    saved = 0
    for path in to_compress:
        stat = path.stat()
        stamp = datetime.fromtimestamp(stat.st_mtime, UTC).strftime("%Y%m%dT%H%M%S")
        target = path.with_name(f"{path.name.rsplit('.', 1)[0]}.{stamp}.gz")
        n = 1
        while target.exists():
            target = path.with_name(f"{path.name.rsplit('.', 1)[0]}.{stamp}-{n}.gz")
            n += 1
        with path.open("rb") as src, gzip.open(target, "wb", compresslevel=6) as dst:
            shutil.copyfileobj(src, dst)
        os.utime(target, (stat.st_atime, stat.st_mtime))  # the archive keeps the log's age for retention
        saved += stat.st_size - target.stat().st_size
        path.unlink()
    for path in to_delete:
        path.unlink()
    return ActionResult(
        "ok", f"gzipped {len(to_compress)} rotated logs ({saved / 1024**2:.1f} MiB saved) and deleted "
        f"{len(to_delete)} archives ({deleted_bytes / 1024**2:.1f} MiB) in {log_dir}", details,
    )  # fmt: skip


def _prune_artifacts(ctx: RemediationContext, dry_run: bool) -> ActionResult:
    """Delete raw pages older than artifact_retention_days, keeping each roaster's latest run's pages."""
    if ctx.catalog is None:
        return ActionResult("failed", "the catalog database is not reachable: raw pages live there")
    days = ctx.settings.artifact_retention_days
    cutoff = ctx.now() - timedelta(days=days)
    latest_runs = (
        select(func.max(ScrapeRun.id)).where(ScrapeRun.id.in_(select(RawArtifact.run_id).distinct()))
        .group_by(ScrapeRun.roaster_id)
    )  # fmt: skip
    old = select(RawArtifact.id).where(
        RawArtifact.fetched_at < cutoff,
        (RawArtifact.run_id.is_(None)) | (RawArtifact.run_id.not_in(latest_runs)),
    )
    with db.session_scope(ctx.catalog) as session:
        ids = list(session.scalars(old))
        size = session.scalar(select(func.coalesce(func.sum(RawArtifact.size_bytes), 0)).where(RawArtifact.id.in_(old)))
        details: dict[str, Any] = {"retention_days": days, "cutoff": cutoff.isoformat(), "artifacts": len(ids),
                                   "bytes": int(size or 0)}  # fmt: skip
        if dry_run:
            return ActionResult(
                "planned", f"would delete {len(ids)} raw pages fetched before {cutoff:%Y-%m-%d} "
                f"({int(size or 0) / 1024**2:.1f} MiB uncompressed); each roaster's latest run is kept; "
                "catalog rows are never touched", details,
            )  # fmt: skip
        for start in range(0, len(ids), ARTIFACT_DELETE_CHUNK):
            chunk = ids[start : start + ARTIFACT_DELETE_CHUNK]
            session.execute(delete(RawArtifact).where(RawArtifact.id.in_(chunk)))
    note = " (SQLite keeps the file size until VACUUM)" if ctx.settings.is_sqlite else ""
    return ActionResult(
        "ok", f"deleted {len(ids)} raw pages fetched before {cutoff:%Y-%m-%d} ({int(size or 0) / 1024**2:.1f} MiB)"
        f"{note}; each roaster's latest run is kept", details,
    )  # fmt: skip


def _reconnect_db(ctx: RemediationContext, dry_run: bool) -> ActionResult:
    """Dispose the pools of this process's engines (fresh connections next time), then probe the database."""
    engines = registered_engines()
    details: dict[str, Any] = {"pools_before": {n: pool_state(e) for n, e in engines.items()}}
    if dry_run:
        names = ", ".join(engines) or "none in this process"
        return ActionResult("planned", f"would reset the connection pools ({names}) and run SELECT 1", details)
    for engine in engines.values():
        engine.dispose()
    try:
        probe = probe_engine(ctx.settings.database_url, max(1.0, ctx.settings.diagnostics_timeout_s))
        started = time.perf_counter()
        with probe.connect() as conn:
            conn.execute(text("SELECT 1"))
        latency = round((time.perf_counter() - started) * 1000, 2)
        probe.dispose()
    except Exception as exc:
        details["error"] = _error_text(exc)
        return ActionResult(
            "failed",
            f"pools reset ({len(engines)}), but the database still does not answer: {_error_text(exc)}",
            details,
        )
    details["latency_ms"] = latency
    where = f"{len(engines)} pool(s) reset" if engines else "no pools in this process (run it in `serve` via the API)"
    return ActionResult("ok", f"{where}; database answers SELECT 1 in {latency} ms", details)


ACTIONS: dict[str, Action] = {
    a.name: a
    for a in (
        Action("restart-service", "Restart the app through systemd (`systemctl restart coffee-scraper`).",
               _restart_service, destructive=True),
        Action("pause-queue", "Pause the scraping queue: no new runs start (runs in flight finish).",
               lambda c, d: _queue(c, d, pause=True)),
        Action("resume-queue", "Resume the scraping queue.", lambda c, d: _queue(c, d, pause=False)),
        Action("open-circuit", "Hold a roaster's circuit breaker open (no requests to the shop) for --minutes; "
               "with --channel a notification channel's (its messages wait).",
               _open_circuit, target="ROASTER", channel=True),
        Action("close-circuit", "Close a roaster's circuit breaker so its next run fetches normally; with --channel "
               "a notification channel's (its waiting messages go).",
               _close_circuit, target="ROASTER", channel=True),
        Action("clean-temp", f"Remove {TEMP_PATTERN} entries in the temp dir (old enough, used by no process).",
               _clean_temp, destructive=True),
        Action("rotate-logs", "gzip rotated component logs and delete archives past the retention.",
               _rotate_logs, destructive=True),
        Action("prune-artifacts", "Delete raw pages past the retention (each roaster's latest run is kept).",
               _prune_artifacts, destructive=True),
        Action("reconnect-db", "Reset this process's database connection pools and probe the database.",
               _reconnect_db),
    )
}  # fmt: skip


# --- running one, with its audit record ------------------------------------------------------------------------


@dataclass
class RemediationRecord:
    id: int | None
    action: str
    target: str | None
    dry_run: bool
    automatic: bool
    actor: str
    incident_id: str | None
    status: Outcome
    summary: str
    details: dict[str, Any]
    started_at: datetime
    finished_at: datetime
    audit_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "action": self.action, "target": self.target, "dry_run": self.dry_run,
            "automatic": self.automatic, "actor": self.actor, "incident_id": self.incident_id, "status": self.status,
            "summary": self.summary, "details": self.details, "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(), "audit_error": self.audit_error,
        }  # fmt: skip


def _record_on_timeline(session: Session, record: RemediationRecord) -> None:
    from coffee_scraper.incidents import events
    from coffee_scraper.incidents.models import Incident

    assert record.incident_id is not None
    incident = session.get(Incident, record.incident_id)
    if incident is None:
        raise RemediationError(f"no incident {record.incident_id}; `coffee-scraper incidents list` shows them")
    what = f"{record.action} {record.target}" if record.target else record.action
    prefix = "dry run of " if record.dry_run else ("automatic " if record.automatic else "")
    events.record(
        session, incident, "diagnostic", now=record.finished_at, actor=record.actor,
        message=f"remediation: {prefix}{what}: {record.status} — {record.summary}",
        data={"type": "remediation", **{k: v for k, v in record.to_dict().items() if k != "details"},
              "details": record.details},
    )  # fmt: skip


def check_incident(incidents: sessionmaker[Session], incident_id: str) -> None:
    """Raise RemediationError when the incident does not exist (before anything runs)."""
    from coffee_scraper.incidents.models import Incident

    with incidents() as session:
        if session.get(Incident, incident_id) is None:
            raise RemediationError(f"no incident {incident_id}; `coffee-scraper incidents list` shows them")


def remediate(
    action: str,
    *,
    settings: Settings,
    catalog_factory: sessionmaker[Session] | None,
    incidents_factory: sessionmaker[Session] | None,
    target: str | None = None,
    params: Mapping[str, Any] | None = None,
    dry_run: bool = False,
    actor: str = "cli",
    incident_id: str | None = None,
    automatic: bool = False,
    now: Callable[[], datetime] | None = None,
) -> RemediationRecord:
    """Run (or dry-run) one action and audit it: a ``remediation_runs`` row, and a timeline entry with an incident.

    Raises RemediationError for an unknown action, a missing target or an unknown incident (nothing ran then).
    An action that fails returns status "failed" (it never raises for the system's own trouble).
    """
    clock = now or (lambda: datetime.now(UTC))
    spec = ACTIONS.get(action)
    if spec is None:
        raise RemediationError(f"unknown action {action!r}; choose from {', '.join(ACTIONS)}")
    channel = (params or {}).get("channel")
    if channel and not spec.channel:
        raise RemediationError(f"{action} does not act on a notification channel (only open-circuit, close-circuit)")
    if channel and target:
        raise RemediationError(f"{action}: give a roaster or --channel, not both")
    if spec.target and not target and not channel:
        hint = " (or --channel NAME for a notification channel)" if spec.channel else ""
        raise RemediationError(
            f"{action} needs a {spec.target}{hint}: `coffee-scraper remediate {action} {spec.target}`"
        )
    if not spec.target and target:
        raise RemediationError(f"{action} takes no target (got {target!r})")
    if incident_id and incidents_factory is not None:
        check_incident(incidents_factory, incident_id)
    ctx = RemediationContext(
        settings, catalog_factory, clock, actor, target, dict(params or {}), incidents=incidents_factory
    )
    if channel:
        target = f"channel:{str(channel).strip().lower()}"  # how the audit trail names it
    started = clock()
    try:
        result = spec.run(ctx, dry_run)
    except RemediationError:
        raise
    except Exception as exc:
        result = ActionResult("failed", f"{action} failed: {_error_text(exc)}", {"error": _error_text(exc)})
    record = RemediationRecord(
        None, action, target, dry_run, automatic, actor, incident_id, result.status, result.summary, result.details,
        started, clock(),
    )  # fmt: skip
    log = get_logger("incidents")
    log.info("remediation", **{k: v for k, v in record.to_dict().items() if k != "details"})
    if incidents_factory is None:
        record.audit_error = "no incident database to record the run in"
        return record
    try:
        with db.session_scope(incidents_factory) as session:
            row = RemediationRun(
                action=action, target=target, params=dict(params or {}), dry_run=dry_run, automatic=automatic,
                actor=actor, incident_id=incident_id, status=result.status, summary=result.summary,
                details=result.details, started_at=record.started_at, finished_at=record.finished_at,
            )  # fmt: skip
            session.add(row)
            session.flush()
            record.id = row.id
            if incident_id:
                _record_on_timeline(session, record)
    except RemediationError:
        raise
    except Exception as exc:
        record.audit_error = _error_text(exc)
        log.error("remediation_audit_failed", action=action, error=record.audit_error)
    return record


def history(
    session: Session, *, incident_id: str | None = None, limit: int = 50, since: datetime | None = None
) -> list[RemediationRun]:
    stmt = select(RemediationRun).order_by(RemediationRun.id.desc()).limit(limit)
    if incident_id:
        stmt = stmt.where(RemediationRun.incident_id == incident_id)
    if since is not None:
        stmt = stmt.where(RemediationRun.started_at >= since)
    return list(session.scalars(stmt))


# --- automatic remediation ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AutoPolicy:
    """Run ``action`` when an incident matching ``applies`` opens and the setting ``switch`` is on."""

    switch: str
    action: str
    applies: Callable[[Any], bool]
    why: str


STORAGE_P0_RULES = frozenset({"DatabaseDown", "DatabaseReadinessFailing", "HighRPCErrorRate"})
DATABASE_CATEGORIES = frozenset({"database failure", "database connection issues"})


def _is_storage_p0(incident: Any) -> bool:
    category = (incident.category or "").lower()
    return incident.severity == "P0" and (
        incident.rule in STORAGE_P0_RULES or category in ("database failure", "high rpc error rate")
    )


AUTO_POLICIES: tuple[AutoPolicy, ...] = (
    AutoPolicy("auto_pause_queue_on_storage_p0", "pause-queue", _is_storage_p0,
               "P0 database/storage errors: stop starting runs that would hammer the failing database"),
    AutoPolicy("auto_clean_temp_on_disk_p0", "clean-temp",
               lambda i: i.severity == "P0" and (i.rule == "DiskUsageCritical"
                                                 or (i.category or "").lower() == "disk usage critical"),
               "P0 disk usage: remove old coffee-scraper temp files"),
    AutoPolicy("auto_reconnect_db_on_db_incident", "reconnect-db",
               lambda i: (i.category or "").lower() in DATABASE_CATEGORIES,
               "database incident: reset the connection pools"),
)  # fmt: skip


def auto_remediate(
    incident: Any,
    *,
    settings: Settings,
    catalog_factory: sessionmaker[Session] | None,
    incidents_factory: sessionmaker[Session] | None,
    now: Callable[[], datetime] | None = None,
) -> list[RemediationRecord]:
    """The automatic actions the settings allow for this newly opened incident (each audited on its timeline)."""
    records = []
    for policy in AUTO_POLICIES:
        if not getattr(settings, policy.switch, False) or not policy.applies(incident):
            continue
        records.append(
            remediate(
                policy.action,
                settings=settings,
                catalog_factory=catalog_factory,
                incidents_factory=incidents_factory,
                actor=AUTO_ACTOR,
                incident_id=incident.id,
                automatic=True,
                params={"reason": f"{incident.id}: {policy.why}"},
                now=now,
            )
        )
    return records
