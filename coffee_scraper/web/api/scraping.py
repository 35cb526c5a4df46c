"""``/api/v1/roasters``, ``/api/v1/runs`` and ``/api/v1/overview``: what the Scraping and Overview pages show and do.

Queries are ``catalog/service.py``'s (shared with the CLI); run-now goes through ``web/pages/runner.py`` until
the scheduler offers it.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Query, Request, status

from coffee_scraper.catalog import service
from coffee_scraper.catalog.db import session_scope
from coffee_scraper.catalog.models import Roaster
from coffee_scraper.jobs import service as jobs
from coffee_scraper.web.api.overview import build_overview
from coffee_scraper.web.api.schemas import (
    IdPath,
    OverviewOut,
    PauseIn,
    RoasterIn,
    RoasterOut,
    RunDetailOut,
    RunNowIn,
    RunNowOut,
    RunSummary,
    roaster_rows,
    run_detail_out,
    run_summary,
)
from coffee_scraper.web.pages.runner import RunNow, RunRefused
from coffee_scraper.web.security import ApiOperator, ApiViewer, Context, WebContext

router = APIRouter(tags=["scraping"])


def runner_of(request: Request) -> RunNow:
    runner: RunNow = request.app.state.run_now
    return runner


def _roaster(ctx: WebContext, request: Request, roaster_id: int) -> RoasterOut:
    with ctx.factory() as session:
        found = roaster_rows(session, ctx, runner_of(request).is_running, roaster_id=roaster_id)
    if not found:
        raise HTTPException(404, f"no roaster {roaster_id}; GET /api/v1/roasters lists them")
    return found[0]


@router.get("/overview", response_model=OverviewOut, summary="System status, last runs, roasters needing care")
def overview(request: Request, ctx: Context, _: ApiViewer) -> OverviewOut:
    return build_overview(ctx, request.app.state.engine, runner_of(request))


@router.get("/roasters", response_model=list[RoasterOut], summary="Every roaster with its state and last run")
def list_roasters(request: Request, ctx: Context, _: ApiViewer) -> list[RoasterOut]:
    with ctx.factory() as session:
        return roaster_rows(session, ctx, runner_of(request).is_running)


@router.post("/roasters", response_model=RoasterOut, status_code=status.HTTP_201_CREATED, summary="Add a roaster")
def add_roaster(body: RoasterIn, request: Request, ctx: Context, _: ApiOperator) -> RoasterOut:
    try:
        url = service.shop_url(body.url)
        if body.currency is not None and not body.currency.isalpha():
            raise service.CatalogError(f"currency {body.currency!r} is not an ISO 4217 code like INR or USD")
        with session_scope(ctx.factory) as session:
            name = (body.name or "").strip() or (urlsplit(url).hostname or url)
            roaster = service.add_roaster(
                session, name, url, platform=body.platform, currency=body.currency, delay_s=body.delay_s
            )
            roaster_id = roaster.id
    except service.CatalogError as exc:
        raise HTTPException(409 if "already exists" in str(exc) else 400, str(exc)) from exc
    return _roaster(ctx, request, roaster_id)


@router.get("/roasters/{roaster_id}", response_model=RoasterOut, summary="One roaster")
def get_roaster(roaster_id: IdPath, request: Request, ctx: Context, _: ApiViewer) -> RoasterOut:
    return _roaster(ctx, request, roaster_id)


def set_paused(ctx: WebContext, roaster_id: int, paused: bool, reason: str | None) -> None:
    """Pause (runs are skipped; the reason is shown everywhere) or resume a roaster, as ``jobs pause/resume`` do."""
    with session_scope(ctx.factory) as session:
        roaster = session.get(Roaster, roaster_id)
        if roaster is None:
            raise HTTPException(404, f"no roaster {roaster_id}; GET /api/v1/roasters lists them")
        if paused:
            jobs.pause_roaster(session, roaster, reason=(reason or "").strip() or "paused from the API", now=ctx.now())
        else:
            jobs.resume_roaster(session, roaster)


@router.post("/roasters/{roaster_id}/pause", response_model=RoasterOut, summary="Pause a roaster's runs")
def pause_roaster(
    roaster_id: IdPath, request: Request, ctx: Context, _: ApiOperator, body: PauseIn | None = None
) -> RoasterOut:
    set_paused(ctx, roaster_id, True, body.reason if body else None)
    return _roaster(ctx, request, roaster_id)


@router.post("/roasters/{roaster_id}/resume", response_model=RoasterOut, summary="Resume a paused roaster")
def resume_roaster(roaster_id: IdPath, request: Request, ctx: Context, _: ApiOperator) -> RoasterOut:
    set_paused(ctx, roaster_id, False, None)
    return _roaster(ctx, request, roaster_id)


async def start_run(request: Request, roaster_id: int, mode: str) -> RunNowOut:
    """Run-now through the scheduler (see ``web/pages/runner.py``); 404/409 when it must not run."""
    try:
        result = await runner_of(request).request(roaster_id, mode, getattr(request.app.state, "scheduler", None))
    except RunRefused as exc:
        raise HTTPException(exc.status, exc.message) from exc
    return RunNowOut(roaster=result.roaster, mode=result.mode, started=result.started, message=result.message)


@router.post(
    "/roasters/{roaster_id}/run",
    response_model=RunNowOut,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Run a roaster now (in the background)",
)
async def run_roaster_now(
    roaster_id: IdPath, request: Request, _: ApiOperator, body: RunNowIn | None = None
) -> RunNowOut:
    return await start_run(request, roaster_id, body.mode if body else "full")


@router.get("/runs", response_model=list[RunSummary], summary="Runs, newest first")
def list_runs(
    ctx: Context,
    _: ApiViewer,
    roaster_id: Annotated[int | None, Query(ge=1, le=2_147_483_647)] = None,
    run_status: Annotated[Literal["running", "ok", "partial", "fail"] | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> list[RunSummary]:
    with ctx.factory() as session:
        rows = service.recent_runs(session, roaster_id=roaster_id, status=run_status, limit=limit, offset=offset)
        return [run_summary(run, name) for run, name in rows]


@router.get("/runs/{run_id}", response_model=RunDetailOut, summary="One run: pages, timing, errors, quarantine")
def get_run(run_id: IdPath, ctx: Context, _: ApiViewer) -> RunDetailOut:
    with ctx.factory() as session:
        try:
            return run_detail_out(service.run_detail(session, run_id))
        except service.CatalogError as exc:
            raise HTTPException(404, str(exc)) from exc
