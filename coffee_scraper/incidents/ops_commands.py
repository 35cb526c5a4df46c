"""CLI of investigation, recovery and learning: ``diagnose``, ``remediate``, ``runbook``, ``report``, ``drill`` and the
follow-up commands meant for ``incidents`` (``postmortem``, ``checklist``, ``check``, ``action-item``).

Lives here: Typer commands (parse, call the domain modules, print a table or JSON, exit codes).
Does not live here: the checks (``diagnostics.py``), the actions (``remediation.py``), checklists and postmortems
(``followup.py``), the runbook text (``runbook.py``), drills (``drills.py``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from sqlalchemy.orm import Session, sessionmaker

from coffee_scraper.catalog import db
from coffee_scraper.settings import Settings

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]
STATUS_STYLE = {
    "ok": "green",
    "warn": "yellow",
    "fail": "bold red",
    "skipped": "dim",
    "planned": "cyan",
    "failed": "bold red",
}

followup_app = typer.Typer(
    help="Post-incident follow-through: checklists, postmortems, action items (meant for `incidents`).",
    no_args_is_help=True,
)


def _cli() -> Any:
    from coffee_scraper import cli

    return cli


def _now() -> datetime:
    return datetime.now(UTC)


@contextmanager
def stores(
    settings: Settings, *, migrate: bool = True
) -> Iterator[tuple[sessionmaker[Session], sessionmaker[Session]]]:
    """(catalog sessions, incident-store sessions); the same factory when both live in one database.

    Migration problems are reported but do not stop the command: remediation must work while a database is down.
    """
    from coffee_scraper.incidents.store import incidents_url, is_separate
    from coffee_scraper.observability.logging import configure_logging

    cli = _cli()
    configure_logging(settings, console_level="ERROR")
    urls = [settings.database_url]
    if is_separate(settings):
        urls.append(incidents_url(settings))
    engines = []
    try:
        for url in urls:
            if migrate:
                try:
                    db.upgrade(url)
                except db.DatabaseConfigError as exc:
                    raise cli.fail(str(exc)) from exc
                except Exception as exc:
                    cli.err.print(
                        f"[yellow]warning:[/] cannot migrate {cli._masked(url)} ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''}); continuing",
                        highlight=False,
                    )
            engines.append(db.make_engine(url))
    except db.DatabaseConfigError as exc:
        raise cli.fail(str(exc)) from exc
    catalog = db.session_factory(engines[0])
    incidents = db.session_factory(engines[-1])
    try:
        yield catalog, incidents
    finally:
        for engine in engines:
            engine.dispose()


def _roasters_of(incidents: sessionmaker[Session], incident_id: str) -> list[str]:
    from coffee_scraper.incidents.followup import affected_roasters, get_incident

    with incidents() as session:
        incident = get_incident(session, incident_id)
        names = affected_roasters(session, incident.id)
        if incident.component and incident.component not in names:
            names.append(incident.component)
        return names


# --- diagnose ---------------------------------------------------------------------------------------------------


def print_report(report: Any, *, details: bool) -> None:
    cli = _cli()
    table = Table("check", "status", "summary", "ms")
    for c in report.checks:
        style = STATUS_STYLE.get(c.status, "")
        table.add_row(c.name, f"[{style}]{c.status}[/]", c.summary, f"{c.duration_ms:.0f}")
    cli.out.print(table)
    for c in report.checks:
        if c.hint and c.status in ("fail", "warn"):
            cli.out.print(f"[bold]{c.name}[/] → {c.hint}", highlight=False)
    if details:
        _print_details(report)
    cli.out.print(report.summary_line(), highlight=False)


def _print_details(report: Any) -> None:
    cli = _cli()
    by = {c.name: c for c in report.checks}
    if "disk" in by and by["disk"].details.get("mounts"):
        t = Table("path (df -h)", "device", "size", "used", "free", "use%")
        for m in by["disk"].details["mounts"]:
            t.add_row(m["path"], m["device"], _h(m["total"]), _h(m["used"]), _h(m["free"]), f"{m['used_ratio']:.0%}")
        cli.out.print(t)
    if "processes" in by and by["processes"].details.get("top"):
        t = Table("pid", "user", "rss", "%mem", "command (ps --sort=-%mem)")
        for p in by["processes"].details["top"]:
            t.add_row(str(p["pid"]), str(p["user"] or ""), _h(p["rss"]), f"{p['mem_percent']:.1f}", p["command"])
        cli.out.print(t)
    if "logs" in by:
        for component, info in (by["logs"].details.get("components") or {}).items():
            for line in info.get("lines", []):
                cli.out.print(
                    f"{component} {line.get('at') or ''} {line['message']} {line.get('context') or ''}",
                    markup=False,
                    highlight=False,
                )
    if "largest_files" in by:
        t = Table("dir", "largest files", "size")
        for f in by["largest_files"].details.get("largest", []):
            t.add_row(f["dir"], f["path"], _h(f["bytes"]))
        cli.out.print(t)


def _h(n: float | int | None) -> str:
    if n is None:
        return ""
    value = float(n)
    for unit in ("B", "K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return str(n)


def diagnose(
    incident: Annotated[
        str | None, typer.Option("--incident", "-i", help="Scope to this incident and put the result on its timeline.")
    ] = None,
    check: Annotated[
        list[str] | None, typer.Option("--check", "-c", help="Run only this check (repeatable); default: all.")
    ] = None,
    details: Annotated[
        bool, typer.Option("--details", help="Also print disks, processes, error lines, files.")
    ] = False,
    timeout: Annotated[float | None, typer.Option(help="Seconds each check may take (default: the setting).")] = None,
    record: Annotated[
        bool, typer.Option("--record/--no-record", help="With --incident: record the result on its timeline.")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Run the runbook's investigation checks now: service, database, resources, logs, shops, channels, changes.

    Every check has a time limit and runs concurrently; a failing or hanging check never blocks the others.
    Exit code 1 when a check fails.
    """
    from coffee_scraper.incidents.diagnostics import CHECKS, run_diagnostics
    from coffee_scraper.incidents.followup import FollowupError, get_incident, record_diagnostics
    from coffee_scraper.observability.logging import configure_logging

    cli = _cli()
    s = cli.settings()
    configure_logging(s, console_level="ERROR")
    unknown = [c for c in check or [] if c not in CHECKS]
    if unknown:
        raise cli.fail(f"unknown check(s) {', '.join(unknown)}; choose from {', '.join(CHECKS)}")
    roasters: list[str] = []
    recorded: str | None = None
    if incident:
        with stores(s) as (_catalog, incidents):
            try:
                roasters = _roasters_of(incidents, incident)
            except FollowupError as exc:
                raise cli.fail(str(exc)) from exc
            report = run_diagnostics(s, incident_id=incident.upper(), roasters=roasters, only=check, timeout_s=timeout)
            if record:
                try:
                    with db.session_scope(incidents) as session:
                        event = record_diagnostics(
                            session, get_incident(session, incident), report, actor="cli", now=_now()
                        )
                        recorded = f"recorded on {event.incident_id}'s timeline (event {event.id})"
                except Exception as exc:
                    recorded = f"not recorded on the timeline: {type(exc).__name__}: {exc}"
    else:
        report = run_diagnostics(s, only=check, timeout_s=timeout)
    if as_json:
        data = report.to_dict()
        if recorded:
            data["recorded"] = recorded
        cli._print_json(data)
    else:
        print_report(report, details=details)
        if recorded:
            cli.out.print(recorded, highlight=False)
    raise typer.Exit(1 if report.status == "fail" else 0)


# --- remediate --------------------------------------------------------------------------------------------------


def _print_actions() -> None:
    from coffee_scraper.incidents.remediation import ACTIONS

    cli = _cli()
    table = Table("action", "target", "asks first", "what it does")
    for a in ACTIONS.values():
        target = (a.target or "") + (" | --channel NAME" if a.channel else "")
        table.add_row(a.name, target, "yes" if a.destructive else "", a.description)
    cli.out.print(table)
    cli.out.print(
        "Run one: coffee-scraper remediate ACTION [TARGET | --channel NAME] [--incident ID] [--dry-run]",
        highlight=False,
    )


def remediate(
    action: Annotated[str | None, typer.Argument(help="The action (omit to list them).")] = None,
    target: Annotated[str | None, typer.Argument(help="The roaster, for open-circuit / close-circuit.")] = None,
    channel: Annotated[
        str | None,
        typer.Option(
            "--channel",
            help="open-circuit / close-circuit: a notification channel's breaker (slack, github, email, webhook) "
            "instead of a roaster's.",
        ),
    ] = None,
    incident: Annotated[str | None, typer.Option("--incident", "-i", help="Record it on this incident.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would happen; change nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before removing or restarting.")] = False,
    minutes: Annotated[float | None, typer.Option(help="open-circuit: hold it open this long.")] = None,
    reason: Annotated[str | None, typer.Option(help="pause-queue: the reason shown while paused.")] = None,
    actor: Annotated[str, typer.Option(help="Who runs it (audit trail).")] = "cli",
    as_json: JsonOpt = False,
) -> None:
    """Run a remediation action, audited (and on the incident's timeline with --incident).

    Exit code 1 when the action failed.
    """
    from coffee_scraper.incidents.remediation import ACTIONS, RemediationError
    from coffee_scraper.incidents.remediation import remediate as run_action

    cli = _cli()
    if action is None:
        if as_json:
            cli._print_json(
                [
                    {
                        "name": a.name,
                        "target": a.target,
                        "channel": a.channel,
                        "destructive": a.destructive,
                        "description": a.description,
                    }
                    for a in ACTIONS.values()
                ]
            )
        else:
            _print_actions()
        return
    spec = ACTIONS.get(action)
    if spec is None:
        raise cli.fail(f"unknown action {action!r}; choose from {', '.join(ACTIONS)}")
    s = cli.settings()
    params: dict[str, Any] = {}
    if minutes is not None:
        params["minutes"] = minutes
    if reason:
        params["reason"] = reason
    if channel:
        params["channel"] = channel
    with stores(s) as (catalog, incidents):

        def run(dry: bool) -> Any:
            try:
                return run_action(
                    action,
                    settings=s,
                    catalog_factory=catalog,
                    incidents_factory=incidents,
                    target=target,
                    params=params,
                    dry_run=dry,
                    actor=actor,
                    incident_id=incident.upper() if incident else None,
                )
            except RemediationError as exc:
                raise cli.fail(str(exc)) from exc

        if spec.destructive and not dry_run and not yes:
            if not sys.stdin.isatty():
                raise cli.fail(
                    f"{action} removes or restarts something: re-run with --yes (see the plan first with --dry-run)"
                )
            plan = run(True)
            cli.out.print(f"plan: {plan.summary}", highlight=False)
            if not typer.confirm("go ahead?", default=False):
                raise typer.Exit(0)
        record = run(dry_run)
    if as_json:
        cli._print_json(record.to_dict())
    else:
        style = STATUS_STYLE.get(record.status, "")
        cli.out.print(f"{action}: [{style}]{record.status}[/] — {record.summary}", highlight=False)
        if record.audit_error:
            cli.err.print(f"[yellow]not audited:[/] {record.audit_error}", highlight=False)
        elif record.id is not None:
            where = f" and on {record.incident_id}'s timeline" if record.incident_id else ""
            cli.out.print(f"audited as remediation run {record.id}{where}", highlight=False)
    raise typer.Exit(1 if record.status == "failed" else 0)


# --- runbook --------------------------------------------------------------------------------------------------


def runbook(
    out_path: Annotated[Path | None, typer.Option("--out", help="Write it to this file instead of stdout.")] = None,
    defaults: Annotated[
        bool, typer.Option("--defaults", help="Render the built-in defaults (the committed docs/ version).")
    ] = False,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1 when --out's file differs from a fresh render.")
    ] = False,
) -> None:
    """Render the operator's runbook from the configuration the system runs with (thresholds, roster, templates)."""
    from coffee_scraper.incidents.runbook import default_inputs, live_inputs, render_runbook

    cli = _cli()
    if check and out_path is None:
        raise cli.fail("--check compares with a file: give --out PATH (e.g. docs/incident-response-runbook.md)")
    text = render_runbook(
        default_inputs() if defaults else live_inputs(cli.settings()),
        generated_by="coffee-scraper runbook --defaults" if defaults else "coffee-scraper runbook",
    )
    if out_path is None:
        sys.stdout.write(text)
        return
    if check:
        current = out_path.read_text(encoding="utf-8") if out_path.exists() else ""
        if current != text:
            cli.err.print(
                f"{out_path} is out of date: run `coffee-scraper runbook {'--defaults ' if defaults else ''}"
                f"--out {out_path}`",
                highlight=False,
            )
            raise typer.Exit(1)
        cli.out.print(f"{out_path} is up to date", highlight=False)
        return
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(text, encoding="utf-8")
    cli.out.print(f"wrote {out_path}", highlight=False)


# --- report ---------------------------------------------------------------------------------------------------


def report(
    days: Annotated[int, typer.Option(help="Length of the period in days.")] = 7,
    end: Annotated[str | None, typer.Option(help="End of the period (ISO date/time, UTC); default: now.")] = None,
    include_drills: Annotated[bool, typer.Option("--include-drills", help="Count drill incidents too.")] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print Markdown (for a weekly e-mail or wiki).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Incident report: counts by severity, MTTA/MTTR, response-time breaches, overdue follow-ups."""
    from coffee_scraper.incidents.followup import report_markdown, weekly_report

    cli = _cli()
    try:
        until = _parse_time(end) if end else _now()
    except ValueError as exc:
        raise cli.fail(f"--end {end!r} is not an ISO date/time (e.g. 2026-12-07 or 2026-12-07T09:00)") from exc
    if days < 1:
        raise cli.fail("--days must be at least 1")
    with stores(cli.settings()) as (_catalog, incidents), incidents() as session:
        data = weekly_report(session, end=until, days=days, include_drills=include_drills)
    if as_json:
        cli._print_json(data)
    elif markdown:
        sys.stdout.write(report_markdown(data))
    else:
        cli.out.print(report_markdown(data), markup=False, highlight=False)


def _parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# --- incidents follow-up commands -------------------------------------------------------------------------------


def checklist_rows(session: Session, incident_id: str, now: datetime) -> list[dict[str, Any]]:
    """The incident's checklist and action items as rows (``followup.checklist_rows``; kept here for callers)."""
    from coffee_scraper.incidents.followup import checklist_rows as rows

    return rows(session, incident_id, now)


def print_checklist(rows: list[dict[str, Any]]) -> None:
    cli = _cli()
    if not rows:
        cli.out.print("no checklist yet (it is created when the incident resolves)")
        return
    table = Table("item", "done", "text", "owner", "due (UTC)")
    for r in rows:
        done = (
            f"[green]✓ {escape(r['done_by'] or '')}[/]"
            if r["done_at"]
            else ("[bold red]overdue[/]" if r["overdue"] else "")
        )
        text = r["text"] + (f" ({r['type']})" if r["type"] else "") + (f" {r['ticket_url']}" if r["ticket_url"] else "")
        table.add_row(r["item"], done, escape(text), escape(r["owner"] or ""), r["due_at"][:16].replace("T", " "))
    cli.out.print(table)


@followup_app.command("checklist")
def checklist_cmd(
    incident_id: Annotated[str, typer.Argument(help="INC-YYYYMMDD-###")],
    as_json: JsonOpt = False,
) -> None:
    """The post-incident checklists (and action items) of an incident, with owners, due times and state."""
    from coffee_scraper.incidents.followup import FollowupError, get_incident

    cli = _cli()
    with stores(cli.settings()) as (_catalog, incidents), incidents() as session:
        try:
            incident = get_incident(session, incident_id)
        except FollowupError as exc:
            raise cli.fail(str(exc)) from exc
        rows = checklist_rows(session, incident.id, _now())
    if as_json:
        cli._print_json(rows)
    else:
        print_checklist(rows)


@followup_app.command("check")
def check_cmd(
    incident_id: Annotated[str, typer.Argument(help="INC-YYYYMMDD-###")],
    item: Annotated[str, typer.Argument(help="PHASE.N (e.g. immediate.3), the item id, or the start of its text.")],
    undo: Annotated[bool, typer.Option("--undo", help="Mark it not done again.")] = False,
    note: Annotated[str | None, typer.Option(help="A note kept with the item.")] = None,
    actor: Annotated[str, typer.Option(help="Who checks it off.")] = "cli",
    as_json: JsonOpt = False,
) -> None:
    """Check a post-incident checklist item off (recorded on the incident's timeline)."""
    from coffee_scraper.incidents.followup import FollowupError, check_item

    cli = _cli()
    with stores(cli.settings()) as (_catalog, incidents):
        try:
            with db.session_scope(incidents) as session:
                row = check_item(session, incident_id, item, actor=actor, now=_now(), done=not undo, note=note)
                result = {
                    "item": f"{row.phase}.{row.position}",
                    "text": row.text,
                    "done": row.done_at is not None,
                    "done_by": row.done_by,
                }
        except FollowupError as exc:
            raise cli.fail(str(exc)) from exc
    if as_json:
        cli._print_json(result)
    else:
        cli.out.print(f"{result['item']} {result['text']}: {'done' if result['done'] else 'not done'}", highlight=False)


@followup_app.command("action-item")
def action_item_cmd(
    incident_id: Annotated[str, typer.Argument(help="INC-YYYYMMDD-###")],
    text: Annotated[str, typer.Argument(help="What to do.")],
    item_type: Annotated[str, typer.Option("--type", help="mitigate, prevent, process or other.")] = "prevent",
    owner: Annotated[str | None, typer.Option(help="Who owns it (roster key or @handle).")] = None,
    ticket: Annotated[str | None, typer.Option(help="Ticket URL if one exists already.")] = None,
    due_days: Annotated[int, typer.Option(help="Due this many days from now.")] = 30,
    as_json: JsonOpt = False,
) -> None:
    """Add a postmortem action item (tracked, reminded when overdue, listed in the postmortem)."""
    from coffee_scraper.incidents.followup import FollowupError, add_action_item, get_incident

    cli = _cli()
    with stores(cli.settings()) as (_catalog, incidents):
        try:
            with db.session_scope(incidents) as session:
                row = add_action_item(
                    session,
                    get_incident(session, incident_id),
                    text,
                    item_type=item_type,
                    owner=owner,
                    ticket_url=ticket,
                    due_in=timedelta(days=due_days),
                    now=_now(),
                )
                result = {
                    "item": f"action.{row.position}",
                    "text": row.text,
                    "type": row.item_type,
                    "owner": row.owner,
                    "due_at": row.due_at.isoformat(),
                }
        except FollowupError as exc:
            raise cli.fail(str(exc)) from exc
    if as_json:
        cli._print_json(result)
    else:
        cli.out.print(
            f"added {result['item']}: {result['text']} ({result['type']}, owner {result['owner'] or 'TBD'})",
            highlight=False,
        )


@followup_app.command("postmortem")
def postmortem_cmd(
    incident_id: Annotated[str, typer.Argument(help="INC-YYYYMMDD-###")],
    out_path: Annotated[Path | None, typer.Option("--out", help="Also write the Markdown to this file.")] = None,
    open_issues: Annotated[
        bool, typer.Option("--open-issues", help="Open GitHub issues for action items without a ticket.")
    ] = False,
    data_loss: Annotated[
        bool | None, typer.Option("--data-loss/--no-data-loss", help="Record whether data was lost.")
    ] = None,
    authors: Annotated[str | None, typer.Option(help="Authors shown in the header.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Draft the blameless postmortem from the incident record (Markdown), optionally opening action-item issues."""
    from coffee_scraper.incidents.followup import (
        FollowupError,
        draft_postmortem,
        ensure_postmortem,
        get_incident,
        open_action_item_issues,
    )

    cli = _cli()
    s = cli.settings()
    now = _now()
    with stores(s) as (catalog, incidents):
        try:
            with db.session_scope(incidents) as session:
                incident = get_incident(session, incident_id)
                pm = ensure_postmortem(session, incident, now=now)
                if data_loss is not None:
                    pm.data_loss = data_loss
                opened = open_action_item_issues(session, incident.id, settings=s, now=now) if open_issues else []
                catalog_session = catalog()
                try:
                    markdown = draft_postmortem(session, incident.id, now=now, catalog=catalog_session, authors=authors)
                finally:
                    catalog_session.close()
                pm = ensure_postmortem(session, incident, now=now)
                result: dict[str, Any] = {
                    "incident_id": incident.id,
                    "required": pm.required,
                    "reasons": list(pm.reasons),
                    "status": pm.status,
                    "markdown": markdown,
                    "issues_opened": [i.ticket_url for i in opened],
                }
        except FollowupError as exc:
            raise cli.fail(str(exc)) from exc
    if out_path is not None:
        out_path.write_text(markdown, encoding="utf-8")
    if as_json:
        cli._print_json(result)
        return
    sys.stdout.write(markdown)
    note = "required: " + "; ".join(result["reasons"]) if result["required"] else "not required by the criteria"
    cli.err.print(f"postmortem {note}" + (f"; wrote {out_path}" if out_path else ""), highlight=False)
    for url in result["issues_opened"]:
        cli.err.print(f"opened {url}", highlight=False)


# --- drill ------------------------------------------------------------------------------------------------------

STEP_STYLE = {"pass": "green", "fail": "bold red", "skip": "dim", "pending": "yellow"}


def print_scorecard(card: dict[str, Any]) -> None:
    cli = _cli()
    title = f"drill {card.get('drill_id')} {card.get('scenario')}: {card.get('status')}" + (
        f" — {card['incident_id']}" if card.get("incident_id") else ""
    )
    table = Table("step", "result", "time", "target", "detail", title=title)
    for st in card.get("steps", []):
        style = STEP_STYLE.get(st["status"], "")
        elapsed = f"{st['elapsed_s']:.1f} s" if st.get("elapsed_s") is not None else ""
        target = f"≤ {st['target_s']:g} s" if st.get("target_s") is not None else ""
        since = f" after {st['since']}" if st.get("since") and elapsed else ""
        table.add_row(st["name"], f"[{style}]{st['status']}[/]", elapsed + since, target, st.get("detail") or "")
    cli.out.print(table)
    cli.out.print(
        f"expected: {card.get('expected')}" + ("  (fast: `for` durations shortened)" if card.get("fast") else ""),
        highlight=False,
    )


def _remote_drill(server: str, token: str | None, body: dict[str, Any], as_json: bool) -> dict[str, Any]:
    import time

    import httpx

    cli = _cli()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        started = httpx.post(f"{server}/api/v1/drills", json=body, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        raise cli.fail(
            f"no coffee-scraper serve at {server} ({type(exc).__name__}): drills inject faults into a "
            "running system — start it with `coffee-scraper serve`, or pass --server URL or --local"
        ) from exc
    if started.status_code != 202:
        detail = started.json().get("detail") if "json" in started.headers.get("content-type", "") else started.text
        raise cli.fail(f"{server} refused the drill (HTTP {started.status_code}): {detail}")
    drill_id = started.json()["id"]
    if not as_json:
        cli.err.print(f"drill {drill_id} ({body['scenario']}) started on {server}", highlight=False)
    seen: dict[str, str] = {}
    deadline = time.monotonic() + body["timeout_s"] * 12 + 60
    row: dict[str, Any] = {}
    while time.monotonic() < deadline:
        row = httpx.get(f"{server}/api/v1/drills/{drill_id}", headers=headers, timeout=30).json()
        for st in (row.get("scorecard") or {}).get("steps", []):
            if st["status"] != "pending" and seen.get(st["name"]) != st["status"]:
                seen[st["name"]] = st["status"]
                if not as_json:
                    cli.err.print(
                        f"  {st['name']}: {st['status']} — {st.get('detail') or ''}", highlight=False, markup=False
                    )
        if row.get("status") != "running":
            break
        time.sleep(1.0)
    card: dict[str, Any] = row.get("scorecard") or {}
    card["status"] = row.get("status", card.get("status"))
    return card


def drill(
    scenario: Annotated[
        str | None, typer.Argument(help="The scenario (omit to list them and the recent drills).")
    ] = None,
    server: Annotated[
        str | None, typer.Option(help="The running serve (default: COFFEE_SCRAPER_DIAGNOSTICS_SERVICE_URL).")
    ] = None,
    local: Annotated[bool, typer.Option("--local", help="Run it in this process instead of in `serve`.")] = False,
    fast: Annotated[bool, typer.Option("--fast", help="Shorten the rules' `for` and windows (a quick check).")] = False,
    page: Annotated[bool, typer.Option("--page", help="Page the real on-call people (default: stand-ins).")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each step.")] = 900.0,
    as_json: JsonOpt = False,
) -> None:
    """Inject a real, reversible fault into the running system and score the response against the runbook.

    Drill incidents are marked as drills everywhere and page stand-ins, not people, unless --page.
    Exit code 1 when a step failed.
    """
    from coffee_scraper.incidents import drills

    cli = _cli()
    s = cli.settings()
    if scenario is None:
        rows = [{"scenario": sc.name, "fault": sc.fault, "expected": sc.expected} for sc in drills.SCENARIOS.values()]
        if as_json:
            cli._print_json(rows)
            return
        table = Table("scenario", "fault injected", "expected")
        for r in rows:
            table.add_row(r["scenario"], r["fault"], r["expected"])
        cli.out.print(table)
        cli.out.print("Run one against `serve`: coffee-scraper drill db-outage [--fast]", highlight=False)
        return
    if scenario not in drills.SCENARIOS:
        raise cli.fail(f"unknown drill scenario {scenario!r}; choose from {', '.join(drills.SCENARIOS)}")
    body = {"scenario": scenario, "fast": fast, "page": page, "timeout_s": timeout, "actor": "cli"}
    if local:
        card = _local_drill(s, scenario, drills.DrillOptions(fast=fast, page=page, timeout_s=timeout))
    else:
        token = s.api_token.get_secret_value() if s.api_token else None
        card = _remote_drill((server or s.diagnostics_service_url).rstrip("/"), token, body, as_json)
    if as_json:
        cli._print_json(card)
    else:
        print_scorecard(card)
    raise typer.Exit(0 if card.get("status") == "passed" else 1)


def _local_drill(s: Settings, scenario: str, options: Any) -> dict[str, Any]:
    from coffee_scraper.incidents import drills
    from coffee_scraper.incidents.runner import IncidentRunner

    with stores(s):
        pass  # both databases migrated
    runner = IncidentRunner(s, heartbeat=False)  # on the incident store (incidents/store.py)
    try:
        return drills.Drill(scenario, s, options=options, drive=lambda: runner.run_once()).run()
    finally:
        runner.outbox.close()


def register(app: typer.Typer, incidents_app: typer.Typer | None = None) -> None:
    """Add ``diagnose``, ``remediate``, ``runbook``, ``report`` and ``drill`` to the top-level app and the
    follow-up commands (``postmortem``, ``checklist``, ``check``, ``action-item``) to ``incidents``."""
    app.command("diagnose")(diagnose)
    app.command("remediate")(remediate)
    app.command("runbook")(runbook)
    app.command("report")(report)
    app.command("drill")(drill)
    if incidents_app is not None:
        incidents_app.registered_commands += followup_app.registered_commands
    else:
        app.add_typer(followup_app, name="followup")
