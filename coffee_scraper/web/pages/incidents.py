"""Incident pages: the list (filters, response-time countdowns), one incident (runbook fields, timeline, alerts,
notifications, diagnostics, checklists, postmortem) with its actions, declaring, silences, and the Insights charts.

Every action calls the same domain function as the REST API (``incidents/flows.py``, ``silences.py``,
``followup.py``, ``diagnostics.py``) inside the same kind of write transaction; forms need the operator role and
the CSRF token, and work without JavaScript (htmx only swaps the incident's body in place). Extra queries and the
chart data are ``web/api/insights.py``'s; the REST routes are ``incidents/views.py``'s and ``ops_views.py``'s.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from coffee_scraper.incidents import diagnostics, flows, followup, remediation, service, silences
from coffee_scraper.incidents.errors import Conflict, IncidentError, NotFound
from coffee_scraper.incidents.ids import is_incident_id
from coffee_scraper.incidents.models import SEVERITIES, Incident, IncidentEvent
from coffee_scraper.incidents.notify.outbox import parse_duration
from coffee_scraper.incidents.ops_models import Postmortem
from coffee_scraper.web.api.insights import (
    build_insights,
    create_checklists_now,
    incident_factory,
    notifications_for,
    open_incidents_panel,
    response_clock,
    span,
    write_incidents,
)
from coffee_scraper.web.pages.charts import BarChart, LineChart, Series, line_chart, stacked_bar_chart
from coffee_scraper.web.pages.templating import NavItem, is_htmx, register_nav, register_overview_slot, render
from coffee_scraper.web.security import Context, PageOperator, PageViewer, Principal, WebContext

router = APIRouter(include_in_schema=False)
T = TypeVar("T")

SEVERITY_CSS = {"P0": "s6", "P1": "s3", "P2": "s1", "P3": "s7"}  # chart palette: red, amber, blue, grey
SILENCE_DURATIONS = ("30m", "1h", "2h", "4h", "8h", "24h", "3d", "7d")
MAX_SILENCE = timedelta(days=366)
CHART_WEEKS = 12
CHART_DAYS = 30
STATS_DAYS = 30
TEXT = 10_000  # longest free text accepted by a form field (the API's limit)
SHORT = 200

register_nav(NavItem("Incidents", "/incidents", order=20))
register_nav(NavItem("Insights", "/insights", order=45))
register_overview_slot("incidents", "incidents/_slot_open.html", open_incidents_panel, title="Open incidents")


def attach(ctx: WebContext) -> None:
    """Called by ``mount_dashboard``: registers a separate incident store so the overview panel reads it."""
    incident_factory(ctx)


# --- helpers ---------------------------------------------------------------------------------------------------


def _clock(request: Request, ctx: WebContext) -> Callable[[], datetime]:
    """The incidents API's clock (``app.state.incident_clock``, set by tests and drills), else the dashboard's."""
    clock: Callable[[], datetime] | None = getattr(request.app.state, "incident_clock", None)
    return clock or ctx.now


def _write(ctx: WebContext, fn: Callable[[Session], T]) -> T:
    return write_incidents(ctx, fn)


def _checked(incident_id: str) -> str:
    if not is_incident_id(incident_id):
        raise HTTPException(
            404, f"{incident_id[:40]!r} is not an incident ID (INC-YYYYMMDD-###); see the Incidents page"
        )
    return incident_id


def _text(value: str, limit: int = TEXT) -> str:
    return value.replace("\x00", "").strip()[:limit]


def safe_links(links: list[Any]) -> list[dict[str, str | None]]:
    """Alert links as href, raw, text: ``href`` only when it is http(s) (a sender's ``javascript:`` stays text)."""
    out: list[dict[str, str | None]] = []
    for link in links or []:
        if not isinstance(link, dict):
            continue
        href = str(link.get("href") or "")
        try:
            scheme = urlsplit(href).scheme.lower() if href else ""
        except ValueError:  # e.g. "http://[not-an-address" from a sender
            scheme = ""
        out.append(
            {"href": href if scheme in ("http", "https") else None, "raw": href, "text": str(link.get("text") or href)}
        )
    return out


# --- the list --------------------------------------------------------------------------------------------------


def _list_filters(request: Request) -> tuple[dict[str, Any], list[str]]:
    params = request.query_params
    errors: list[str] = []
    state = params.get("state", "open")
    if state not in ("open", "all"):
        errors.append(f"state must be open or all, not {state[:20]!r}")
        state = "open"
    drills = params.get("drills", "include")
    if drills not in ("include", "exclude"):
        errors.append(f"drills must be include or exclude, not {drills[:20]!r}")
        drills = "include"
    severities = []
    for value in params.getlist("severity"):
        if value.upper() in SEVERITIES:
            severities.append(value.upper())
        else:
            errors.append(f"severity {value[:20]!r} is not one of {', '.join(SEVERITIES)}")
    try:
        page = max(1, int(params.get("page", "1")))
    except ValueError:
        errors.append("page must be a number")
        page = 1
    return {"state": state, "drills": drills, "severity": severities, "page": page}, errors


def _list_url(filters: dict[str, Any], **change: Any) -> str:
    values = {**filters, **change}
    pairs: list[tuple[str, Any]] = [("state", values["state"])]
    pairs += [("severity", s) for s in values["severity"]]
    if values["drills"] != "include":
        pairs.append(("drills", values["drills"]))
    if values["page"] > 1:
        pairs.append(("page", values["page"]))
    return "/incidents?" + urlencode(pairs)


def _list_context(request: Request, ctx: WebContext) -> dict[str, Any]:
    filters, errors = _list_filters(request)
    size = ctx.settings.dashboard_page_size
    now = _clock(request, ctx)()
    with incident_factory(ctx)() as session:
        found = service.list_incidents(
            session,
            open_only=filters["state"] == "open",
            severities=filters["severity"],
            include_drills=filters["drills"] == "include",
            limit=size + 1,
            offset=(filters["page"] - 1) * size,
        )
        counts = service.alert_counts(session, [i.id for i in found[:size]])
        open_counts = service.open_counts(session)
    rows = [
        {"incident": i, "clock": response_clock(i, now), "alerts": counts.get(i.id, {"firing": 0, "resolved": 0})}
        for i in found[:size]
    ]
    return {
        "rows": rows,
        "filters": filters,
        "errors": errors,
        "open_counts": open_counts,
        "severities": SEVERITIES,
        "self_url": _list_url(filters),
        "prev_url": _list_url(filters, page=filters["page"] - 1) if filters["page"] > 1 else None,
        "next_url": _list_url(filters, page=filters["page"] + 1) if len(found) > size else None,
    }


@router.get("/incidents")
def incidents_page(request: Request, ctx: Context, principal: PageViewer) -> HTMLResponse:
    context = _list_context(request, ctx)
    template = "incidents/_results.html" if is_htmx(request) else "incidents/list.html"
    return render(request, template, context, principal=principal)


# --- declaring -------------------------------------------------------------------------------------------------


def severity_choices() -> list[tuple[str, str]]:
    """(P0, "P0 Critical — respond: Immediate (0-15 minutes)") ... from the runbook's classification."""
    from coffee_scraper.incidents.alert_config import SEVERITIES as POLICIES

    return [(p.severity.value, f"{p.severity.value} {p.name} — respond: {p.response_text}") for p in POLICIES.values()]


EMPTY_DECLARE = {"title": "", "severity": "P2", "impact": "", "owner": "", "component": "", "is_drill": False}


@router.get("/incidents/new")
def declare_page(request: Request, principal: PageOperator) -> HTMLResponse:
    context = {"form": dict(EMPTY_DECLARE), "error": None, "choices": severity_choices()}
    return render(request, "incidents/new.html", context, principal=principal)


@router.post("/incidents")
def declare(
    request: Request,
    ctx: Context,
    principal: PageOperator,
    title: Annotated[str, Form(max_length=1024)] = "",
    severity: Annotated[str, Form(max_length=5)] = "",
    impact: Annotated[str, Form(max_length=TEXT)] = "",
    owner: Annotated[str, Form(max_length=SHORT)] = "",
    component: Annotated[str, Form(max_length=SHORT)] = "",
    is_drill: Annotated[str, Form(max_length=5)] = "",
) -> Response:
    form = {"title": title, "severity": severity, "impact": impact, "owner": owner, "component": component,
            "is_drill": is_drill in ("1", "on", "true")}  # fmt: skip
    now = _clock(request, ctx)()
    try:
        incident_id = _write(
            ctx,
            lambda session: (
                flows.declare(
                    session,
                    title=_text(title, 1024),
                    severity=severity,
                    impact=_text(impact) or None,
                    owner=_text(owner, SHORT) or None,
                    component=_text(component, SHORT) or None,
                    actor=principal.username,
                    now=now,
                    is_drill=bool(form["is_drill"]),
                ).id
            ),
        )
    except IncidentError as exc:
        context = {"form": form, "error": str(exc), "choices": severity_choices()}
        return render(request, "incidents/new.html", context, principal=principal, status_code=400)
    return RedirectResponse(f"/incidents/{incident_id}", status_code=303)


# --- one incident ----------------------------------------------------------------------------------------------


def _diagnostic_runs(events: list[IncidentEvent]) -> list[IncidentEvent]:
    """Timeline entries holding a diagnostics report (``followup.record_diagnostics``), newest first."""
    runs = [e for e in events if e.kind == "diagnostic" and isinstance((e.data or {}).get("checks"), list)]
    return list(reversed(runs))


def _checklist_groups(session: Session, incident_id: str, now: datetime) -> list[dict[str, Any]]:
    headings = {spec.phase: spec.heading for spec in followup.CHECKLISTS}
    headings["action"] = "Action items"
    groups: dict[str, dict[str, Any]] = {}
    for item in followup.checklist(session, incident_id):
        group = groups.setdefault(item.phase, {"phase": item.phase, "heading": headings.get(item.phase, item.phase),
                                               "items": []})  # fmt: skip
        group["items"].append(
            {"row": item, "ref": f"{item.phase}.{item.position}",
             "overdue": item.done_at is None and item.due_at < now}
        )  # fmt: skip
    return list(groups.values())


def _detail_context(request: Request, ctx: WebContext, incident_id: str, **extra: Any) -> dict[str, Any]:
    now = _clock(request, ctx)()
    with incident_factory(ctx)() as session:
        incident = session.get(Incident, incident_id)
        if incident is None:
            raise HTTPException(404, f"no incident {incident_id}; the Incidents page lists them")
        events = service.timeline(session, incident_id)
        alerts = service.linked_alerts(session, incident_id, events)
        notifications = notifications_for(session, incident_id)
        checklists = _checklist_groups(session, incident_id, now)
        postmortem = session.get(Postmortem, incident_id)
    labels: dict[str, str] = {}
    for alert in alerts:
        for key in ("alertname", "component"):
            value = (alert.labels or {}).get(key)
            if value and key not in labels:
                labels[key] = str(value)
    silence_query = urlencode(
        {"matchers": "\n".join(f"{k}={v}" for k, v in labels.items()),
         "comment": f"{incident.id}: {incident.title}"[:500]}
    )  # fmt: skip
    context: dict[str, Any] = {
        "i": incident,
        "clock": response_clock(incident, now),
        "events": events,
        "alerts": [{"alert": a, "links": safe_links(a.links)} for a in alerts],
        "notifications": notifications,
        "diagnostic_runs": _diagnostic_runs(events),
        "checklists": checklists,
        "postmortem": postmortem,
        "severities": SEVERITIES,
        "statuses": ("investigating", "working"),
        "silence_url": f"/silences?{silence_query}" if labels else None,
        "error": None,
        "message": None,
        "form": {},
        "polling": incident.is_open,
    }
    context.update(extra)
    return context


@router.get("/incidents/{incident_id}")
def incident_page(incident_id: str, request: Request, ctx: Context, principal: PageViewer) -> HTMLResponse:
    context = _detail_context(request, ctx, _checked(incident_id))
    if request.query_params.get("done"):
        context["message"] = _text(request.query_params["done"], 200)
    return render(request, "incidents/detail.html", context, principal=principal)


@router.get("/incidents/{incident_id}/timeline")
def timeline_fragment(incident_id: str, request: Request, ctx: Context, principal: PageViewer) -> HTMLResponse:
    """The timeline section alone (htmx refreshes it while the incident is open)."""
    incident_id = _checked(incident_id)
    with incident_factory(ctx)() as session:
        incident = session.get(Incident, incident_id)
        if incident is None:
            raise HTTPException(404, f"no incident {incident_id}; the Incidents page lists them")
        events = service.timeline(session, incident_id)
    context = {"i": incident, "events": events, "polling": incident.is_open}
    return render(request, "incidents/_timeline.html", context, principal=principal)


def _act(
    request: Request,
    ctx: WebContext,
    principal: Principal,
    incident_id: str,
    fn: Callable[[Session, datetime], object],
    *,
    done: str,
    form: dict[str, Any] | None = None,
) -> Response:
    """Run one action in a write transaction; on success back to the incident (303) saying ``done`` (or what ``fn``
    returned), else its page with the error (400 invalid, 404 unknown, 409 wrong state) and the form as typed."""
    incident_id = _checked(incident_id)
    now = _clock(request, ctx)()
    try:
        said = _write(ctx, lambda session: fn(session, now))
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    except (IncidentError, followup.FollowupError) as exc:
        status = 409 if isinstance(exc, Conflict) else 400
        context = _detail_context(request, ctx, incident_id, error=str(exc), form=form or {})
        return render(request, "incidents/detail.html", context, principal=principal, status_code=status)
    return RedirectResponse(
        f"/incidents/{incident_id}?{urlencode({'done': said if isinstance(said, str) else done})}", status_code=303
    )


@router.post("/incidents/{incident_id}/ack")
def ack(
    incident_id: str,
    request: Request,
    ctx: Context,
    principal: PageOperator,
    message: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    def fn(session: Session, now: datetime) -> str | None:
        _, changed = flows.ack(session, incident_id, actor=principal.username, now=now, message=_text(message, 2000))
        return None if changed else "It was already acknowledged; nothing changed."

    return _act(request, ctx, principal, incident_id, fn, done="Acknowledged.")


@router.post("/incidents/{incident_id}/update")
def status_update(
    incident_id: str,
    request: Request,
    ctx: Context,
    principal: PageOperator,
    status: Annotated[str, Form(max_length=20)] = "",
    actions_taken: Annotated[str, Form(max_length=TEXT)] = "",
    next_steps: Annotated[str, Form(max_length=TEXT)] = "",
    eta: Annotated[str, Form(max_length=500)] = "",
    owner: Annotated[str, Form(max_length=SHORT)] = "",
    impact: Annotated[str, Form(max_length=TEXT)] = "",
) -> Response:
    """The runbook's Status Update: Current Status, Actions Taken, Next Steps, ETA, Owner (and Impact)."""
    form = {"update": {"status": status, "actions_taken": actions_taken, "next_steps": next_steps, "eta": eta,
                       "owner": owner, "impact": impact}}  # fmt: skip

    def fn(session: Session, now: datetime) -> None:
        flows.update(
            session,
            incident_id,
            actor=principal.username,
            now=now,
            status=status or None,
            actions_taken=_text(actions_taken) or None,
            next_steps=_text(next_steps) or None,
            eta=_text(eta, 500) or None,
            owner=_text(owner, SHORT) or None,
            impact=_text(impact) or None,
        )

    return _act(request, ctx, principal, incident_id, fn, done="Status update posted.", form=form)


@router.post("/incidents/{incident_id}/severity")
def change_severity(
    incident_id: str,
    request: Request,
    ctx: Context,
    principal: PageOperator,
    severity: Annotated[str, Form(max_length=5)] = "",
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    form = {"severity": {"severity": severity, "reason": reason}}

    def fn(session: Session, now: datetime) -> None:
        flows.change_severity(
            session, incident_id, severity=severity, reason=_text(reason, 2000), actor=principal.username, now=now
        )

    return _act(request, ctx, principal, incident_id, fn, done=f"Severity changed to {severity[:5]}.", form=form)


@router.post("/incidents/{incident_id}/resolve")
def resolve(
    incident_id: str,
    request: Request,
    ctx: Context,
    principal: PageOperator,
    root_cause: Annotated[str, Form(max_length=TEXT)] = "",
    resolution: Annotated[str, Form(max_length=TEXT)] = "",
    prevention: Annotated[str, Form(max_length=TEXT)] = "",
) -> Response:
    """The runbook's resolution notice: root cause, resolution and prevention, all required."""
    form = {"resolve": {"root_cause": root_cause, "resolution": resolution, "prevention": prevention}}

    def fn(session: Session, now: datetime) -> None:
        flows.resolve(
            session,
            incident_id,
            root_cause=_text(root_cause),
            resolution=_text(resolution),
            prevention=_text(prevention),
            actor=principal.username,
            now=now,
        )

    return _act(request, ctx, principal, incident_id, fn, done="Resolved.", form=form)


@router.post("/incidents/{incident_id}/reopen")
def reopen(
    incident_id: str,
    request: Request,
    ctx: Context,
    principal: PageOperator,
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    form = {"reopen": {"reason": reason}}

    def fn(session: Session, now: datetime) -> None:
        flows.reopen(session, incident_id, actor=principal.username, reason=_text(reason, 2000), now=now)

    return _act(request, ctx, principal, incident_id, fn, done="Reopened.", form=form)


@router.post("/incidents/{incident_id}/comment")
def comment(
    incident_id: str,
    request: Request,
    ctx: Context,
    principal: PageOperator,
    text: Annotated[str, Form(max_length=TEXT)] = "",
) -> Response:
    form = {"comment": {"text": text}}

    def fn(session: Session, now: datetime) -> None:
        flows.comment(session, incident_id, body=_text(text), actor=principal.username, now=now)

    return _act(request, ctx, principal, incident_id, fn, done="Comment added.", form=form)


@router.post("/incidents/{incident_id}/diagnostics")
def run_diagnostics(incident_id: str, request: Request, ctx: Context, principal: PageOperator) -> Response:
    """Run the diagnostics scoped to the incident and put the report on its timeline (like
    ``POST /api/v1/incidents/{id}/diagnostics``); takes up to ``diagnostics_timeout_s``."""
    incident_id = _checked(incident_id)
    clock = _clock(request, ctx)
    with incident_factory(ctx)() as session:
        if session.get(Incident, incident_id) is None:
            raise HTTPException(404, f"no incident {incident_id}; the Incidents page lists them")
        roasters = followup.affected_roasters(session, incident_id)
    report = diagnostics.run_diagnostics(
        ctx.settings, incident_id=incident_id, roasters=roasters, now=clock, engines=remediation.registered_engines()
    )

    def fn(session: Session, now: datetime) -> None:
        followup.record_diagnostics(
            session, followup.get_incident(session, incident_id), report, actor=principal.username, now=now
        )

    return _act(request, ctx, principal, incident_id, fn, done=f"Diagnostics ran: {report.summary_line()}")


@router.post("/incidents/{incident_id}/checklist")
def create_checklists(incident_id: str, request: Request, ctx: Context, principal: PageOperator) -> Response:
    """Create the post-incident checklists now (the recovery loop of ``serve`` does it on resolution too)."""

    def fn(session: Session, now: datetime) -> None:
        create_checklists_now(session, ctx.settings, incident_id, now=now)

    return _act(request, ctx, principal, incident_id, fn, done="Checklists created.")


@router.post("/incidents/{incident_id}/checklist/{item}")
def check_item(
    incident_id: str,
    item: str,
    request: Request,
    ctx: Context,
    principal: PageOperator,
    done: Annotated[str, Form(max_length=5)] = "1",
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    checked = done in ("1", "true", "on")

    def fn(session: Session, now: datetime) -> None:
        followup.check_item(session, incident_id, item[:60], actor=principal.username, now=now, done=checked,
                            note=_text(note, 2000) or None)  # fmt: skip

    return _act(
        request,
        ctx,
        principal,
        incident_id,
        fn,
        done=f"Checklist item {item[:60]} {'done' if checked else 'reopened'}.",
    )


@router.post("/incidents/{incident_id}/postmortem")
def draft_postmortem(incident_id: str, request: Request, ctx: Context, principal: PageOperator) -> Response:
    """Draft (or redraft) the blameless postmortem from the record, as ``POST .../postmortem`` does."""

    def fn(session: Session, now: datetime) -> None:
        incident = followup.get_incident(session, incident_id)
        followup.ensure_postmortem(session, incident, now=now)
        with ctx.factory() as catalog:
            followup.draft_postmortem(session, incident.id, now=now, catalog=catalog, authors=principal.username)
        followup.ensure_postmortem(session, incident, now=now)

    return _act(request, ctx, principal, incident_id, fn, done="Postmortem drafted.")


# --- silences --------------------------------------------------------------------------------------------------


def _silences_context(request: Request, ctx: WebContext, **extra: Any) -> dict[str, Any]:
    now = _clock(request, ctx)()
    with incident_factory(ctx)() as session:
        rows = [service.silence_dict(s, now) for s in silences.list_silences(session, now=now, include_expired=False)]
        windows = [service.window_dict(w, now) for w in silences.list_maintenance(session, now=now)]
    params = request.query_params
    form = {
        "matchers": _text(params.get("matchers", ""), 2000),
        "duration": params.get("duration", "2h") if params.get("duration", "2h") in SILENCE_DURATIONS else "2h",
        "comment": _text(params.get("comment", ""), 2000),
    }
    context: dict[str, Any] = {"silences": rows, "windows": windows, "form": form, "durations": SILENCE_DURATIONS,
                               "error": None, "message": None}  # fmt: skip
    if params.get("done"):
        context["message"] = _text(params["done"], 200)
    context.update(extra)
    return context


@router.get("/silences")
def silences_page(request: Request, ctx: Context, principal: PageViewer) -> HTMLResponse:
    return render(request, "incidents/silences.html", _silences_context(request, ctx), principal=principal)


@router.post("/silences")
def add_silence(
    request: Request,
    ctx: Context,
    principal: PageOperator,
    matchers: Annotated[str, Form(max_length=5000)] = "",
    duration: Annotated[str, Form(max_length=20)] = "2h",
    comment: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Mute firing alerts matching every matcher (one per line) for ``duration``, as ``POST /api/v1/silences``."""
    form = {"matchers": matchers, "duration": duration, "comment": comment}
    now = _clock(request, ctx)()
    try:
        parsed = [silences.parse_matcher(line) for line in _text(matchers, 5000).splitlines() if line.strip()]
        try:
            length = parse_duration(duration)
        except ValueError as exc:
            raise IncidentError(f"duration {duration[:20]!r} is not like 30m, 2h or 3d") from exc
        if not timedelta(0) < length <= MAX_SILENCE:
            raise IncidentError("a silence lasts between 1 minute and 366 days")
        if not _text(comment, 2000):
            raise IncidentError("a comment is required: why these alerts are muted (e.g. the incident ID)")
        silence_id = _write(
            ctx,
            lambda session: silences.add_silence(
                session, parsed, starts_at=now, ends_at=now + length, created_by=principal.username,
                comment=_text(comment, 2000), now=now,
            ).id,
        )  # fmt: skip
    except IncidentError as exc:
        context = _silences_context(request, ctx, error=str(exc))
        context["form"] = form
        return render(request, "incidents/silences.html", context, principal=principal, status_code=400)
    return RedirectResponse(f"/silences?{urlencode({'done': f'Silence {silence_id} added.'})}", status_code=303)


@router.post("/silences/{silence_id}/expire")
def expire_silence(silence_id: int, request: Request, ctx: Context, principal: PageOperator) -> Response:
    if not 1 <= silence_id <= 2**31 - 1:
        raise HTTPException(404, f"no silence {silence_id}")
    now = _clock(request, ctx)()
    try:
        _write(ctx, lambda session: silences.expire_silence(session, silence_id, now=now))
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    return RedirectResponse(f"/silences?{urlencode({'done': f'Silence {silence_id} expired.'})}", status_code=303)


# --- insights --------------------------------------------------------------------------------------------------


TIME_UNITS = (("hours", 3600), ("minutes", 60))  # the first whose double the largest value reaches


def short_number(value: float) -> str:
    """Three significant digits, no trailing zeros: 0.25, 12.5, 1,250."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def insight_charts(ctx: WebContext, *, include_drills: bool = False) -> dict[str, BarChart | LineChart]:
    """The Insights page's charts from ``build_insights`` (the same numbers as ``GET /api/v1/insights``)."""
    data = build_insights(ctx, weeks=CHART_WEEKS, days=CHART_DAYS, include_drills=include_drills)
    now = data.generated_at
    per_week = stacked_bar_chart(
        [(w.week_start.strftime("%d %b"), w.counts) for w in data.incidents_per_week],
        keys=list(SEVERITIES),
        css=SEVERITY_CSS,
        title=f"Incidents per week by severity, last {CHART_WEEKS} weeks (by opening week)",
        y_label="incidents",
        label_every=2,
    )

    def week_chart(what: str, name: str, prefix: str) -> LineChart:
        """Mean and median per week, in the unit that suits the largest value (seconds, minutes or hours)."""
        values = [v for w in data.response_times_per_week for v in (getattr(w, f"{prefix}_mean_s"),
                  getattr(w, f"{prefix}_median_s")) if v is not None]  # fmt: skip
        unit, seconds = next(((u, n) for u, n in TIME_UNITS if max(values, default=0) >= 2 * n), ("seconds", 1))
        series = []
        for stat in ("mean", "median"):
            points = [
                (datetime.combine(w.week_start, datetime.min.time(), tzinfo=now.tzinfo), value / seconds)
                for w in data.response_times_per_week
                if (value := getattr(w, f"{prefix}_{stat}_s")) is not None
            ]
            series.append(Series(stat, points))
        return line_chart(series, title=f"{what} ({name}) per opening week, {unit}", y_label=unit, now=now,
                          step=False, fmt=short_number)  # fmt: skip

    mtta = week_chart("Time to acknowledge", "MTTA", "mtta")
    mttr = week_chart("Time to resolve", "MTTR", "mttr")
    fetch_points = [
        (datetime.combine(d.day, datetime.min.time(), tzinfo=now.tzinfo), d.rate * 100)
        for d in data.fetch_errors_per_day
        if d.rate is not None
    ]
    fetch = line_chart(
        [Series("runs ending on a fetch error", fetch_points)],
        title=f"Fetch error rate per day, last {CHART_DAYS} days (share of finished runs)",
        y_label="% of runs", now=now, step=False, fmt=lambda v: f"{short_number(v)}%",
    )  # fmt: skip
    return {"per_week": per_week, "mtta": mtta, "mttr": mttr, "fetch": fetch}


@router.get("/insights")
def insights_page(request: Request, ctx: Context, principal: PageViewer) -> HTMLResponse:
    include_drills = request.query_params.get("drills") == "1"
    now = _clock(request, ctx)()
    charts = insight_charts(ctx, include_drills=include_drills)
    with incident_factory(ctx)() as session:
        stats = service.stats(session, since=now - timedelta(days=STATS_DAYS), include_drills=include_drills)
    context = {"charts": charts, "stats": stats, "stats_days": STATS_DAYS, "include_drills": include_drills,
               "severities": SEVERITIES, "span": span}  # fmt: skip
    return render(request, "incidents/insights.html", context, principal=principal)
