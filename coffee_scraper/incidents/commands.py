"""``coffee-scraper incidents ...``: list, show, declare, ack, update, resolve, reopen, severity, comment, stats,
sweep, and the ``silence`` / ``maintenance`` sub-commands.

Lives here: the Typer sub-app (parse, call ``incidents/flows.py`` / ``service.py`` / ``silences.py``, print a
table or ``--json``). The actor of a change is ``--by`` (default: the login name, ``$USER``).
Does not live here: any rule of the lifecycle (``flows.py``), queries (``service.py``).
"""

from __future__ import annotations

import getpass
import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape
from rich.table import Table
from sqlalchemy.orm import Session, sessionmaker

from coffee_scraper.catalog import db
from coffee_scraper.catalog.models import utcnow
from coffee_scraper.incidents import flows, service, silences, store
from coffee_scraper.incidents.errors import IncidentError
from coffee_scraper.observability.logging import configure_logging
from coffee_scraper.observability.redact import mask_url

T = TypeVar("T")

incidents_app = typer.Typer(
    help="Incidents (the runbook's INC-YYYYMMDD-###): list, show, declare, acknowledge, update, resolve; "
    "silences and maintenance windows.",
    no_args_is_help=True,
)
silence_app = typer.Typer(help="Silences: mute firing alerts matching labels until they expire.", no_args_is_help=True)
maintenance_app = typer.Typer(
    help="Maintenance windows: alerts of some (or all) components are stored but open no incident.",
    no_args_is_help=True,
)
incidents_app.add_typer(silence_app, name="silence")
incidents_app.add_typer(maintenance_app, name="maintenance")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]
ByOpt = Annotated[str | None, typer.Option("--by", help="Who does it (default: your login name).")]
SEVERITY_STYLE = {"P0": "bold red", "P1": "red", "P2": "yellow", "P3": "cyan"}
DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _cli() -> Any:
    from coffee_scraper import cli

    return cli


def _actor(by: str | None) -> str:
    if by and by.strip():
        return by.strip()
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


@contextmanager
def open_store() -> Iterator[sessionmaker[Session]]:
    """Sessions on the incident store (``store.incidents_url``: ``incidents_database_url`` when set, else the
    catalog database), migrated first. Every incident-related command (``incidents``, ``notify``) uses it."""
    cli = _cli()
    s = cli.settings()
    if not store.is_separate(s):
        with cli.database() as factory:
            yield factory
        return
    url = store.incidents_url(s)
    configure_logging(s, console_level="ERROR")  # as cli.database() does for the catalog
    try:
        db.upgrade(url)
        engine = store.incident_engine(s)
    except db.DatabaseConfigError as exc:
        raise cli.fail(str(exc)) from exc
    except Exception as exc:
        raise cli.fail(
            f"cannot open the incident store {mask_url(url)}: {type(exc).__name__}: {exc}. "
            "Check COFFEE_SCRAPER_INCIDENTS_DATABASE_URL and that the server is running."
        ) from exc
    try:
        yield db.session_factory(engine)
    finally:
        engine.dispose()


def _run(fn: Callable[[Session], T], *, write: bool = True) -> T:
    """One transaction on the incident store; domain errors become exit code 2 with the message."""
    cli = _cli()
    with open_store() as factory:
        try:
            if write:
                with db.session_scope(factory) as session:
                    return fn(session)
            with factory() as session:
                return fn(session)
        except IncidentError as exc:
            raise cli.fail(str(exc)) from exc


def parse_duration(text: str) -> timedelta:
    """``90m``, ``2h``, ``1d``, ``1w`` or seconds."""
    match = DURATION_RE.match(text)
    if not match:
        raise typer.BadParameter(f"{text!r} is not a duration; use e.g. 30m, 2h, 1d")
    seconds = float(match.group(1)) * UNITS[match.group(2)]
    if seconds <= 0:
        raise typer.BadParameter("the duration must be positive")
    return timedelta(seconds=seconds)


def parse_time(text: str) -> datetime:
    """ISO 8601 (``2026-12-01T18:00``, ``2026-12-01 18:00+05:30``); without an offset it is UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r} is not a time; use ISO 8601, e.g. 2026-12-01T18:00 (UTC)") from exc
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _window(start: str | None, duration: str | None, until: str | None, now: datetime) -> tuple[datetime, datetime]:
    begin = parse_time(start) if start else now
    if (duration is None) == (until is None):
        raise _cli().fail("give exactly one of --duration (e.g. 2h) or --until (ISO time)")
    end = parse_time(until) if until else begin + parse_duration(str(duration))
    return begin, end


def _short(iso: str | None) -> str:
    return iso[:16].replace("T", " ") if iso else "-"


def _status_text(row: dict[str, Any]) -> str:
    status = str(row["status"])
    if row.get("resolve_pending"):
        status += " (resolve pending)"
    if row.get("acknowledged_at") and row["status"] != "resolved":
        status += " ack"
    return status


# --- incidents --------------------------------------------------------------------------------------------


@incidents_app.command("list")
def list_cmd(
    open_only: Annotated[bool, typer.Option("--open", help="Only open (not resolved) incidents.")] = False,
    severity: Annotated[list[str] | None, typer.Option("--severity", "-s", help="P0..P3; repeat for several.")] = None,
    drills: Annotated[bool, typer.Option("--drills/--no-drills", help="Include drills.")] = True,
    limit: Annotated[int, typer.Option(help="At most this many (newest first).")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Incidents, newest first."""
    sevs = [x.upper() for x in severity or []]
    bad = [x for x in sevs if x not in ("P0", "P1", "P2", "P3")]
    if bad:
        raise _cli().fail(f"--severity {bad[0]} is not one of P0, P1, P2, P3")

    def q(session: Session) -> list[dict[str, Any]]:
        incidents = service.list_incidents(
            session, open_only=open_only, severities=sevs, include_drills=drills, limit=limit
        )
        return service.incident_rows(session, incidents)

    rows = _run(q, write=False)
    if as_json:
        _print_json(rows)
        return
    if not rows:
        _cli().out.print("no incidents" + (" open" if open_only else ""))
        return
    table = Table("id", "sev", "status", "title", "owner", "opened (UTC)", "alerts")
    for r in rows:
        style = SEVERITY_STYLE.get(r["severity"], "")
        title = ("[DRILL] " if r["is_drill"] else "") + r["title"]
        alerts = (
            f"{r['alerts_firing']} firing / {r['alerts_resolved']}"
            if r["alerts_firing"] or r["alerts_resolved"]
            else "-"
        )
        table.add_row(
            r["id"],
            f"[{style}]{r['severity']}[/]",
            _status_text(r),
            title,
            r["owner"] or "-",
            _short(r["opened_at"]),
            alerts,
        )
    _cli().out.print(table)


def _print_detail(d: dict[str, Any]) -> None:
    out = _cli().out
    style = SEVERITY_STYLE.get(d["severity"], "")
    drill = "[bold magenta]DRILL[/] " if d["is_drill"] else ""
    out.print(f"{drill}[{style}]{d['severity']}[/] [bold]{d['id']}[/] {d['title']}", highlight=False)
    fields = [
        ("Status", _status_text(d)),
        ("Impact", d["impact"]),
        ("Owner", d["owner"]),
        ("ETA", d["eta"]),
        ("Actions Taken", d["actions_taken"]),
        ("Next Steps", d["next_steps"]),
        ("Opened", _short(d["opened_at"]) + f" (source {d['source']})"),
        ("Acknowledged", f"{_short(d['acknowledged_at'])} by {d['acknowledged_by']}" if d["acknowledged_at"] else None),
        (
            "Response due",
            _short(d["response_due_at"])
            + (f" — BREACHED ({_short(d['response_breached_at'])})" if d["response_breached_at"] else ""),
        ),
        ("Resolved", _short(d["resolved_at"]) if d["resolved_at"] else None),
        ("Root Cause", d["root_cause"]),
        ("Resolution", d["resolution"]),
        ("Prevention", d["prevention"]),
        ("Rule / component", " / ".join(x for x in (d["rule"], d["component"]) if x) or None),
        ("Severity reason", d["severity_reason"]),
    ]
    for label, value in fields:
        if value:
            out.print(f"  [bold]{label}:[/] {value}", highlight=False)
    if d["alerts"]:
        alerts = Table("alert", "source", "sev", "status", "title", "received", "labels", title="Alerts")
        for a in d["alerts"]:
            labels = ", ".join(f"{k}={v}" for k, v in sorted(a["labels"].items()) if k not in ("alertname",))
            alerts.add_row(
                str(a["id"]),
                a["source"],
                a["severity"],
                a["status"] + (" (flapping)" if a["flap_count"] else ""),
                a["title"],
                f"{a['receive_count']}×",
                labels[:80],
            )
        out.print(alerts)
    timeline = Table("at (UTC)", "kind", "actor", "message", title="Timeline")
    for e in d["timeline"]:
        timeline.add_row(e["at"][:19].replace("T", " "), e["kind"], e["actor"] or "-", e["message"])
    out.print(timeline)
    _print_checklist(d["id"], d.get("checklist") or [], resolved=d["status"] == "resolved")


def _print_checklist(incident_id: str, rows: list[dict[str, Any]], *, resolved: bool) -> None:
    """The runbook's post-incident checklists (and action items) of the incident: done, overdue or open."""
    out = _cli().out
    if not rows:
        out.print(
            "Post-incident checklists: "
            + ("not created yet (the recovery loop of `serve` creates them)" if resolved else "start at resolution"),
            highlight=False,
        )
        return
    done = sum(1 for r in rows if r["done_at"])
    table = Table(
        "item", "state", "text", "owner", "due (UTC)", title=f"Post-incident checklists ({done}/{len(rows)} done)"
    )
    for r in rows:
        if r["done_at"]:
            state = "[green]done[/] " + escape(r["done_by"] or "")
        else:
            state = "[bold red]overdue[/]" if r["overdue"] else "open"
        text = r["text"] + (f" ({r['type']})" if r["type"] else "") + (f" {r['ticket_url']}" if r["ticket_url"] else "")
        table.add_row(r["item"], state.strip(), escape(text), escape(r["owner"] or "-"), _short(r["due_at"]))
    out.print(table)
    out.print(f"check an item off: coffee-scraper incidents check {incident_id} PHASE.N", highlight=False)


@incidents_app.command("show")
def show_cmd(incident_id: Annotated[str, typer.Argument(help="INC-YYYYMMDD-###")], as_json: JsonOpt = False) -> None:
    """One incident: its fields, alerts, timeline and post-incident checklists."""
    detail = _run(lambda session: service.incident_detail(session, incident_id.strip()), write=False)
    if as_json:
        _print_json(detail)
    else:
        _print_detail(detail)


def _after_change(incident_id: str, as_json: bool, message: str) -> None:
    detail = _run(lambda session: service.incident_detail(session, incident_id), write=False)
    if as_json:
        _print_json(detail)
    else:
        _cli().out.print(message, highlight=False)


@incidents_app.command("declare")
def declare_cmd(
    severity: Annotated[str, typer.Option("--severity", "-s", help="P0..P3 (the runbook's classification).")],
    title: Annotated[str, typer.Option("--title", "-t", help="Brief description.")],
    impact: Annotated[str | None, typer.Option(help="User/system impact.")] = None,
    owner: Annotated[str | None, typer.Option(help="Person key or @handle.")] = None,
    component: Annotated[str | None, typer.Option(help="Affected component.")] = None,
    drill: Annotated[bool, typer.Option("--drill", help="A drill: marked everywhere, left out of MTTA/MTTR.")] = False,
    by: ByOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Declare an incident by hand."""
    now = utcnow()
    incident_id = _run(
        lambda session: (
            flows.declare(
                session,
                title=title,
                severity=severity,
                impact=impact,
                owner=owner,
                actor=_actor(by),
                now=now,
                is_drill=drill,
                component=component,
            ).id
        )
    )
    _after_change(incident_id, as_json, f"declared {incident_id} ({severity.upper()}): {title}")


@incidents_app.command("ack")
def ack_cmd(
    incident_id: Annotated[str, typer.Argument(help="INC-YYYYMMDD-###")],
    message: Annotated[str | None, typer.Option("--message", "-m", help="A note for the timeline.")] = None,
    by: ByOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Acknowledge an incident (you become its owner when it has none)."""
    now = utcnow()
    changed = _run(
        lambda session: flows.ack(session, incident_id.strip(), actor=_actor(by), now=now, message=message or "")[1]
    )
    _after_change(
        incident_id.strip(),
        as_json,
        f"acknowledged {incident_id}" if changed else f"{incident_id} was already acknowledged",
    )


@incidents_app.command("update")
def update_cmd(
    incident_id: Annotated[str, typer.Argument(help="INC-YYYYMMDD-###")],
    status: Annotated[str | None, typer.Option(help="investigating or working (resolve: `incidents resolve`).")] = None,
    actions: Annotated[str | None, typer.Option("--actions", help="Actions taken.")] = None,
    next_steps: Annotated[str | None, typer.Option("--next", help="Next steps.")] = None,
    eta: Annotated[str | None, typer.Option(help="Updated resolution time.")] = None,
    owner: Annotated[str | None, typer.Option(help="New owner (person key or @handle).")] = None,
    impact: Annotated[str | None, typer.Option(help="Updated impact.")] = None,
    by: ByOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Status update (the runbook's template: status, actions taken, next steps, ETA, owner)."""
    now = utcnow()
    _run(
        lambda session: flows.update(
            session,
            incident_id.strip(),
            actor=_actor(by),
            now=now,
            status=status,
            actions_taken=actions,
            next_steps=next_steps,
            eta=eta,
            owner=owner,
            impact=impact,
        )
    )
    _after_change(incident_id.strip(), as_json, f"updated {incident_id}")


@incidents_app.command("resolve")
def resolve_cmd(
    incident_id: Annotated[str, typer.Argument(help="INC-YYYYMMDD-###")],
    root_cause: Annotated[str, typer.Option("--root-cause", help="Brief description of the cause.")],
    resolution: Annotated[str, typer.Option(help="Solution implemented.")],
    prevention: Annotated[str, typer.Option(help="Preventive measures taken.")],
    by: ByOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Resolve (root cause, resolution and prevention are required, like the runbook's resolution notice)."""
    now = utcnow()
    _run(
        lambda session: flows.resolve(
            session,
            incident_id.strip(),
            root_cause=root_cause,
            resolution=resolution,
            prevention=prevention,
            actor=_actor(by),
            now=now,
        )
    )
    _after_change(incident_id.strip(), as_json, f"resolved {incident_id}")


@incidents_app.command("reopen")
def reopen_cmd(
    incident_id: Annotated[str, typer.Argument(help="INC-YYYYMMDD-###")],
    reason: Annotated[str, typer.Option(help="Why it is not resolved after all.")],
    by: ByOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Reopen a resolved incident."""
    now = utcnow()
    _run(lambda session: flows.reopen(session, incident_id.strip(), actor=_actor(by), reason=reason, now=now))
    _after_change(incident_id.strip(), as_json, f"reopened {incident_id}")


@incidents_app.command("severity")
def severity_cmd(
    incident_id: Annotated[str, typer.Argument(help="INC-YYYYMMDD-###")],
    severity: Annotated[str, typer.Argument(help="P0..P3")],
    reason: Annotated[str, typer.Option(help="Why the severity changes.")],
    by: ByOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Raise or lower an incident's severity, with a reason."""
    now = utcnow()
    _run(
        lambda session: flows.change_severity(
            session, incident_id.strip(), severity=severity, reason=reason, actor=_actor(by), now=now
        )
    )
    _after_change(incident_id.strip(), as_json, f"{incident_id} is now {severity.upper()}")


@incidents_app.command("comment")
def comment_cmd(
    incident_id: Annotated[str, typer.Argument(help="INC-YYYYMMDD-###")],
    text: Annotated[str, typer.Argument(help="The comment.")],
    by: ByOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a comment to an incident's timeline."""
    now = utcnow()
    _run(lambda session: flows.comment(session, incident_id.strip(), body=text, actor=_actor(by), now=now))
    _after_change(incident_id.strip(), as_json, f"commented on {incident_id}")


def _mins(seconds: Any) -> str:
    if seconds is None:
        return "-"
    seconds = float(seconds)
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


@incidents_app.command("stats")
def stats_cmd(
    days: Annotated[int | None, typer.Option(help="Only incidents opened in the last N days.")] = None,
    drills: Annotated[bool, typer.Option("--drills", help="Include drills.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """MTTA and MTTR (mean, median, p90) and response-target breaches, overall and per severity."""
    since = utcnow() - timedelta(days=days) if days else None
    data = _run(lambda session: service.stats(session, since=since, include_drills=drills), write=False)
    if as_json:
        _print_json(data)
        return
    table = Table(
        "severity", "incidents", "open", "breaches", "MTTA mean", "MTTA median", "MTTR mean", "MTTR median", "MTTR p90"
    )
    for label, block in [("all", data), *data["by_severity"].items()]:
        table.add_row(
            label,
            str(block["incidents"]),
            str(block["open"]),
            str(block["response_breaches"]),
            _mins(block["mtta_s"]["mean"]),
            _mins(block["mtta_s"]["median"]),
            _mins(block["mttr_s"]["mean"]),
            _mins(block["mttr_s"]["median"]),
            _mins(block["mttr_s"]["p90"]),
        )
    _cli().out.print(table)
    _cli().out.print(f"measured from {data['start_point']}", highlight=False)


@incidents_app.command("sweep")
def sweep_cmd(as_json: JsonOpt = False) -> None:
    """Run the periodic part once: expire unrefreshed alerts, auto-resolve quiet incidents, record breaches."""
    s = _cli().settings()
    now = utcnow()
    result = _run(lambda session: flows.sweep(session, now=now, settings=s).as_dict())
    if as_json:
        _print_json(result)
        return
    _cli().out.print(
        f"expired alerts: {result['expired_alerts']}; resolve-pending: {result['resolve_pending']}; "
        f"auto-resolved: {', '.join(result['auto_resolved']) or 'none'}; "
        f"response breaches: {', '.join(result['response_breached']) or 'none'}",
        highlight=False,
    )


# --- silences ---------------------------------------------------------------------------------------------


@silence_app.command("add")
def silence_add(
    matchers: Annotated[
        list[str], typer.Argument(help="Label matchers: name=value, name!=value, name=~regex, name!~regex.")
    ],
    comment: Annotated[str, typer.Option("--comment", "-c", help="Why (e.g. the incident or ticket).")],
    duration: Annotated[str | None, typer.Option("--duration", "-d", help="How long, e.g. 2h, 30m, 1d.")] = None,
    until: Annotated[str | None, typer.Option(help="End time (ISO 8601; UTC unless an offset is given).")] = None,
    start: Annotated[str | None, typer.Option(help="Start time (default: now).")] = None,
    by: ByOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Mute firing alerts whose labels match every matcher (stored, no incident) until the silence ends."""
    now = utcnow()
    begin, end = _window(start, duration, until, now)
    try:
        parsed = [silences.parse_matcher(m) for m in matchers]
    except IncidentError as exc:
        raise _cli().fail(str(exc)) from exc
    row = _run(
        lambda session: service.silence_dict(
            silences.add_silence(
                session, parsed, starts_at=begin, ends_at=end, created_by=_actor(by), comment=comment, now=now
            ),
            now,
        )
    )
    if as_json:
        _print_json(row)
    else:
        _cli().out.print(
            f"silence {row['id']} ({row['matchers_text']}) until {_short(row['ends_at'])} UTC", highlight=False
        )


@silence_app.command("list")
def silence_list(
    all_: Annotated[bool, typer.Option("--all", help="Include expired silences.")] = False, as_json: JsonOpt = False
) -> None:
    """Silences in force or pending (``--all``: expired ones too)."""
    now = utcnow()
    rows = _run(
        lambda session: [
            service.silence_dict(x, now) for x in silences.list_silences(session, now=now, include_expired=all_)
        ],
        write=False,
    )
    if as_json:
        _print_json(rows)
        return
    if not rows:
        _cli().out.print("no silences")
        return
    table = Table("id", "state", "matchers", "starts", "ends", "by", "comment")
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["state"],
            r["matchers_text"],
            _short(r["starts_at"]),
            _short(r["ends_at"]),
            r["created_by"],
            r["comment"],
        )
    _cli().out.print(table)


@silence_app.command("expire")
def silence_expire(silence_id: Annotated[int, typer.Argument(help="Silence id (see `silence list`).")]) -> None:
    """End a silence now."""
    now = utcnow()
    _run(lambda session: silences.expire_silence(session, silence_id, now=now).id)
    _cli().out.print(f"silence {silence_id} expired")


# --- maintenance windows ----------------------------------------------------------------------------------


@maintenance_app.command("add")
def maintenance_add(
    comment: Annotated[str, typer.Option("--comment", "-c", help="What is being done.")],
    component: Annotated[
        list[str] | None, typer.Option("--component", help="Affected component; repeat; none = every component.")
    ] = None,
    duration: Annotated[str | None, typer.Option("--duration", "-d", help="How long, e.g. 2h.")] = None,
    until: Annotated[str | None, typer.Option(help="End time (ISO 8601; UTC unless an offset is given).")] = None,
    start: Annotated[str | None, typer.Option(help="Start time (default: now).")] = None,
    by: ByOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A maintenance window: alerts of these components arriving in it are stored but open no incident."""
    now = utcnow()
    begin, end = _window(start, duration, until, now)
    row = _run(
        lambda session: service.window_dict(
            silences.add_maintenance(
                session,
                starts_at=begin,
                ends_at=end,
                components=component or [],
                comment=comment,
                created_by=_actor(by),
                now=now,
            ),
            now,
        )
    )
    if as_json:
        _print_json(row)
    else:
        what = ", ".join(row["components"]) or "every component"
        _cli().out.print(
            f"maintenance window {row['id']} for {what}: {_short(row['starts_at'])} – {_short(row['ends_at'])} UTC",
            highlight=False,
        )


@maintenance_app.command("list")
def maintenance_list(
    all_: Annotated[bool, typer.Option("--all", help="Include ended windows.")] = False, as_json: JsonOpt = False
) -> None:
    """Maintenance windows now or ahead (``--all``: past ones too)."""
    now = utcnow()
    rows = _run(
        lambda session: [
            service.window_dict(w, now) for w in silences.list_maintenance(session, now=now, include_past=all_)
        ],
        write=False,
    )
    if as_json:
        _print_json(rows)
        return
    if not rows:
        _cli().out.print("no maintenance windows")
        return
    table = Table("id", "state", "components", "starts", "ends", "by", "comment")
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["state"],
            ", ".join(r["components"]) or "all",
            _short(r["starts_at"]),
            _short(r["ends_at"]),
            r["created_by"],
            r["comment"],
        )
    _cli().out.print(table)


@maintenance_app.command("end")
def maintenance_end(window_id: Annotated[int, typer.Argument(help="Window id (see `maintenance list`).")]) -> None:
    """End a maintenance window now."""
    now = utcnow()
    _run(lambda session: silences.end_maintenance(session, window_id, now=now).id)
    _cli().out.print(f"maintenance window {window_id} ended")
