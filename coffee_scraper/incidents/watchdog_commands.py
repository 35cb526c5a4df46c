"""``coffee-scraper watchdog status|run-once``: what the built-in watchdog sees, and one pass for scripts.

Lives here: the Typer sub-app (parse, call ``incidents/watchdog.py``, print a table or JSON).
Does not live here: measuring or evaluating anything (``incidents/watchdog.py``, ``incidents/measure.py``).
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from coffee_scraper.catalog import db
from coffee_scraper.catalog.models import utcnow
from coffee_scraper.settings import Settings, get_settings

app = typer.Typer(
    help="The built-in watchdog: the runbook's alert rules on live measurements (runs inside `serve`).",
    no_args_is_help=True,
)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]

STATE_STYLE = {"firing": "bold red", "pending": "yellow", "nodata": "magenta", "inhibited": "cyan", "clear": "green"}


def _cli() -> Any:
    from coffee_scraper import cli

    return cli


def _age(iso: str | None, now: datetime) -> str:
    if not iso:
        return "never"
    seconds = (now - datetime.fromisoformat(iso)).total_seconds()
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _state_text(row: dict[str, Any], now: datetime) -> str:
    state = row["state"]
    if state in ("firing", "pending") and row.get("since"):
        return f"{state} since {row['since'][:19].replace('T', ' ')} ({_age(row['since'], now)})"
    if state == "nodata":
        return f"no data: {row.get('reason') or 'unknown'}"
    if state == "inhibited":
        return row.get("reason") or "inhibited"
    if row.get("reason"):
        return f"clear ({row['reason']})"
    return "clear"


def print_status(data: dict[str, Any], now: datetime) -> None:
    cli = _cli()
    interval = float(data.get("interval_s") or 30)
    last = data.get("last_eval")
    stale = last is not None and (now - datetime.fromisoformat(last)).total_seconds() > 3 * interval
    cli.out.print(
        f"last evaluation {_age(last, now)} (every {interval:g} s) by pid {data.get('pid')} on {data.get('host')}; "
        f"incidents recorded in {data.get('incidents_database')}",
        highlight=False,
    )
    if stale:
        cli.out.print(
            "[bold yellow]stale:[/] no evaluation for more than 3 intervals; is `coffee-scraper serve` running "
            "(and COFFEE_SCRAPER_WATCHDOG_ENABLED true)?",
            highlight=False,
        )
    if data.get("spooled_alerts"):
        cli.out.print(
            f"[bold yellow]{data['spooled_alerts']} alert(s) spooled[/] in {data.get('spool_file')}: the incident "
            f"store did not answer ({data.get('last_ingest_error')}); they are replayed once it does.",
            highlight=False,
        )
    table = Table("rule", "sev", "component", "state", "value", "threshold", "for", "detail", "evaluated")
    for row in data.get("rules", []):
        style = STATE_STYLE.get(row["state"], "")
        table.add_row(
            row["rule"],
            row["severity"],
            row["component"],
            f"[{style}]{_state_text(row, now)}[/]" if style else _state_text(row, now),
            row.get("value_text") or "-",
            row["threshold"],
            row["for"],
            row.get("detail") or "",
            _age(row.get("last_eval"), now),
        )
    cli.out.print(table)


@app.command("status")
def status(as_json: JsonOpt = False) -> None:
    """Every rule: current value vs threshold, state (firing since / pending / clear / no data and why), last
    evaluation — as the running watchdog last wrote it to COFFEE_SCRAPER_WATCHDOG_STATE_FILE."""
    from coffee_scraper.incidents.watchdog import read_status_file

    s = get_settings()
    data = read_status_file(s.watchdog_state_file)
    if data is None:
        raise _cli().fail(
            f"no watchdog status at {s.watchdog_state_file}: the watchdog has not run here yet. Start "
            f"`coffee-scraper serve` (it evaluates every {s.watchdog_interval_s:g} s) or run "
            "`coffee-scraper watchdog run-once`; set COFFEE_SCRAPER_WATCHDOG_STATE_FILE if it writes elsewhere."
        )
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        return
    print_status(data, utcnow())


@app.command("run-once")
def run_once(as_json: JsonOpt = False) -> None:
    """Evaluate every rule once now and record firing/resolved alerts as incidents (for cron and scripts).

    Windowed rules (error rates, latency) need two samples and show no data on a single pass; `for` durations
    carry over between passes through the status file. Exit code 0; 1 when the incident store did not answer
    and the alerts were spooled."""
    s = get_settings()
    cli = _cli()
    try:
        prepare_incident_store(s)
    except db.DatabaseConfigError as exc:
        raise cli.fail(str(exc)) from exc
    from coffee_scraper.incidents.watchdog import Watchdog

    watchdog = Watchdog(s)
    try:
        evaluation = watchdog.run_once()
        data = watchdog.status()
    finally:
        watchdog.close()
    if as_json:
        data["alerts_emitted"] = [a.to_json() for a in evaluation.alerts]
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    else:
        print_status(data, utcnow())
        firing = evaluation.firing()
        cli.out.print(
            f"{len(firing)} alert(s) firing; {evaluation.ingested} recorded, {evaluation.spooled} spooled",
            highlight=False,
        )
    if evaluation.spooled:
        raise typer.Exit(1)


def prepare_incident_store(settings: Settings) -> None:
    """Migrate the incident store when it is a database of its own (the catalog's is migrated by every command).

    A store that does not answer is not an error here: the watchdog spools its alerts until it does.
    """
    from coffee_scraper.incidents.store import incidents_url, is_separate

    url = incidents_url(settings)
    db.normalize_url(url)  # a bad URL is a configuration error, said at once
    if not is_separate(settings):
        return
    try:
        db.upgrade(url)
    except Exception as exc:
        from coffee_scraper.observability.logging import get_logger

        get_logger("incidents").warning("incident_store_not_migrated", error=f"{type(exc).__name__}: {exc}")
