"""CLI of scheduling: `coffee-scraper jobs list|pause|resume|run-now|forget` and `coffee-scraper worker`.

Thin: parse, call ``jobs.service`` / ``execute`` / ``distributed``, print a table or --json. The shared helpers
(database(), fail(), JSON printing) are ``coffee_scraper.cli``'s, imported at call time (cli imports us).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from coffee_scraper.catalog import db
from coffee_scraper.catalog import service as catalog
from coffee_scraper.catalog.db import session_scope
from coffee_scraper.catalog.models import utcnow
from coffee_scraper.jobs import service
from coffee_scraper.jobs.cadence import CadenceError
from coffee_scraper.jobs.embedded import liveness_window_s
from coffee_scraper.jobs.runtime import ModeError, resolve_mode

jobs_app = typer.Typer(
    help="Scheduled runs: cadences and next run times, pause/resume, run a roaster now, worker heartbeats.",
    no_args_is_help=True,
)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]
ModeOpt = Annotated[str, typer.Option("--mode", help="full (whole catalog) or price (prices and stock only).")]


def _cli() -> Any:
    from coffee_scraper import cli

    return cli


def _mode_or_fail(cli: Any) -> str:
    try:
        return resolve_mode(cli.settings())
    except ModeError as exc:
        raise cli.fail(str(exc)) from exc


def _when(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "-"
    delta = (value - now).total_seconds()
    stamp = value.strftime("%Y-%m-%d %H:%M")
    if abs(delta) < 90:
        return f"{stamp} (now)"
    span = abs(delta)
    unit = f"{span / 86400:.1f}d" if span >= 86400 else f"{span / 3600:.1f}h" if span >= 3600 else f"{span / 60:.0f}m"
    return f"{stamp} ({'in ' + unit if delta > 0 else unit + ' ago'})"


# --- jobs list --------------------------------------------------------------------------------------


@jobs_app.command("list")
def jobs_list(
    roaster: Annotated[str | None, typer.Option(help="Only this roaster.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Every roaster's price and full schedule (cadence, next run, last result), the queue and heartbeats."""
    cli = _cli()
    s = cli.settings()
    mode = _mode_or_fail(cli)
    now = utcnow()
    with cli.database() as factory, factory() as session:
        views = service.schedule_views(session, s, now, roaster)
        if roaster and not views:
            raise cli.fail(f"no roaster {roaster!r}; `coffee-scraper roasters list` shows the known ones")
        state = service.queue_state(session)
        queue = {
            "paused": state.paused,
            "reason": state.reason,
            "paused_at": state.paused_at,
            "paused_by": state.paused_by,
        }
        depth = service.queue_depth(session, now)
        beats = [
            {
                "component": h.component,
                "instance": h.instance,
                "host": h.host,
                "pid": h.pid,
                "last_beat_at": h.last_beat_at,
                "age_s": round((now - h.last_beat_at).total_seconds(), 1),
                "info": h.info,
            }
            for h in service.heartbeats(session)
        ]
    rows: list[dict[str, Any]] = [
        {
            "roaster": v.roaster,
            "mode": v.mode,
            "active": v.active,
            "paused_reason": v.paused_reason,
            "cadence": v.cadence,
            "cadence_is_default": v.cadence_is_default,
            "next_due_at": v.next_due_at,
            "pending_since": v.pending_since,
            "last_status": v.last_status,
            "last_finished_at": v.last_finished_at,
            "error": v.error,
        }
        for v in views
    ]
    if as_json:
        cli._print_json(
            {"scheduler_mode": mode, "queue": queue, "queue_depth": depth, "heartbeats": beats, "schedules": rows}
        )
        return
    out = cli.out
    status = f"[bold red]paused[/] ({queue['reason']})" if queue["paused"] else "[green]running[/]"
    out.print(f"scheduler mode: {mode} · queue: {status}", highlight=False)
    out.print("waiting runs: " + ", ".join(f"{k} {v}" for k, v in sorted(depth.items())), highlight=False)
    for b in beats:
        out.print(f"heartbeat {b['component']} {b['instance']}: {b['age_s']:.0f}s ago", highlight=False)
    if not beats:
        hint = "`coffee-scraper serve`" if mode == "embedded" else "`coffee-scraper worker`"
        out.print(f"no scheduler or worker running (start {hint})", highlight=False)
    table = Table("roaster", "mode", "cadence", "next run", "state", "last")
    for r in rows:
        state_text = "paused" if not r["active"] else ("in progress" if r["pending_since"] else "scheduled")
        cadence = r["cadence"] + ("" if r["cadence_is_default"] else " *")
        table.add_row(
            r["roaster"],
            r["mode"],
            cadence,
            r["error"] or _when(r["next_due_at"], now),
            state_text,
            r["last_status"] or "-",
        )
    out.print(table)
    out.print("* = the roaster's own cadence (others: COFFEE_SCRAPER_FULL_CADENCE / _PRICE_CADENCE)", highlight=False)


# --- pause / resume -----------------------------------------------------------------------------------


@jobs_app.command("pause")
def jobs_pause(
    roaster: Annotated[str | None, typer.Argument(help="A roaster to pause; without it the whole queue.")] = None,
    reason: Annotated[str, typer.Option(help="Why (shown in `jobs list` and to the on-call).")] = "paused by hand",
    as_json: JsonOpt = False,
) -> None:
    """Pause one roaster (no more runs of it) or, without ROASTER, every scheduled and queued run."""
    cli = _cli()
    now = utcnow()
    with cli.database() as factory, session_scope(factory) as session:
        if roaster:
            r = catalog.get_roaster(session, roaster)
            changed = r.active
            if changed:
                service.pause_roaster(session, r, reason=reason, now=now)
            result = {"roaster": r.name, "paused": True, "changed": changed, "reason": r.paused_reason}
        else:
            changed = service.pause_queue(session, reason=reason, by="cli", now=now)
            result = {"queue": "all", "paused": True, "changed": changed, "reason": service.queue_state(session).reason}
    if as_json:
        cli._print_json(result)
        return
    what = f"roaster {roaster}" if roaster else "the queue"
    verb = "paused" if changed else "was already paused"
    cli.out.print(f"{what} {verb}; `coffee-scraper jobs resume{' ' + roaster if roaster else ''}` resumes it")


@jobs_app.command("resume")
def jobs_resume(
    roaster: Annotated[str | None, typer.Argument(help="A paused roaster; without it the whole queue.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Resume a paused roaster (its failure streak is forgotten) or, without ROASTER, the paused queue."""
    cli = _cli()
    now = utcnow()
    with cli.database() as factory, session_scope(factory) as session:
        if roaster:
            r = catalog.get_roaster(session, roaster)
            changed = service.resume_roaster(session, r)
            result: dict[str, Any] = {"roaster": r.name, "paused": False, "changed": changed}
        else:
            changed = service.resume_queue(session, now=now)
            result = {"queue": "all", "paused": False, "changed": changed}
    if as_json:
        cli._print_json(result)
        return
    what = f"roaster {roaster}" if roaster else "the queue"
    cli.out.print(f"{what} {'resumed' if changed else 'was not paused'}")


# --- run-now ----------------------------------------------------------------------------------------


@jobs_app.command("run-now")
def jobs_run_now(
    roaster: Annotated[str, typer.Argument(help="The roaster to run.")],
    mode: ModeOpt = "full",
    as_json: JsonOpt = False,
) -> None:
    """Run a roaster now: queued for workers or the running scheduler, else run right here.

    Distributed mode defers a job ahead of scheduled ones; embedded mode asks the running `serve` scheduler,
    or scrapes in this process when no scheduler is running.
    """
    cli = _cli()
    if mode not in {"full", "price"}:
        raise cli.fail(f"--mode must be full or price, not {mode!r}")
    s = cli.settings()
    scheduler_mode = _mode_or_fail(cli)
    now = utcnow()
    with cli.database() as factory:
        with factory() as session:
            r = catalog.get_roaster(session, roaster)
            if not r.active:
                raise cli.fail(
                    f"roaster {r.name} is paused ({r.paused_reason or 'no reason given'}); "
                    f"`coffee-scraper jobs resume {r.name}` first"
                )
            paused, reason = service.queue_paused(session)
            if paused:
                raise cli.fail(f"the queue is paused ({reason}); `coffee-scraper jobs resume` first")
        if scheduler_mode == "distributed":
            from coffee_scraper.jobs.distributed import enqueue_now

            job_id = enqueue_now(factory, roaster, mode, now=now)
            result = {"roaster": roaster, "mode": mode, "queued": job_id is not None, "job_id": job_id}
            if as_json:
                cli._print_json(result)
            elif job_id is None:
                cli.out.print(f"a {mode} run of {roaster} is already waiting in the queue")
            else:
                cli.out.print(f"queued a {mode} run of {roaster} (job {job_id}) ahead of scheduled runs")
            return
        with factory() as session:
            alive = service.live_sessions(session, now, liveness_window_s(s))
            schedulers = [
                h for h in service.heartbeats(session) if h.component == "scheduler" and h.session_id in alive
            ]
        if scheduler_mode == "embedded" and schedulers:
            with session_scope(factory) as session:
                service.request_run(session, catalog.get_roaster(session, roaster), mode, now=now, settings=s)
            result = {"roaster": roaster, "mode": mode, "queued": True, "scheduler": schedulers[0].instance}
            if as_json:
                cli._print_json(result)
            else:
                cli.out.print(
                    f"asked the scheduler on {schedulers[0].instance} to run {roaster} ({mode}); it starts within "
                    f"{s.scheduler_tick_s:g} s (`coffee-scraper runs list --roaster {roaster}` shows it)"
                )
            return
        report = _run_here(cli, factory, s, roaster, mode)
    raise typer.Exit(cli._print_reports([report], as_json))


def _run_here(cli: Any, factory: Any, s: Any, roaster: str, mode: str) -> Any:
    from coffee_scraper.jobs.execute import QueuePaused, RetryableRunError, StorageGuard, execute_run

    with session_scope(factory) as session:  # schedule rows exist, so the run's result shows in `jobs list`
        service.sync_schedules(session, s, utcnow())
    try:
        return asyncio.run(
            execute_run(roaster, mode, settings=s, factory=factory, trigger="manual", guard=StorageGuard(s))  # type: ignore[arg-type]
        )
    except QueuePaused as exc:
        raise cli.fail(f"the queue is paused ({exc.reason}); `coffee-scraper jobs resume` first") from exc
    except RetryableRunError as exc:
        raise cli.fail(f"{exc}; check the database (`coffee-scraper serve` → /health/ready)", code=1) from exc


# --- forget -----------------------------------------------------------------------------------------


@jobs_app.command("forget")
def jobs_forget(
    instance: Annotated[str, typer.Argument(help="The instance (host:pid or worker --name) from `jobs list`.")],
    as_json: JsonOpt = False,
) -> None:
    """Forget the heartbeat of a scheduler or worker that is gone for good (stops its 'System Down' alert)."""
    cli = _cli()
    with cli.database() as factory, session_scope(factory) as session:
        removed = service.forget_heartbeat(session, instance)
    if as_json:
        cli._print_json({"instance": instance, "removed": removed})
        return
    if not removed:
        raise cli.fail(f"no heartbeat of {instance!r}; `coffee-scraper jobs list` shows the known ones")
    cli.out.print(f"forgot {removed} heartbeat row(s) of {instance}")


# --- worker -----------------------------------------------------------------------------------------


def worker(
    concurrency: Annotated[
        int | None, typer.Option(help="Runs at once (default COFFEE_SCRAPER_WORKER_CONCURRENCY).")
    ] = None,
    queues: Annotated[
        str | None,
        typer.Option(help="Comma-separated queues to take runs from: price, full, maintenance (default: all)."),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Worker name in heartbeats and logs (default host:pid).")] = None,
    one_shot: Annotated[bool, typer.Option("--one-shot", help="Exit when the queues are empty.")] = False,
    metrics_port: Annotated[int, typer.Option(help="Serve /metrics on this port (0 = do not).")] = 0,
    metrics_host: Annotated[str, typer.Option(help="Address for --metrics-port.")] = "127.0.0.1",
) -> None:
    """Run a distributed worker (PostgreSQL + procrastinate): roaster runs, due-run enqueueing, stalled-run
    recovery. Start as many as you like, on any machine, with the same COFFEE_SCRAPER_DATABASE_URL; SIGTERM
    stops one gracefully."""
    from coffee_scraper.jobs.distributed import ALL_QUEUES, run_worker
    from coffee_scraper.observability.logging import configure_logging

    cli = _cli()
    s = cli.settings()
    mode = _mode_or_fail(cli)
    if s.is_sqlite:
        raise cli.fail(
            "workers need PostgreSQL (the queue lives there): set COFFEE_SCRAPER_DATABASE_URL=postgresql+psycopg://"
            "user@host/db; with SQLite the scheduler runs inside `coffee-scraper serve`"
        )
    if mode != "distributed":
        raise cli.fail(
            f"COFFEE_SCRAPER_SCHEDULER_MODE={s.scheduler_mode} does not use workers; set it to 'distributed' or 'auto'"
        )
    chosen = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    unknown = [q for q in chosen or [] if q not in ALL_QUEUES]
    if unknown:
        raise cli.fail(f"unknown queue(s) {', '.join(unknown)}; use {', '.join(ALL_QUEUES)}")
    if concurrency is not None and concurrency < 1:
        raise cli.fail("--concurrency must be 1 or more")
    configure_logging(s, console_level="INFO", component="scheduler")
    _wait_for_schema(cli, s.database_url)
    if metrics_port:
        _serve_metrics(cli, metrics_host, metrics_port)
    try:
        asyncio.run(run_worker(s, concurrency=concurrency, queues=chosen, name=name, wait=not one_shot))
    except CadenceError as exc:
        raise cli.fail(str(exc)) from exc


def _wait_for_schema(cli: Any, url: str, timeout_s: float = 120.0) -> None:
    """Workers never migrate (several could race): wait for `db upgrade` / `serve` to bring the schema to head."""
    engine = db.make_engine(url)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                if db.migrations_current(engine):
                    return
                problem = "the database schema is not at the code's revision"
            except Exception as exc:
                problem = f"cannot reach the database: {type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                raise cli.fail(f"{problem}; run `coffee-scraper db upgrade` (workers never migrate themselves)")
            cli.err.print(f"waiting: {problem} …", highlight=False)
            time.sleep(2.0)
    finally:
        engine.dispose()


def _serve_metrics(cli: Any, host: str, port: int) -> None:
    from prometheus_client import start_http_server

    from coffee_scraper.web.app import metrics_registry

    try:
        start_http_server(port, addr=host, registry=metrics_registry())
    except OSError as exc:
        raise cli.fail(f"cannot serve metrics on {host}:{port}: {exc}") from exc
