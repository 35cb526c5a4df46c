"""HTTP routes of incident response: the three alert receivers and the incidents, silences and maintenance API.

Lives here: ``incidents_router(settings)`` (mounted by ``web/app.py``):

* ``POST /api/v2/alerts`` — Prometheus' alert array (its ``alerting.alertmanagers`` pointed at this app);
* ``POST /api/v1/alerts/alertmanager`` — the Alertmanager webhook (version 4);
* ``POST /api/v1/alerts/pagerduty`` (alias ``.../pagerduty/v2/enqueue``) — PagerDuty Events API v2 / v1 with
  PagerDuty's answers (202, 400 ``invalid event``, 429 ``throttle event`` above the per-routing-key rate), and
  ``.../pagerduty/v2/change/enqueue`` for change events (timeline markers);
* ``/api/v1/incidents`` (list, declare, stats) and ``/api/v1/incidents/{INC id}`` (with its timeline and alerts;
  ack, update, resolve, reopen, severity, comments); ``/api/v1/silences``; ``/api/v1/maintenance``.

Writes need the API token (``web/auth.py``); reads too unless ``api_read_requires_token`` is off. Invalid bodies
answer 400 with the list of problems (never a partial write: everything is validated before the one
transaction). The periodic ``flows.sweep`` runs in the background every ``incident_sweep_interval_s``.
The clock is ``app.state.incident_clock`` when set (tests), else the wall clock.
Does not live here: parsing (``receivers.py``), lifecycle rules (``flows.py``), queries (``service.py``).
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager, suppress
from datetime import datetime, timedelta
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, TypeAdapter
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from coffee_scraper.catalog import db
from coffee_scraper.catalog.models import utcnow
from coffee_scraper.incidents import flows, service, silences, store
from coffee_scraper.incidents import schemas as s
from coffee_scraper.incidents.errors import Conflict, IncidentError, NotFound
from coffee_scraper.incidents.ids import is_incident_id
from coffee_scraper.incidents.receivers import (
    AlertmanagerWebhookIn,
    PagerDutyChangeEventIn,
    PagerDutyEventIn,
    Parsed,
    PrometheusAlertIn,
    decode_json,
    parse_alertmanager,
    parse_pagerduty,
    parse_pagerduty_change,
    parse_prometheus,
)
from coffee_scraper.observability.logging import get_logger
from coffee_scraper.observability.metrics import ALERTS_RECEIVED
from coffee_scraper.settings import Settings
from coffee_scraper.web.auth import Caller, TokenAuth

T = TypeVar("T")
PD_INVALID = {"status": "invalid event", "message": "Event object is invalid"}
PD_THROTTLED = {
    "status": "throttle event",
    "message": "Requests for this service are arriving too quickly. Please retry later.",
    "errors": ["rate limit exceeded for this routing key"],
}
IncidentId = Annotated[str, Path(description="INC-YYYYMMDD-###", max_length=40)]


class ApiProblem(Exception):
    def __init__(self, status: int, detail: str, problems: list[str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.problems = problems if problems is not None else [detail]


def _problem_response(status: int, detail: str, problems: list[str]) -> JSONResponse:
    return JSONResponse({"detail": detail, "problems": problems}, status_code=status)


class ProblemRoute(APIRoute):
    """400 with a list of problems for invalid bodies and parameters (not FastAPI's 422); domain errors mapped."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                problems = []
                for err in exc.errors():
                    loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
                    problems.append(f"{loc}: {err.get('msg', 'invalid')}")
                return _problem_response(400, f"invalid request: {len(problems)} problem(s)", problems)
            except ApiProblem as exc:
                return _problem_response(exc.status, exc.detail, exc.problems)
            except NotFound as exc:
                return _problem_response(404, str(exc), [str(exc)])
            except Conflict as exc:
                return _problem_response(409, str(exc), [str(exc)])
            except IncidentError as exc:
                return _problem_response(400, str(exc), [str(exc)])
            except sa_exc.OperationalError as exc:
                get_logger("incidents").error("incident_store_unavailable", error=str(exc).splitlines()[0])
                return JSONResponse(
                    {"detail": "the incident database is unavailable; retry later", "problems": []},
                    status_code=503,
                    headers={"Retry-After": "10"},
                )

        return route


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema with its ``$defs`` inlined (OpenAPI ``openapi_extra`` cannot carry ``$defs``)."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                target = copy.deepcopy(defs[ref.rsplit("/", 1)[-1]])
                rest = {k: v for k, v in node.items() if k != "$ref"}
                return walk({**target, **rest})
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return dict(walk(schema))


def _body_doc(adapter_type: Any, description: str) -> dict[str, Any]:
    schema = _inline_refs(TypeAdapter(adapter_type).json_schema())
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": schema}},
        }
    }


class RateLimiter:
    """At most ``per_minute`` events per key in any 60 s (sliding window, in memory, per process)."""

    MAX_KEYS = 10_000

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._hits: dict[str, deque[float]] = {}

    def allow(self, key: str, now: float) -> bool:
        if self.per_minute <= 0:
            return True
        hits = self._hits.get(key)
        if hits is None:
            if len(self._hits) >= self.MAX_KEYS:
                self._hits.clear()
            hits = self._hits[key] = deque()
        while hits and hits[0] <= now - 60.0:
            hits.popleft()
        if len(hits) >= self.per_minute:
            return False
        hits.append(now)
        return True


def _count(source: str, result: str, n: int = 1) -> None:
    ALERTS_RECEIVED.labels(source=source, result=result).inc(n)


def _actor(body: BaseModel | None, caller: Caller) -> str:
    given = getattr(body, "actor", None) if body is not None else None
    return str(given or caller.name)


def incidents_router(settings: Settings) -> APIRouter:
    """Routes of the receivers and the incidents API on the incident store (``store.incidents_url``: own engine,
    own sweep loop)."""
    engine = store.incident_engine(settings)
    factory = db.session_factory(engine)
    policy = flows.Policy.from_settings(settings)
    write_auth = TokenAuth(settings.api_token)
    read_auth = TokenAuth(settings.api_token, required=settings.api_read_requires_token)
    limiter = RateLimiter(settings.incident_pagerduty_rate_per_min)
    log = get_logger("incidents")
    writer = Depends(write_auth)
    reader = Depends(read_auth)

    def clock_of(app: Any) -> Callable[[], datetime]:
        clock: Callable[[], datetime] | None = getattr(app.state, "incident_clock", None)
        return clock or utcnow

    def write(fn: Callable[[Session], T]) -> T:
        """One write transaction (serialised per process on SQLite); refreshes the open-incidents gauge."""
        with flows.write_lock(engine), db.session_scope(factory) as session:
            result = fn(session)
            session.flush()
            service.refresh_open_gauge(session)
            return result

    def read(fn: Callable[[Session], T]) -> T:
        with factory() as session:
            return fn(session)

    def run_sweep(now: datetime) -> flows.SweepResult:
        return write(lambda session: flows.sweep(session, now=now, settings=policy))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                await asyncio.sleep(settings.incident_sweep_interval_s)
                try:
                    swept = await run_in_threadpool(run_sweep, clock_of(app)())
                    if swept.expired or swept.auto_resolved or swept.breached or swept.resolve_pending:
                        log.info("incident_sweep", **swept.as_dict())
                except Exception as exc:
                    log.warning("incident_sweep_failed", error=f"{type(exc).__name__}: {exc}".splitlines()[0])

        task = asyncio.create_task(loop()) if settings.incident_sweep_interval_s > 0 else None
        try:
            await run_in_threadpool(read, service.refresh_open_gauge)
        except Exception as exc:  # a database without the schema yet: /health/ready says so
            log.warning("open_incidents_gauge_failed", error=str(exc).splitlines()[0] if str(exc) else "")
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
            engine.dispose()

    router = APIRouter(lifespan=lifespan, route_class=ProblemRoute)
    problem_responses: dict[int | str, dict[str, Any]] = {
        400: {"model": s.ProblemOut, "description": "Invalid body or parameters: the list of problems."},
        401: {"description": "Missing or wrong API token."},
        413: {"description": "Body larger than api_max_body_bytes (512 KB by default)."},
        503: {"description": "No API token configured, or the database is unavailable."},
        # invalid input answers 400 (never FastAPI's 422); declaring 4XX keeps FastAPI from documenting a 422
        "4XX": {"model": s.ProblemOut, "description": "Other client errors (404 unknown id, 409 wrong state)."},
    }

    # --- receivers ---------------------------------------------------------------------------------------

    async def receive(request: Request, source: str, parse: Callable[[Any, datetime], Parsed]) -> JSONResponse:
        body = await request.body()
        now = clock_of(request.app)()
        value, problems = decode_json(body)
        parsed = Parsed(problems=problems) if problems else parse(value, now)
        if not parsed.ok:
            _count(source, "invalid")
            log.info("alerts_rejected", source=source, problems=parsed.problems[:5])
            return _problem_response(400, f"invalid {source} body: {len(parsed.problems)} problem(s)", parsed.problems)
        result = await run_in_threadpool(
            write, lambda session: flows.ingest(session, parsed.events, now=now, settings=policy)
        )
        counts = result.counts()
        for outcome, n in counts.items():
            _count(source, outcome, n)
        if parsed.truncated_alerts:
            log.warning("alerts_truncated_by_sender", source=source, truncated=parsed.truncated_alerts)
        answer = s.ReceiverOut(
            status="success",
            received=len(parsed.events),
            results=counts,
            incidents=result.incident_ids,
            truncated_alerts=parsed.truncated_alerts,
        )
        return JSONResponse(answer.model_dump())

    @router.post(
        "/api/v2/alerts",
        tags=["alert receivers"],
        summary="Prometheus alerts (Alertmanager API v2 postAlerts)",
        response_model=s.ReceiverOut,
        responses=problem_responses,
        openapi_extra=_body_doc(list[PrometheusAlertIn], "The JSON array Prometheus posts (up to 64 per post)."),
    )
    async def prometheus_alerts(request: Request, _caller: Caller = writer) -> JSONResponse:
        """Point Prometheus' ``alerting.alertmanagers`` here (path_prefix "/", api_version v2, bearer token)."""
        user_agent = request.headers.get("user-agent")
        client = request.client.host if request.client else None
        ref = " ".join(x for x in (user_agent, client) if x) or None

        def parse(value: Any, now: datetime) -> Parsed:
            return parse_prometheus(value, received_at=now, source_ref=ref, limits=policy.limits)

        return await receive(request, "prometheus", parse)

    @router.post(
        "/api/v1/alerts/alertmanager",
        tags=["alert receivers"],
        summary="Alertmanager webhook (version 4)",
        response_model=s.ReceiverOut,
        responses=problem_responses,
        openapi_extra=_body_doc(AlertmanagerWebhookIn, "The Alertmanager webhook body (firing and resolved mixed)."),
    )
    async def alertmanager_webhook(request: Request, _caller: Caller = writer) -> JSONResponse:
        """A ``webhook_configs`` receiver with ``send_resolved: true`` and the bearer token."""

        def parse(value: Any, now: datetime) -> Parsed:
            return parse_alertmanager(value, received_at=now, limits=policy.limits)

        return await receive(request, "alertmanager", parse)

    pd_responses: dict[int | str, dict[str, Any]] = {
        202: {"model": s.PagerDutyOut, "description": "Event processed."},
        400: {"model": s.PagerDutyErrorOut, "description": "Invalid event (PagerDuty's shape); do not retry."},
        429: {"model": s.PagerDutyErrorOut, "description": "Too many events for this routing key; retry later."},
        401: problem_responses[401],
        413: problem_responses[413],
        503: problem_responses[503],
    }

    async def pagerduty_event(request: Request, _caller: Caller = writer) -> JSONResponse:
        """PagerDuty Events API v2 (``/v2/enqueue``) or legacy v1; ``dedup_key`` correlates the three actions."""
        body = await request.body()
        now = clock_of(request.app)()
        value, problems = decode_json(body)
        parsed = (
            Parsed(problems=problems) if problems else parse_pagerduty(value, received_at=now, limits=policy.limits)
        )
        if not parsed.ok:
            _count("pagerduty", "invalid")
            return JSONResponse({**PD_INVALID, "errors": parsed.problems}, status_code=400)
        event = parsed.events[0]
        if not limiter.allow(event.route_key or "", time.monotonic()):
            _count("pagerduty", "throttled")
            return JSONResponse(PD_THROTTLED, status_code=429, headers={"Retry-After": "60"})
        result = await run_in_threadpool(
            write, lambda session: flows.ingest(session, parsed.events, now=now, settings=policy)
        )
        for outcome, n in result.counts().items():
            _count("pagerduty", outcome, n)
        return JSONResponse(
            {"status": "success", "message": "Event processed", "dedup_key": event.reply_key}, status_code=202
        )

    pd_doc = _body_doc(PagerDutyEventIn, "A PagerDuty Events API v2 event (legacy v1 bodies are accepted too).")
    for path, in_schema in (("/api/v1/alerts/pagerduty", True), ("/api/v1/alerts/pagerduty/v2/enqueue", False)):
        router.add_api_route(
            path,
            pagerduty_event,
            methods=["POST"],
            tags=["alert receivers"],
            summary="PagerDuty Events API v2",
            status_code=202,
            response_model=s.PagerDutyOut,
            responses=pd_responses,
            openapi_extra=pd_doc,
            include_in_schema=in_schema,
        )

    @router.post(
        "/api/v1/alerts/pagerduty/v2/change/enqueue",
        tags=["alert receivers"],
        summary="PagerDuty change event (a deploy/change marker on open incidents' timelines)",
        status_code=202,
        response_model=s.PagerDutyOut,
        responses=pd_responses,
        openapi_extra=_body_doc(PagerDutyChangeEventIn, "A PagerDuty change event."),
    )
    async def pagerduty_change(request: Request, _caller: Caller = writer) -> JSONResponse:
        body = await request.body()
        now = clock_of(request.app)()
        value, problems = decode_json(body)
        parsed = Parsed(problems=problems) if problems else parse_pagerduty_change(value, received_at=now)
        if not parsed.ok:
            _count("pagerduty", "invalid")
            return JSONResponse({**PD_INVALID, "errors": parsed.problems}, status_code=400)
        marker = parsed.change_events[0]
        await run_in_threadpool(write, lambda session: flows.record_change_event(session, marker, now=now))
        _count("pagerduty", "change")
        return JSONResponse({"status": "success", "message": "Change event processed"}, status_code=202)

    # --- incidents -----------------------------------------------------------------------------------------

    def checked(incident_id: str) -> str:
        if not is_incident_id(incident_id):
            raise NotFound(f"{incident_id!r} is not an incident ID (INC-YYYYMMDD-###)")
        return incident_id

    def detail(session: Session, incident_id: str, now: datetime | None = None) -> dict[str, Any]:
        session.flush()
        return service.incident_detail(session, incident_id, now=now)

    @router.get("/api/v1/incidents", tags=["incidents"], response_model=s.IncidentListOut, responses=problem_responses)
    def list_incidents(
        _caller: Caller = reader,
        open_: Annotated[bool, Query(alias="open", description="Only open (not resolved) incidents.")] = False,
        severity: Annotated[list[s.SeverityName] | None, Query(description="P0..P3; repeatable.")] = None,
        drills: Annotated[bool, Query(description="Include drills.")] = True,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> dict[str, Any]:
        """Incidents, newest first."""

        def q(session: Session) -> dict[str, Any]:
            rows = service.incident_rows(
                session,
                service.list_incidents(
                    session,
                    open_only=open_,
                    severities=severity or [],
                    include_drills=drills,
                    limit=limit,
                    offset=offset,
                ),
            )
            return {"count": len(rows), "incidents": rows}

        return read(q)

    @router.post(
        "/api/v1/incidents",
        tags=["incidents"],
        status_code=201,
        response_model=s.IncidentDetailOut,
        responses=problem_responses,
    )
    def declare(body: s.DeclareIn, request: Request, caller: Caller = writer) -> dict[str, Any]:
        """Declare an incident by hand (or a drill)."""
        now = clock_of(request.app)()

        def tx(session: Session) -> dict[str, Any]:
            incident = flows.declare(
                session,
                title=body.title,
                severity=body.severity,
                impact=body.impact,
                owner=body.owner,
                actor=_actor(body, caller),
                now=now,
                is_drill=body.is_drill,
                component=body.component,
            )
            return detail(session, incident.id, now)

        return write(tx)

    @router.get("/api/v1/incidents/stats", tags=["incidents"], response_model=s.StatsOut, responses=problem_responses)
    def incident_stats(
        _caller: Caller = reader,
        since: Annotated[datetime | None, Query(description="Incidents opened at or after (RFC 3339).")] = None,
        until: Annotated[datetime | None, Query(description="... and before.")] = None,
        days: Annotated[int | None, Query(ge=1, le=3650, description="Shortcut: the last N days.")] = None,
        drills: Annotated[bool, Query(description="Include drills.")] = False,
    ) -> dict[str, Any]:
        """MTTA / MTTR (mean, median, p90 seconds) and response breaches, overall and per severity."""
        start = s._aware(since)
        if days is not None and start is None:
            start = utcnow() - timedelta(days=days)
        return read(lambda session: service.stats(session, since=start, until=s._aware(until), include_drills=drills))

    @router.get(
        "/api/v1/incidents/{incident_id}",
        tags=["incidents"],
        response_model=s.IncidentDetailOut,
        responses={**problem_responses, 404: {"model": s.ProblemOut}},
    )
    def get_incident(incident_id: IncidentId, request: Request, _caller: Caller = reader) -> dict[str, Any]:
        """One incident with its timeline (oldest first), its alerts and its post-incident checklists."""
        now = clock_of(request.app)()
        return read(lambda session: service.incident_detail(session, checked(incident_id), now=now))

    one_responses = {**problem_responses, 404: {"model": s.ProblemOut}, 409: {"model": s.ProblemOut}}

    @router.post(
        "/api/v1/incidents/{incident_id}/ack",
        tags=["incidents"],
        response_model=s.IncidentDetailOut,
        responses=one_responses,
    )
    def ack(
        incident_id: IncidentId, request: Request, caller: Caller = writer, body: s.AckIn | None = None
    ) -> dict[str, Any]:
        """Acknowledge (idempotent); the acknowledger becomes owner when there is none."""
        now = clock_of(request.app)()

        def tx(session: Session) -> dict[str, Any]:
            flows.ack(
                session,
                checked(incident_id),
                actor=_actor(body, caller),
                now=now,
                message=(body.message or "") if body else "",
            )
            return detail(session, incident_id, now)

        return write(tx)

    @router.post(
        "/api/v1/incidents/{incident_id}/update",
        tags=["incidents"],
        response_model=s.IncidentDetailOut,
        responses=one_responses,
    )
    def update(incident_id: IncidentId, body: s.UpdateIn, request: Request, caller: Caller = writer) -> dict[str, Any]:
        """Status update: status (investigating/working), actions taken, next steps, ETA, owner, impact."""
        now = clock_of(request.app)()

        def tx(session: Session) -> dict[str, Any]:
            flows.update(
                session,
                checked(incident_id),
                actor=_actor(body, caller),
                now=now,
                status=body.status,
                actions_taken=body.actions_taken,
                next_steps=body.next_steps,
                eta=body.eta,
                owner=body.owner,
                impact=body.impact,
            )
            return detail(session, incident_id, now)

        return write(tx)

    @router.post(
        "/api/v1/incidents/{incident_id}/resolve",
        tags=["incidents"],
        response_model=s.IncidentDetailOut,
        responses=one_responses,
    )
    def resolve(
        incident_id: IncidentId, body: s.ResolveIn, request: Request, caller: Caller = writer
    ) -> dict[str, Any]:
        """Resolve with root cause, resolution and prevention (the runbook's resolution notice)."""
        now = clock_of(request.app)()

        def tx(session: Session) -> dict[str, Any]:
            flows.resolve(
                session,
                checked(incident_id),
                root_cause=body.root_cause,
                resolution=body.resolution,
                prevention=body.prevention,
                actor=_actor(body, caller),
                now=now,
            )
            return detail(session, incident_id, now)

        return write(tx)

    @router.post(
        "/api/v1/incidents/{incident_id}/reopen",
        tags=["incidents"],
        response_model=s.IncidentDetailOut,
        responses=one_responses,
    )
    def reopen(incident_id: IncidentId, body: s.ReopenIn, request: Request, caller: Caller = writer) -> dict[str, Any]:
        """Reopen a resolved incident."""
        now = clock_of(request.app)()

        def tx(session: Session) -> dict[str, Any]:
            flows.reopen(session, checked(incident_id), actor=_actor(body, caller), reason=body.reason, now=now)
            return detail(session, incident_id, now)

        return write(tx)

    @router.post(
        "/api/v1/incidents/{incident_id}/severity",
        tags=["incidents"],
        response_model=s.IncidentDetailOut,
        responses=one_responses,
    )
    def severity(
        incident_id: IncidentId, body: s.SeverityIn, request: Request, caller: Caller = writer
    ) -> dict[str, Any]:
        """Raise or lower the severity, with a reason."""
        now = clock_of(request.app)()

        def tx(session: Session) -> dict[str, Any]:
            flows.change_severity(
                session,
                checked(incident_id),
                severity=body.severity,
                reason=body.reason,
                actor=_actor(body, caller),
                now=now,
            )
            return detail(session, incident_id, now)

        return write(tx)

    @router.post(
        "/api/v1/incidents/{incident_id}/comments",
        tags=["incidents"],
        status_code=201,
        response_model=s.IncidentDetailOut,
        responses=one_responses,
    )
    def add_comment(
        incident_id: IncidentId, body: s.CommentIn, request: Request, caller: Caller = writer
    ) -> dict[str, Any]:
        """Add a comment to the timeline."""
        now = clock_of(request.app)()

        def tx(session: Session) -> dict[str, Any]:
            flows.comment(session, checked(incident_id), body=body.text, actor=_actor(body, caller), now=now)
            return detail(session, incident_id, now)

        return write(tx)

    # --- silences and maintenance windows ------------------------------------------------------------------

    def window_times(body: s.SilenceIn | s.MaintenanceIn, now: datetime) -> tuple[datetime, datetime]:
        start = body.starts_at or now
        if body.ends_at is not None and body.duration_s is not None:
            raise ApiProblem(400, "give ends_at or duration_s, not both")
        if body.ends_at is not None:
            return start, body.ends_at
        if body.duration_s is None:
            raise ApiProblem(400, "give ends_at or duration_s (how long it lasts)")
        try:
            return start, start + timedelta(seconds=body.duration_s)
        except OverflowError as exc:
            raise ApiProblem(400, "starts_at + duration_s is out of range") from exc

    @router.get("/api/v1/silences", tags=["silences"], response_model=list[s.SilenceOut], responses=problem_responses)
    def list_silences(
        request: Request,
        _caller: Caller = reader,
        expired: Annotated[bool, Query(description="Include expired.")] = False,
    ) -> list[dict[str, Any]]:
        now = clock_of(request.app)()
        return read(
            lambda session: [
                service.silence_dict(x, now) for x in silences.list_silences(session, now=now, include_expired=expired)
            ]
        )

    @router.post(
        "/api/v1/silences", tags=["silences"], status_code=201, response_model=s.SilenceOut, responses=problem_responses
    )
    def add_silence(body: s.SilenceIn, request: Request, _caller: Caller = writer) -> dict[str, Any]:
        """Mute matching firing alerts until ends_at: they are stored with silenced_by and open no incident."""
        now = clock_of(request.app)()
        start, end = window_times(body, now)
        matchers = [silences.Matcher(m.name, m.value, is_regex=m.is_regex, is_equal=m.is_equal) for m in body.matchers]

        def tx(session: Session) -> dict[str, Any]:
            silence = silences.add_silence(
                session,
                matchers,
                starts_at=start,
                ends_at=end,
                created_by=body.created_by,
                comment=body.comment,
                now=now,
            )
            return service.silence_dict(silence, now)

        return write(tx)

    @router.delete(
        "/api/v1/silences/{silence_id}",
        tags=["silences"],
        response_model=s.SilenceOut,
        responses={**problem_responses, 404: {"model": s.ProblemOut}},
    )
    def expire_silence(
        silence_id: Annotated[int, Path(ge=1, le=2**31 - 1)], request: Request, _caller: Caller = writer
    ) -> dict[str, Any]:
        """Expire a silence now."""
        now = clock_of(request.app)()
        return write(lambda session: service.silence_dict(silences.expire_silence(session, silence_id, now=now), now))

    @router.get(
        "/api/v1/maintenance", tags=["silences"], response_model=list[s.MaintenanceOut], responses=problem_responses
    )
    def list_maintenance(
        request: Request,
        _caller: Caller = reader,
        past: Annotated[bool, Query(description="Include ended windows.")] = False,
    ) -> list[dict[str, Any]]:
        now = clock_of(request.app)()
        return read(
            lambda session: [
                service.window_dict(w, now) for w in silences.list_maintenance(session, now=now, include_past=past)
            ]
        )

    @router.post(
        "/api/v1/maintenance",
        tags=["silences"],
        status_code=201,
        response_model=s.MaintenanceOut,
        responses=problem_responses,
    )
    def add_maintenance(body: s.MaintenanceIn, request: Request, _caller: Caller = writer) -> dict[str, Any]:
        """A maintenance window: alerts of these components (none listed = all) are stored but open nothing."""
        now = clock_of(request.app)()
        start, end = window_times(body, now)

        def tx(session: Session) -> dict[str, Any]:
            window = silences.add_maintenance(
                session,
                starts_at=start,
                ends_at=end,
                components=body.components,
                comment=body.comment,
                created_by=body.created_by,
                now=now,
            )
            return service.window_dict(window, now)

        return write(tx)

    @router.delete(
        "/api/v1/maintenance/{window_id}",
        tags=["silences"],
        response_model=s.MaintenanceOut,
        responses={**problem_responses, 404: {"model": s.ProblemOut}},
    )
    def end_maintenance(
        window_id: Annotated[int, Path(ge=1, le=2**31 - 1)], request: Request, _caller: Caller = writer
    ) -> dict[str, Any]:
        """End a maintenance window now."""
        now = clock_of(request.app)()
        return write(lambda session: service.window_dict(silences.end_maintenance(session, window_id, now=now), now))

    return router
