"""``coffee-scraper oncall show`` and ``coffee-scraper notify status|outbox|retry|test|run-once``.

Lives here: the two Typer sub-apps (parse, call ``oncall``/``escalation``/``notify``/``runner``, print a table or
JSON). The notify commands work on the incident store (``incidents/store.py``), where the outbox lives.
Does not live here: roster parsing, policy, delivery (``incidents/oncall.py``, ``escalation.py``, ``notify/``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from sqlalchemy import func, select, update

from coffee_scraper.catalog import db
from coffee_scraper.catalog.models import utcnow
from coffee_scraper.incidents.commands import open_store
from coffee_scraper.incidents.oncall import ROLE_TITLES, ROLES, RosterError, load_roster

oncall_app = typer.Typer(
    help="The on-call roster (oncall.toml): who holds which role, who gets paged.", no_args_is_help=True
)
notify_app = typer.Typer(
    help="Incident notifications: channels, the delivery outbox, retries of dead messages, a test message.",
    no_args_is_help=True,
)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]


def _cli() -> Any:
    from coffee_scraper import cli

    return cli


def parse_at(value: str | None) -> datetime:
    """``--at``: ISO 8601 (``2026-12-24T03:00Z``, ``2026-12-24 03:00+01:00``); without an offset it is UTC."""
    if not value:
        return utcnow()
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise _cli().fail(f"--at {value!r} is not a time; use ISO 8601 like 2026-12-24T03:00Z") from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


@oncall_app.command("show")
def oncall_show(
    at: Annotated[
        str | None, typer.Option("--at", help="Show who is on call at this time (ISO 8601; default now).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Who holds each role (rotations applied), who each severity pages, and which channels are on."""
    from coffee_scraper.incidents import escalation
    from coffee_scraper.incidents.alert_config import Severity
    from coffee_scraper.incidents.notify.config import NotifyConfig

    cli = _cli()
    s = cli.settings()
    when = parse_at(at)
    try:
        roster = load_roster(s.oncall_file)
    except RosterError as exc:
        raise cli.fail(str(exc)) from exc
    try:
        cfg = NotifyConfig.from_settings(s, roster)
    except ValueError as exc:
        raise cli.fail(str(exc)) from exc
    policy: dict[str, dict[str, Any]] = {}
    for sev in Severity:
        pol = escalation.policy(cfg, sev.value)
        people = escalation.initial_people(cfg, sev.value, when)
        policy[sev.value] = {
            "escalation": pol.escalation,
            "roles": list(pol.notify_roles),
            "people": [p.key for p in people],
            "business_hours_only": pol.business_hours_only,
            "time_escalation": pol.time_escalation,
            "status_update_reminders": pol.status_updates,
        }
    levels: list[dict[str, Any]] = [
        {
            "level": lv.level,
            "role": lv.role,
            "after_min": int(lv.starts_after.total_seconds() // 60),
            "people": [p.key for p in escalation.level_people(cfg, lv.level, when)],
        }
        for lv in escalation.levels(cfg)
    ]
    data = roster.as_dict(when) | {
        "file": str(s.oncall_file),
        "file_found": roster.source is not None,
        "policy": policy,
        "escalation_levels": levels,
        "channels": {name: {"on": on, "detail": cfg.channel_notes()[name]} for name, on in cfg.channels().items()},
        "business_hours": {"hours": s.business_hours, "days": s.business_days, "default_timezone": s.business_timezone},
        "reminder_interval_s": s.reminder_interval_s,
    }
    if as_json:
        cli._print_json(data)
        return
    out = cli.out
    if roster.source is None:
        out.print(
            f"[bold yellow]no roster:[/] {s.oncall_file} not found — nobody is paged (channels still get "
            "messages). Copy oncall.example.toml and set COFFEE_SCRAPER_ONCALL_FILE.",
            highlight=False,
        )
    else:
        out.print(f"roster {roster.source} at {when:%Y-%m-%d %H:%M} UTC", highlight=False)
    table = Table("role", "person", "slack", "email", "phone", "timezone", title="On-call roles")
    for role in ROLES:
        p = roster.who(role, when)
        rot = " (rotation)" if role in roster.rotations else ""
        if p is None:
            table.add_row(ROLE_TITLES[role] + rot, "[yellow]unassigned[/]", "", "", "", "")
        else:
            table.add_row(
                ROLE_TITLES[role] + rot, f"{p.name} ({p.key})", p.slack or "", p.email or "", p.phone or "", p.timezone
            )
    out.print(table)
    pt = Table("severity", "runbook escalation", "paged now", "notes", title="Who each severity pages")
    for sev_name, row in policy.items():
        notes = []
        if row["business_hours_only"]:
            notes.append(f"held to business hours {s.business_hours} {s.business_days}")
        if row["time_escalation"]:
            notes.append("escalates L2 30m / L3 60m / L4 2h")
        if row["status_update_reminders"]:
            notes.append(f"update reminders every {s.reminder_interval_s / 60:g} min")
        pt.add_row(sev_name, row["escalation"], ", ".join(row["people"]) or "nobody", "; ".join(notes))
    out.print(pt)
    lt = Table("level", "role", "after", "people", title="Escalation levels (unresolved incidents)")
    for lv in levels:
        lt.add_row(f"L{lv['level']}", lv["role"], f"{lv['after_min']} min", ", ".join(lv["people"]) or "nobody")
    out.print(lt)
    ct = Table("channel", "state", "detail", title="Channels")
    for name, ch in data["channels"].items():
        ct.add_row(name, "[green]on[/]" if ch["on"] else "[dim]off[/]", ch["detail"])
    out.print(ct)


# --- notify ---------------------------------------------------------------------------------------------------


def _circuit_text(c: dict[str, Any]) -> str:
    """A channel's breaker for the status table: closed (failures so far), half-open, open (next probe)."""
    if c["state"] == "closed":
        failures = c["consecutive_failures"]
        return "[green]closed[/]" + (f" ({failures} failed)" if failures else "")
    if c["state"] == "half_open":
        return "[yellow]half-open[/] (probing)"
    text = "[bold red]open[/]"
    if c["next_probe_in_s"] is not None:
        text += f" (probe in {c['next_probe_in_s']:.0f} s)"
    if c["changed_by"]:
        text += f" by {escape(c['changed_by'])}"
    return text


@notify_app.command("status")
def notify_status(as_json: JsonOpt = False) -> None:
    """Channels on/off, their circuit breakers, outbox rows per channel and status, and whether delivery is healthy."""
    from coffee_scraper.incidents.notify import circuit
    from coffee_scraper.incidents.notify.config import NotifyConfig
    from coffee_scraper.incidents.notify.models import NotificationOutbox
    from coffee_scraper.incidents.notify.outbox import delivery_health, update_gauges

    cli = _cli()
    s = cli.settings()
    cfg = NotifyConfig.from_settings(s)
    now = utcnow()
    with open_store() as factory, db.session_scope(factory) as session:
        counts = session.execute(
            select(NotificationOutbox.channel, NotificationOutbox.status, func.count()).group_by(
                NotificationOutbox.channel, NotificationOutbox.status
            )
        ).all()
        pending = update_gauges(session, now)
        health = delivery_health(session, now, cfg)
        circuits = circuit.states(session, now)
    by_channel: dict[str, dict[str, int]] = {}
    for ch, st, n in counts:
        by_channel.setdefault(ch, {})[st] = int(n)
    data: dict[str, Any] = {
        "channels": {
            name: {
                "on": on,
                "detail": cfg.channel_notes()[name],
                "outbox": by_channel.get(name, {}),
                "undelivered": pending[name][0],
                "oldest_undelivered_s": round(pending[name][1], 1),
                "circuit": circuits[name],
            }
            for name, on in cfg.channels().items()
        },
        "health": {
            "firing": health.firing,
            "reason": health.reason,
            "attempts_30m": health.attempts,
            "failed_30m": health.failed,
            "threshold": health.threshold,
        },
        "roster_error": cfg.roster_error,
    }
    if as_json:
        cli._print_json(data)
        return
    table = Table("channel", "state", "circuit", "sent", "undelivered", "dead", "oldest undelivered", "detail")
    for name, ch in data["channels"].items():
        ob = ch["outbox"]
        table.add_row(
            name,
            "[green]on[/]" if ch["on"] else "[dim]off[/]",
            _circuit_text(ch["circuit"]),
            str(ob.get("sent", 0)),
            str(ch["undelivered"]),
            str(ob.get("dead", 0)),
            f"{ch['oldest_undelivered_s']:.0f} s" if ch["undelivered"] else "",
            ch["detail"],
        )
    cli.out.print(table)
    for name, ch in data["channels"].items():
        c = ch["circuit"]
        if c["state"] != "closed" and c["reason"]:
            cli.out.print(f"circuit {name}: {escape(c['reason'])}", highlight=False)
    if any(ch["circuit"]["state"] != "closed" for ch in data["channels"].values()):
        cli.out.print(
            "messages of an open circuit wait (none is dropped); close it by hand: "
            "coffee-scraper remediate close-circuit --channel NAME",
            highlight=False,
        )
    style = "bold red" if health.firing else "green"
    cli.out.print(f"delivery: [{style}]{'FAILING' if health.firing else 'ok'}[/] — {health.reason}", highlight=False)
    if cfg.roster_error:
        cli.out.print(f"[bold red]roster invalid:[/] {cfg.roster_error}", highlight=False)


@notify_app.command("outbox")
def notify_outbox(
    status: Annotated[
        str | None, typer.Option(help="Only rows in this status (pending, sending, sent, failed, dead).")
    ] = None,
    incident: Annotated[str | None, typer.Option(help="Only rows of this incident (INC-YYYYMMDD-###).")] = None,
    limit: Annotated[int, typer.Option(help="Newest N rows.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """The newest outbox rows: channel, target, status, attempts, next attempt, last error."""
    from coffee_scraper.incidents.notify.models import OUTBOX_STATUSES, NotificationOutbox

    cli = _cli()
    if status is not None and status not in OUTBOX_STATUSES:
        raise cli.fail(f"--status {status!r} is not one of {', '.join(OUTBOX_STATUSES)}")
    with open_store() as factory, db.session_scope(factory) as session:
        stmt = select(NotificationOutbox).order_by(NotificationOutbox.id.desc()).limit(limit)
        if status:
            stmt = stmt.where(NotificationOutbox.status == status)
        if incident:
            stmt = stmt.where(NotificationOutbox.incident_id == incident)
        rows: list[dict[str, Any]] = [
            {
                "id": r.id,
                "incident": r.incident_id,
                "channel": r.channel,
                "target": r.target,
                "kind": r.kind,
                "status": r.status,
                "attempts": r.attempts,
                "next_attempt_at": r.next_attempt_at.isoformat(),
                "created_at": r.created_at.isoformat(),
                "sent_at": r.sent_at.isoformat() if r.sent_at else None,
                "external_ref": r.external_ref,
                "last_error": r.last_error,
            }
            for r in session.scalars(stmt)
        ]
    if as_json:
        cli._print_json(rows)
        return
    table = Table("id", "incident", "channel", "target", "kind", "status", "tries", "next / sent", "last error")
    for r in rows:
        when = r["sent_at"] or r["next_attempt_at"]
        table.add_row(
            str(r["id"]),
            r["incident"] or "",
            r["channel"],
            r["target"],
            r["kind"],
            r["status"],
            str(r["attempts"]),
            when[:19].replace("T", " "),
            (r["last_error"] or "")[:80],
        )
    cli.out.print(table)


@notify_app.command("retry")
def notify_retry(
    ids: Annotated[list[int] | None, typer.Argument(help="Outbox row ids to send again (see `notify outbox`).")] = None,
    all_dead: Annotated[bool, typer.Option("--all-dead", help="Requeue every dead message.")] = False,
) -> None:
    """Requeue dead (given-up) messages, e.g. after fixing a token; they keep their order per target."""
    from coffee_scraper.incidents.notify.models import NotificationOutbox

    cli = _cli()
    if not ids and not all_dead:
        raise cli.fail(
            "name outbox ids to retry or pass --all-dead (list them: coffee-scraper notify outbox --status dead)"
        )
    now = utcnow()
    o = NotificationOutbox
    with open_store() as factory, db.session_scope(factory) as session:
        stmt = update(o).where(o.status == "dead")
        if ids:
            stmt = stmt.where(o.id.in_(ids))
        result = session.execute(
            stmt.values(status="pending", attempts=0, next_attempt_at=now, created_at=now).execution_options(
                synchronize_session=False
            )
        )
        n = int(getattr(result, "rowcount", 0) or 0)
    cli.out.print(
        f"requeued {n} dead message(s); the incident loop (serve) delivers them, or run "
        "`coffee-scraper notify run-once`",
        highlight=False,
    )


@notify_app.command("run-once")
def notify_run_once(as_json: JsonOpt = False) -> None:
    """One pass of the incident loop here and now: sweeps, escalations, reminders, delivery."""
    from coffee_scraper.incidents.runner import IncidentRunner

    cli = _cli()
    s = cli.settings()
    with open_store() as factory:
        runner = IncidentRunner(s, factory, heartbeat=False)
        try:
            result = runner.run_once(force_health=True)
        finally:
            runner.stop()
    d = result.delivery
    data: dict[str, Any] = {
        "at": result.at.isoformat(),
        "escalations": [vars(x) for x in result.escalations],
        "reminders": [vars(x) for x in result.reminders],
        "claimed": d.claimed,
        "sent": d.sent,
        "failed": d.failed,
        "dead": d.dead,
        "delivery_errors": d.errors,
        "step_errors": result.errors,
        "delivery_firing": result.health.firing if result.health else None,
    }
    if as_json:
        cli._print_json(data)
    else:
        cli.out.print(
            f"escalations {len(result.escalations)}, reminders {len(result.reminders)}, sent {d.sent}, "
            f"failed {d.failed}, dead {d.dead}",
            highlight=False,
        )
        for e in d.errors + [f"{k}: {v}" for k, v in result.errors.items()]:
            cli.err.print(f"[yellow]{e}[/]", highlight=False)
    if result.errors:
        raise typer.Exit(1)


@notify_app.command("test")
def notify_test(
    channel: Annotated[
        list[str] | None,
        typer.Option(
            help="Channel(s) to test: slack, email, webhook (default: "
            "every configured one; GitHub is not tested: it would "
            "open an issue)."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Send a test message through each configured channel now and report what happened."""
    from coffee_scraper.incidents.notify.base import Delivered, DeliveryError, Outgoing
    from coffee_scraper.incidents.notify.config import NotifyConfig
    from coffee_scraper.incidents.notify.outbox import build_senders
    from coffee_scraper.incidents.oncall import ROLES as _roles
    from coffee_scraper.incidents.templates import Message, render_email, render_slack

    cli = _cli()
    s = cli.settings()
    cfg = NotifyConfig.from_settings(s)
    wanted = channel or [c for c, on in cfg.channels().items() if on and c != "github"]
    senders = build_senders(cfg)
    now = utcnow()
    msg = Message(
        "status_update",
        "TEST",
        "📊 coffee-scraper test message",
        (("Current Status", "Test"), ("Owner", "coffee-scraper")),
        notes=("If you read this, the channel works.",),
        links=cfg.links.for_incident("TEST"),
    )
    results: dict[str, str] = {}
    for name in wanted:
        sender = senders.get(name)
        if sender is None:
            results[name] = "off: " + cfg.channel_notes().get(name, "unknown channel")
            continue
        if name == "slack":
            payload: dict[str, Any] = render_slack(msg, s.slack_channel)
            target = s.slack_channel
        elif name == "email":
            subject, body = render_email(msg)
            payload = {"subject": subject, "body": body}
            person = next((p for r in _roles if (p := cfg.roster.who(r, now)) and p.email), None)
            target = (s.smtp_to.split(",")[0].strip() if s.smtp_to else None) or (person.email if person else "")
            if not target:
                results[name] = "no recipient: set COFFEE_SCRAPER_SMTP_TO or put an e-mail in the roster"
                continue
        elif name == "webhook":
            payload = {
                "event": {"kind": "test", "at": now.isoformat()},
                "incident": None,
                "message": msg.as_json(),
                "text": "coffee-scraper test message",
                "links": [],
            }
            target = s.webhook_url or ""
        else:
            results[name] = "not testable from here"
            continue
        out = Outgoing(0, None, name, target, "test", payload, 1, now)
        try:
            res: Delivered | DeliveryError = sender.send(out, lambda _i, _c: None)
        except DeliveryError as exc:
            res = exc
        results[name] = f"ok ({target})" if isinstance(res, Delivered) else f"FAILED: {res}"
        sender.close()
    if as_json:
        cli._print_json(results)
    else:
        for name, text in results.items():
            cli.out.print(f"{name}: {text}", highlight=False)
    if any(v.startswith("FAILED") for v in results.values()):
        raise typer.Exit(1)
