"""HTTP API of investigation, recovery and learning, and the recovery loop inside ``coffee-scraper serve``.

Lives here: ``ops_router(settings)`` (mounted by ``web/app.py``): ``GET /api/v1/diagnostics``,
``POST /api/v1/incidents/{id}/diagnostics`` (run and record), ``GET /api/v1/remediation/actions``,
``POST /api/v1/remediation/{action}`` (dry run unless ``"dry_run": false``), ``GET /api/v1/remediation/runs``,
checklists (``GET .../checklist``, ``POST .../checklist/{item}``), action items, postmortems
(``GET``/``POST /api/v1/incidents/{id}/postmortem``), ``GET /api/v1/reports/incidents``, ``GET /api/v1/runbook``
and the drills API; the router's lifespan records the start-up (git revision, settings fingerprint), registers
the app's engine for ``reconnect-db`` and runs ``followup.RecoveryLoop`` every ``recovery_interval_s``.
Writes need the API token (``web/auth.py``). The clock is ``app.state.incident_clock`` when set (tests, drills).
Does not live here: the domain logic (``diagnostics.py``, ``remediation.py``, ``followup.py``, ``drills.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from coffee_scraper.catalog import db
from coffee_scraper.incidents import diagnostics, drills, followup, remediation, store
from coffee_scraper.observability.logging import get_logger
from coffee_scraper.settings import Settings
from coffee_scraper.web.auth import Caller, TokenAuth

INCIDENT_ID = r"^[A-Za-z]{3}-\d{8}-\d{3,}$"


class RemediateIn(BaseModel):
    target: str | None = Field(None, description="The roaster for open-circuit / close-circuit.")
    channel: str | None = Field(
        None, max_length=20, description="open-circuit / close-circuit: a notification channel's breaker instead."
    )
    incident_id: str | None = Field(None, description="Record the run on this incident's timeline.")
    dry_run: bool = Field(True, description="Safe by default: only a real run when this is false.")
    minutes: float | None = Field(None, gt=0, description="open-circuit: hold the circuit open this long.")
    reason: str | None = Field(None, max_length=500, description="pause-queue: the reason shown while paused.")
    actor: str | None = Field(None, max_length=200, description="Who runs it (default: the API caller).")


class CheckIn(BaseModel):
    done: bool = Field(True, description="false un-checks the item.")
    note: str | None = Field(None, max_length=2000)
    actor: str | None = Field(None, max_length=200)


class ActionItemIn(BaseModel):
    text: str = Field(..., min_length=1, max_length=2000)
    type: Literal["mitigate", "prevent", "process", "other"] = "prevent"
    owner: str | None = Field(None, max_length=200)
    ticket_url: str | None = Field(None, max_length=2000)
    due_days: int = Field(30, ge=1, le=365)


class DrillIn(BaseModel):
    scenario: str = Field(
        ..., description="db-outage, storage-errors, roaster-5xx, roaster-429, disk, memory, channel-down"
    )
    fast: bool = Field(False, description="Shorten the scenario rules' `for` to zero and rate windows to seconds.")
    page: bool = Field(False, description="Page the real roster (default: stand-ins; nobody real is paged).")
    timeout_s: float = Field(900.0, gt=0, le=7200, description="Give up waiting for a step after this long.")
    actor: str | None = Field(None, max_length=200)


class PostmortemIn(BaseModel):
    data_loss: bool | None = Field(None, description="Record whether data was lost (a reason to require one).")
    open_issues: bool = Field(False, description="Open GitHub issues for action items without a ticket.")
    authors: str | None = Field(None, max_length=500)


def ops_router(settings: Settings) -> APIRouter:
    """The routes above on the incident store (``incidents_database_url`` or the catalog) and the catalog."""
    incidents_engine = store.incident_engine(settings)
    incidents = db.session_factory(incidents_engine)
    same = not store.is_separate(settings)
    catalog_engine = incidents_engine if same else db.make_engine(settings.database_url)
    catalog = db.session_factory(catalog_engine)
    writer = Depends(TokenAuth(settings.api_token))
    reader = Depends(TokenAuth(settings.api_token, required=settings.api_read_requires_token))
    log = get_logger("incidents")

    def clock_of(request_or_app: Any) -> Callable[[], datetime]:
        app = getattr(request_or_app, "app", request_or_app)
        clock: Callable[[], datetime] | None = getattr(app.state, "incident_clock", None)
        return clock or (lambda: datetime.now(UTC))

    def read(fn: Callable[[Session], Any]) -> Any:
        with incidents() as session:
            return fn(session)

    def write(fn: Callable[[Session], Any]) -> Any:
        with db.session_scope(incidents) as session:
            return fn(session)

    def checked(incident_id: str) -> str:
        incident_id = incident_id.strip().upper()
        return incident_id

    def followup_call(fn: Callable[[Session], Any], *, writing: bool = True) -> Any:
        try:
            return write(fn) if writing else read(fn)
        except followup.FollowupError as exc:
            status = 404 if str(exc).startswith("no incident") else 400
            raise HTTPException(status, str(exc)) from exc

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app_engine = getattr(app.state, "engine", None)
        if app_engine is not None:
            remediation.register_engine("app", app_engine)
        remediation.register_engine("incidents", incidents_engine)
        if not same:
            remediation.register_engine("catalog", catalog_engine)
        try:
            await run_in_threadpool(diagnostics.record_startup, incidents, settings, "serve", now=clock_of(app))
        except Exception as exc:  # the schema may not exist yet; readiness says so
            log.warning("startup_record_failed", error=f"{type(exc).__name__}: {exc}".splitlines()[0])
        loop = followup.RecoveryLoop(
            settings, incidents_factory=incidents, catalog_factory=catalog, now=lambda: clock_of(app)()
        )
        app.state.recovery_loop = loop
        drill_service.now = lambda: clock_of(app)()
        app.state.drills = drill_service
        stop = asyncio.Event()
        task = (
            asyncio.create_task(loop.run(stop, settings.recovery_interval_s))
            if settings.recovery_interval_s > 0
            else None
        )
        try:
            yield
        finally:
            await run_in_threadpool(drill_service.close)
            stop.set()
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, timeout=settings.diagnostics_timeout_s + 5)
            for name in ("app", "incidents", "catalog"):
                remediation.unregister_engine(name)
            incidents_engine.dispose()
            if not same:
                catalog_engine.dispose()

    drill_service = drills.DrillService(settings)
    router = APIRouter(lifespan=lifespan)

    # --- diagnostics ---------------------------------------------------------------------------------------

    def _diagnose(request: Request, incident_id: str | None, check: list[str] | None) -> diagnostics.DiagnosticsReport:
        roasters: list[str] = []
        if incident_id:
            roasters = followup_call(
                lambda s: followup.affected_roasters(s, followup.get_incident(s, incident_id).id), writing=False
            )
        try:
            return diagnostics.run_diagnostics(
                settings,
                incident_id=incident_id,
                roasters=roasters,
                only=check,
                now=clock_of(request),
                engines=remediation.registered_engines(),
            )
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from exc

    @router.get("/api/v1/diagnostics", tags=["recovery"], summary="Run the diagnostics now (nothing is recorded)")
    def get_diagnostics(
        request: Request,
        check: list[str] | None = Query(None, description="Only these checks (repeatable)."),
        _caller: Caller = reader,
    ) -> dict[str, Any]:
        return _diagnose(request, None, check).to_dict()

    @router.post(
        "/api/v1/incidents/{incident_id}/diagnostics",
        tags=["recovery"],
        summary="Run the diagnostics scoped to an incident and record the result on its timeline",
    )
    def post_diagnostics(
        incident_id: str, request: Request, check: list[str] | None = Query(None), caller: Caller = writer
    ) -> dict[str, Any]:
        incident_id = checked(incident_id)
        report = _diagnose(request, incident_id, check)

        def tx(session: Session) -> dict[str, Any]:
            event = followup.record_diagnostics(
                session, followup.get_incident(session, incident_id), report, actor=caller.name, now=clock_of(request)()
            )
            return {**report.to_dict(), "event_id": event.id}

        result: dict[str, Any] = followup_call(tx)
        return result

    # --- remediation ---------------------------------------------------------------------------------------

    @router.get("/api/v1/remediation/actions", tags=["recovery"], summary="The remediation actions")
    def actions(_caller: Caller = reader) -> list[dict[str, Any]]:
        return [
            {
                "name": a.name,
                "target": a.target,
                "channel": a.channel,
                "destructive": a.destructive,
                "description": a.description,
            }
            for a in remediation.ACTIONS.values()
        ]

    @router.post(
        "/api/v1/remediation/{action}",
        tags=["recovery"],
        summary="Run a remediation action (a dry run unless dry_run is false); audited",
    )
    def remediate(action: str, body: RemediateIn, request: Request, caller: Caller = writer) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if body.minutes is not None:
            params["minutes"] = body.minutes
        if body.reason:
            params["reason"] = body.reason
        if body.channel:
            params["channel"] = body.channel
        try:
            record = remediation.remediate(
                action,
                settings=settings,
                catalog_factory=catalog,
                incidents_factory=incidents,
                target=body.target,
                params=params,
                dry_run=body.dry_run,
                actor=body.actor or caller.name,
                incident_id=checked(body.incident_id) if body.incident_id else None,
                now=clock_of(request),
            )
        except remediation.RemediationError as exc:
            status = 404 if str(exc).startswith(("no incident", "unknown action", "no roaster")) else 400
            raise HTTPException(status, str(exc)) from exc
        return record.to_dict()

    @router.get("/api/v1/remediation/runs", tags=["recovery"], summary="Audited remediation runs, newest first")
    def remediation_runs(
        incident_id: str | None = Query(None), limit: int = Query(50, ge=1, le=500), _caller: Caller = reader
    ) -> list[dict[str, Any]]:
        def q(session: Session) -> list[dict[str, Any]]:
            return [
                {
                    "id": r.id,
                    "action": r.action,
                    "target": r.target,
                    "dry_run": r.dry_run,
                    "automatic": r.automatic,
                    "actor": r.actor,
                    "incident_id": r.incident_id,
                    "status": r.status,
                    "summary": r.summary,
                    "started_at": r.started_at.isoformat(),
                    "finished_at": r.finished_at.isoformat(),
                }
                for r in remediation.history(
                    session, incident_id=checked(incident_id) if incident_id else None, limit=limit
                )
            ]

        result: list[dict[str, Any]] = read(q)
        return result

    # --- checklists, action items, postmortems ----------------------------------------------------------------

    @router.get("/api/v1/incidents/{incident_id}/checklist", tags=["recovery"], summary="Post-incident checklists")
    def get_checklist(incident_id: str, request: Request, _caller: Caller = reader) -> list[dict[str, Any]]:
        incident_id = checked(incident_id)
        now = clock_of(request)()
        result: list[dict[str, Any]] = followup_call(
            lambda s: followup.checklist_rows(s, followup.get_incident(s, incident_id).id, now), writing=False
        )
        return result

    @router.post(
        "/api/v1/incidents/{incident_id}/checklist/{item}",
        tags=["recovery"],
        summary="Check a checklist item off (PHASE.N or its id)",
    )
    def check(incident_id: str, item: str, body: CheckIn, request: Request, caller: Caller = writer) -> dict[str, Any]:
        incident_id = checked(incident_id)

        def tx(session: Session) -> dict[str, Any]:
            row = followup.check_item(
                session,
                incident_id,
                item,
                actor=body.actor or caller.name,
                now=clock_of(request)(),
                done=body.done,
                note=body.note,
            )
            return {
                "id": row.id,
                "item": f"{row.phase}.{row.position}",
                "text": row.text,
                "done": row.done_at is not None,
                "done_by": row.done_by,
                "note": row.note,
            }

        result: dict[str, Any] = followup_call(tx)
        return result

    @router.post("/api/v1/incidents/{incident_id}/action-items", tags=["recovery"], summary="Add an action item")
    def action_item(incident_id: str, body: ActionItemIn, request: Request, caller: Caller = writer) -> dict[str, Any]:
        incident_id = checked(incident_id)

        def tx(session: Session) -> dict[str, Any]:
            row = followup.add_action_item(
                session,
                followup.get_incident(session, incident_id),
                body.text,
                item_type=body.type,
                owner=body.owner,
                ticket_url=body.ticket_url,
                due_in=timedelta(days=body.due_days),
                now=clock_of(request)(),
            )
            return {
                "id": row.id,
                "item": f"action.{row.position}",
                "text": row.text,
                "type": row.item_type,
                "owner": row.owner,
                "due_at": row.due_at.isoformat(),
            }

        result: dict[str, Any] = followup_call(tx)
        return result

    def _postmortem_dict(session: Session, incident_id: str) -> dict[str, Any]:
        from coffee_scraper.incidents.ops_models import Postmortem

        pm = session.get(Postmortem, incident_id)
        if pm is None:
            return {"incident_id": incident_id, "required": None, "reasons": [], "status": "pending", "markdown": None}
        return {
            "incident_id": incident_id,
            "required": pm.required,
            "reasons": list(pm.reasons or []),
            "status": pm.status,
            "data_loss": pm.data_loss,
            "detected_by": pm.detected_by,
            "due_at": pm.due_at.isoformat() if pm.due_at else None,
            "markdown": pm.markdown,
            "drafted_at": pm.drafted_at.isoformat() if pm.drafted_at else None,
        }

    @router.get("/api/v1/incidents/{incident_id}/postmortem", tags=["recovery"], summary="The postmortem (draft)")
    def get_postmortem(incident_id: str, _caller: Caller = reader) -> dict[str, Any]:
        incident_id = checked(incident_id)
        result: dict[str, Any] = followup_call(
            lambda s: _postmortem_dict(s, followup.get_incident(s, incident_id).id), writing=False
        )
        return result

    @router.post(
        "/api/v1/incidents/{incident_id}/postmortem",
        tags=["recovery"],
        summary="Draft the blameless postmortem from the record (and open action-item issues)",
    )
    def post_postmortem(
        incident_id: str, body: PostmortemIn, request: Request, caller: Caller = writer
    ) -> dict[str, Any]:
        incident_id = checked(incident_id)
        now = clock_of(request)()

        def tx(session: Session) -> dict[str, Any]:
            incident = followup.get_incident(session, incident_id)
            pm = followup.ensure_postmortem(session, incident, now=now)
            if body.data_loss is not None:
                pm.data_loss = body.data_loss
            if body.open_issues:
                followup.open_action_item_issues(session, incident.id, settings=settings, now=now)
            with catalog() as catalog_session:
                followup.draft_postmortem(
                    session, incident.id, now=now, catalog=catalog_session, authors=body.authors or caller.name
                )
            followup.ensure_postmortem(session, incident, now=now)
            return _postmortem_dict(session, incident.id)

        result: dict[str, Any] = followup_call(tx)
        return result

    # --- reports, runbook ------------------------------------------------------------------------------------

    @router.get("/api/v1/reports/incidents", tags=["recovery"], summary="Incident report (weekly by default)")
    def incident_report(
        request: Request,
        days: int = Query(7, ge=1, le=366),
        end: datetime | None = Query(None, description="End of the period (ISO, UTC); default: now."),
        include_drills: bool = Query(False),
        format: Literal["json", "markdown"] = Query("json"),
        _caller: Caller = reader,
    ) -> Any:
        until = end or clock_of(request)()
        if until.tzinfo is None:
            until = until.replace(tzinfo=UTC)
        data = read(lambda s: followup.weekly_report(s, end=until, days=days, include_drills=include_drills))
        if format == "markdown":
            return PlainTextResponse(followup.report_markdown(data), media_type="text/markdown")
        return data

    @router.get("/api/v1/runbook", tags=["recovery"], summary="The runbook rendered from the live configuration")
    def get_runbook(_caller: Caller = reader) -> PlainTextResponse:
        from coffee_scraper.incidents.runbook import live_inputs, render_runbook

        return PlainTextResponse(render_runbook(live_inputs(settings)), media_type="text/markdown")

    # --- drills ------------------------------------------------------------------------------------------------

    @router.post("/api/v1/drills", tags=["recovery"], status_code=202, summary="Start a drill in this server")
    def start_drill(body: DrillIn, caller: Caller = writer) -> dict[str, Any]:
        options = drills.DrillOptions(
            fast=body.fast,
            page=body.page,
            timeout_s=body.timeout_s,
            actor=body.actor or caller.name,
            run_loops=settings.recovery_interval_s <= 0,
        )
        if body.scenario not in drills.SCENARIOS:
            raise HTTPException(
                404, f"unknown drill scenario {body.scenario!r}; choose from {', '.join(drills.SCENARIOS)}"
            )
        try:
            run_id = drill_service.start(body.scenario, options)
        except drills.DrillError as exc:
            raise HTTPException(409, str(exc)) from exc
        return {"id": run_id, "scenario": body.scenario, "status": "running"}

    @router.get("/api/v1/drills", tags=["recovery"], summary="Drill runs, newest first")
    def list_drills(limit: int = Query(20, ge=1, le=200), _caller: Caller = reader) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = read(lambda s: drills.run_rows(s, limit))
        return result

    @router.get("/api/v1/drills/{drill_id}", tags=["recovery"], summary="One drill with its scorecard")
    def get_drill(drill_id: int, _caller: Caller = reader) -> dict[str, Any]:
        from coffee_scraper.incidents.ops_models import DrillRun

        def q(session: Session) -> dict[str, Any] | None:
            row = session.get(DrillRun, drill_id)
            return drills.drill_dict(row) if row is not None else None

        result: dict[str, Any] | None = read(q)
        if result is None:
            raise HTTPException(404, f"no drill {drill_id}; GET /api/v1/drills lists them")
        return result

    @router.post("/api/v1/drills/{drill_id}/abort", tags=["recovery"], summary="Abort the running drill")
    def abort_drill(drill_id: int, _caller: Caller = writer) -> dict[str, Any]:
        if drill_service.running() != drill_id or not drill_service.abort():
            raise HTTPException(409, f"drill {drill_id} is not running")
        return {"id": drill_id, "status": "aborting"}

    return router
