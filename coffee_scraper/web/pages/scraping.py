"""Scraping pages: roasters (platform, cadence, next run, last result, circuit, robots) with add, pause, resume and
run-now; one roaster with its runs; one run with pages fetched, timing, errors and quarantined products.

Queries are ``catalog/service.py``'s and the actions the same functions ``/api/v1/roasters`` calls.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from coffee_scraper.catalog import service
from coffee_scraper.catalog.db import session_scope
from coffee_scraper.web.api.schemas import IdPath, roaster_rows, run_detail_out, run_summary
from coffee_scraper.web.api.scraping import set_paused, start_run
from coffee_scraper.web.pages.charts import BarChart, stacked_bar_chart
from coffee_scraper.web.pages.runner import RunNow
from coffee_scraper.web.pages.templating import is_htmx, render
from coffee_scraper.web.security import Context, PageOperator, PageViewer, Principal, WebContext

router = APIRouter(include_in_schema=False)
RUN_STATUSES = ("ok", "partial", "fail", "running")
CHART_DAYS = 30


def _runner(request: Request) -> RunNow:
    runner: RunNow = request.app.state.run_now
    return runner


def runs_chart(ctx: WebContext, days: int = CHART_DAYS) -> BarChart:
    """Runs per day by status over the last ``days`` days."""
    now = ctx.now()
    start = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    with ctx.factory() as session:
        outcomes = service.run_outcomes_since(session, start)
    first = start.date().toordinal()
    counts: list[Counter[str]] = [Counter() for _ in range(days)]
    for started, status in outcomes:
        index = started.date().toordinal() - first
        if 0 <= index < days:
            counts[index][status] += 1
    labels = [(start + timedelta(days=i)).strftime("%d %b") for i in range(days)]
    return stacked_bar_chart(
        [(label, dict(c)) for label, c in zip(labels, counts, strict=True)],
        keys=list(RUN_STATUSES),
        css={"ok": "st-ok", "partial": "st-partial", "fail": "st-fail", "running": "st-running"},
        title=f"Runs per day by result, last {days} days",
        y_label="runs",
        label_every=5,
    )


def _scraping_page(
    request: Request, ctx: WebContext, principal: Principal, *, status_code: int = 200, **extra: Any
) -> HTMLResponse:
    runner = _runner(request)
    with ctx.factory() as session:
        roasters = roaster_rows(session, ctx, runner.is_running)
        runs = [run_summary(run, name) for run, name in service.recent_runs(session, limit=20)]
    context: dict[str, Any] = {
        "roasters": roasters,
        "runs": runs,
        "chart": runs_chart(ctx),
        "form": {"url": "", "name": "", "platform": "auto", "currency": "", "delay_s": ""},
        "error": None,
        "message": None,
        **extra,
    }
    return render(request, "scraping/roasters.html", context, principal=principal, status_code=status_code)


@router.get("/scraping")
def scraping_page(request: Request, ctx: Context, principal: PageViewer) -> HTMLResponse:
    return _scraping_page(request, ctx, principal)


@router.post("/scraping/roasters")
def add_roaster(
    request: Request,
    ctx: Context,
    principal: PageOperator,
    url: Annotated[str, Form(max_length=500)] = "",
    name: Annotated[str, Form(max_length=200)] = "",
    platform: Annotated[str, Form(max_length=20)] = "auto",
    currency: Annotated[str, Form(max_length=10)] = "",
    delay_s: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    form = {"url": url, "name": name, "platform": platform, "currency": currency, "delay_s": delay_s}
    try:
        if "\x00" in url + name + currency:
            raise service.CatalogError("text fields must not contain NUL characters")
        base_url = service.shop_url(url)
        code = currency.strip().upper() or None
        if code is not None and (len(code) != 3 or not code.isalpha()):
            raise service.CatalogError(f"currency {currency!r} is not an ISO 4217 code like INR or USD")
        try:
            delay = float(delay_s) if delay_s.strip() else None
        except ValueError as exc:
            raise service.CatalogError(f"delay {delay_s!r} is not a number of seconds") from exc
        if delay is not None and not 0 <= delay <= 3600:
            raise service.CatalogError("delay must be between 0 and 3600 seconds")
        with session_scope(ctx.factory) as session:
            roaster = service.add_roaster(
                session,
                name.strip() or urlsplit(base_url).hostname or base_url,
                base_url,
                platform=platform,
                currency=code,
                delay_s=delay,
            )
            roaster_id = roaster.id
    except service.CatalogError as exc:
        return _scraping_page(request, ctx, principal, form=form, error=str(exc), status_code=400)
    return RedirectResponse(f"/scraping/roasters/{roaster_id}", status_code=303)


def _roaster_context(request: Request, ctx: WebContext, roaster_id: int) -> dict[str, Any]:
    with ctx.factory() as session:
        found = roaster_rows(session, ctx, _runner(request).is_running, roaster_id=roaster_id)
        if not found:
            raise HTTPException(404, f"no roaster {roaster_id}; the Scraping page lists them")
        roaster = found[0]
        runs = [run_summary(run, name) for run, name in service.recent_runs(session, roaster_id=roaster_id, limit=50)]
    polling = roaster.running or any(r.status == "running" for r in runs)
    return {"r": roaster, "runs": runs, "polling": polling, "error": None, "message": None}


@router.get("/scraping/roasters/{roaster_id}")
def roaster_page(roaster_id: IdPath, request: Request, ctx: Context, principal: PageViewer) -> HTMLResponse:
    return render(request, "scraping/roaster.html", _roaster_context(request, ctx, roaster_id), principal=principal)


@router.get("/scraping/roasters/{roaster_id}/runs")
def roaster_runs(roaster_id: IdPath, request: Request, ctx: Context, principal: PageViewer) -> HTMLResponse:
    """The roaster page's runs section alone (htmx polls it while a run is in progress); when the run it was
    polling for has ended, htmx reloads the whole page so the roaster's state (robots, circuit) is fresh too."""
    context = _roaster_context(request, ctx, roaster_id)
    headers = {"HX-Refresh": "true"} if request.query_params.get("was_running") and not context["polling"] else None
    return render(request, "scraping/_roaster_runs.html", context, principal=principal, headers=headers)


def _back(request: Request, roaster_id: int) -> str:
    referer = request.headers.get("referer", "")
    path = urlsplit(referer).path if referer else ""
    return "/scraping" if path == "/scraping" else f"/scraping/roasters/{roaster_id}"


@router.post("/scraping/roasters/{roaster_id}/pause")
def pause(
    roaster_id: IdPath,
    request: Request,
    ctx: Context,
    principal: PageOperator,
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    set_paused(
        ctx, roaster_id, True, reason.replace("\x00", "") or f"paused by {principal.username} from the dashboard"
    )
    return RedirectResponse(_back(request, roaster_id), status_code=303)


@router.post("/scraping/roasters/{roaster_id}/resume")
def resume(roaster_id: IdPath, request: Request, ctx: Context, principal: PageOperator) -> Response:
    set_paused(ctx, roaster_id, False, None)
    return RedirectResponse(_back(request, roaster_id), status_code=303)


@router.post("/scraping/roasters/{roaster_id}/run")
async def run_now(
    roaster_id: IdPath,
    request: Request,
    ctx: Context,
    principal: PageOperator,
    mode: Annotated[str, Form(max_length=10)] = "full",
) -> Response:
    if mode not in {"full", "price"}:
        raise HTTPException(400, f"mode must be full or price, not {mode!r}")
    try:
        await start_run(request, roaster_id, mode)
    except HTTPException as exc:
        if exc.status_code != 409:
            raise
        context = await run_in_threadpool(_roaster_context, request, ctx, roaster_id)
        context["error"] = exc.detail
        return render(request, "scraping/roaster.html", context, principal=principal, status_code=409)
    return RedirectResponse(f"/scraping/roasters/{roaster_id}", status_code=303)


@router.get("/scraping/runs/{run_id}")
def run_page(run_id: IdPath, request: Request, ctx: Context, principal: PageViewer) -> HTMLResponse:
    with ctx.factory() as session:
        try:
            detail = run_detail_out(service.run_detail(session, run_id))
        except service.CatalogError as exc:
            raise HTTPException(404, str(exc)) from exc
    by_kind = Counter(p.kind for p in detail.pages)
    fetch_ms = sum(p.elapsed_ms for p in detail.pages)
    context = {
        "run": detail,
        "by_kind": dict(by_kind),
        "fetch_ms": fetch_ms,
        "polling": detail.status == "running",
        "errors": [e for e in detail.errors if e.get("kind") != "quarantined"],
    }
    template = "scraping/_run_body.html" if is_htmx(request) else "scraping/run.html"
    return render(request, template, context, principal=principal)
