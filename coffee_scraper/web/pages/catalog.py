"""Catalog pages: the coffee list with search and filters (``/catalog``) and one coffee (``/catalog/{id}``) with
attributes, their evidence, variants and a server-rendered price-history chart.

Queries are ``catalog/service.py``'s, row shapes ``web/api/schemas.py``'s (the same as ``/api/v1/coffees``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from coffee_scraper.catalog import service
from coffee_scraper.web.api.schemas import (
    IdPath,
    coffee_detail,
    coffee_summary,
    evidence_by_attribute,
    price_points,
)
from coffee_scraper.web.pages.charts import Series, line_chart
from coffee_scraper.web.pages.templating import is_htmx, render
from coffee_scraper.web.security import Context, PageViewer

router = APIRouter(include_in_schema=False)
SORT_LABELS = {
    "roaster": "Roaster, then name",
    "name": "Name",
    "price_250": "Price per 250 g, low to high",
    "-price_250": "Price per 250 g, high to low",
    "newest": "Newest first",
}
ATTRIBUTES = [  # (field, label) in the order the coffee page shows them
    ("roast_level", "Roast level"),
    ("process", "Process"),
    ("species", "Species"),
    ("country", "Country"),
    ("region", "Region"),
    ("estate", "Estate"),
    ("altitude_m", "Altitude (m)"),
    ("varieties", "Varieties"),
    ("tasting_notes", "Tasting notes"),
    ("decaf", "Decaf"),
    ("chicory_pct", "Chicory (%)"),
]
MAX_CHART_VARIANTS = 8


@dataclass
class ListQuery:
    """The coffee list's query string, parsed leniently: a bad value becomes an error message, not a 422."""

    q: str = ""
    roaster: str = ""
    roast: str = ""
    process: str = ""
    country: str = ""
    in_stock: str = ""  # "" | "1" | "0"
    min250: str = ""
    max250: str = ""
    sort: str = "roaster"
    page: int = 1


def _text(params: Any, key: str, limit: int = 200) -> str:
    value = str(params.get(key, "") or "").replace("\x00", "").strip()
    return value[:limit]


def _major_to_minor(value: str) -> int | None:
    if not value:
        return None
    try:
        number = Decimal(value.replace(",", ""))
    except InvalidOperation as exc:
        raise ValueError(f"{value!r} is not a number") from exc
    if not number.is_finite() or number < 0 or number > 10**9:
        raise ValueError(f"{value!r} is not a price between 0 and 1,000,000,000")
    return int((number * 100).to_integral_value())


def parse_list_query(request: Request) -> tuple[ListQuery, service.CoffeeFilters, list[str]]:
    params = request.query_params
    query = ListQuery(
        q=_text(params, "q"),
        roaster=_text(params, "roaster"),
        roast=_text(params, "roast", 20),
        process=_text(params, "process", 30),
        country=_text(params, "country", 2),
        in_stock=_text(params, "in_stock", 1),
        min250=_text(params, "min250", 20),
        max250=_text(params, "max250", 20),
        sort=_text(params, "sort", 20) or "roaster",
    )
    errors: list[str] = []
    try:
        query.page = max(1, min(int(params.get("page", "1") or 1), 1_000_000))
    except ValueError:
        errors.append("page must be a number")
    if query.sort not in SORT_LABELS:
        errors.append(f"unknown sort {query.sort!r}")
        query.sort = "roaster"
    bounds: list[int | None] = []
    for label, raw in (("lowest price per 250 g", query.min250), ("highest price per 250 g", query.max250)):
        try:
            bounds.append(_major_to_minor(raw))
        except ValueError as exc:
            errors.append(f"{label}: {exc}")
            bounds.append(None)
    filters = service.CoffeeFilters(
        roaster=query.roaster or None,
        roast=query.roast or None,
        process=query.process or None,
        country=query.country or None,
        search=query.q or None,
        in_stock={"1": True, "0": False}.get(query.in_stock),
        min_per_250g_minor=bounds[0],
        max_per_250g_minor=bounds[1],
    )
    return query, filters, errors


def _page_url(query: ListQuery, page: int) -> str:
    values = {k: v for k, v in vars(query).items() if v and k != "page"}
    if page > 1:
        values["page"] = page
    return "/catalog" + (f"?{urlencode(values)}" if values else "")


@router.get("/catalog")
def coffee_list(request: Request, ctx: Context, principal: PageViewer) -> HTMLResponse:
    query, filters, errors = parse_list_query(request)
    size = max(1, ctx.settings.dashboard_page_size)
    with ctx.factory() as session:
        items, total = service.search_coffees(
            session, filters, sort=query.sort, limit=size, offset=(query.page - 1) * size
        )
        rows = [coffee_summary(c) for c in items]
        facets = service.coffee_facets(session) if not is_htmx(request) else None
    pages = max(1, math.ceil(total / size))
    context = {
        "rows": rows,
        "total": total,
        "q": query,
        "errors": errors,
        "facets": facets,
        "sorts": SORT_LABELS,
        "page": query.page,
        "pages": pages,
        "prev_url": _page_url(query, query.page - 1) if query.page > 1 else None,
        "next_url": _page_url(query, query.page + 1) if query.page < pages else None,
    }
    template = "catalog/_results.html" if is_htmx(request) else "catalog/list.html"
    return render(request, template, context, principal=principal)


@router.get("/catalog/{coffee_id}")
def coffee_page(coffee_id: IdPath, request: Request, ctx: Context, principal: PageViewer) -> HTMLResponse:
    now = ctx.now()
    with ctx.factory() as session:
        try:
            coffee = service.get_coffee(session, coffee_id)
        except service.CatalogError as exc:
            raise HTTPException(404, str(exc)) from exc
        detail = coffee_detail(coffee)
        history = price_points(service.price_history(session, coffee_id), list(coffee.variants))
    by_variant: dict[int, list[tuple[Any, float]]] = {}
    for point in history:
        by_variant.setdefault(point.variant_id, []).append((point.observed_at, point.price_minor / 100))
    titles = {v.id: v.title for v in detail.variants}
    shown = [v for v in detail.variants if v.id in by_variant][:MAX_CHART_VARIANTS]
    currency = detail.currency or (detail.variants[0].currency if detail.variants else "")
    chart = line_chart(
        [Series(titles.get(v.id, str(v.id)), by_variant[v.id]) for v in shown],
        title=f"Price history of {detail.name}",
        y_label=f"price ({currency})",
        now=now,
    )
    values: dict[str, Any] = detail.model_dump()
    values["altitude_m"] = (
        f"{detail.altitude_min_m}–{detail.altitude_max_m}"
        if detail.altitude_min_m and detail.altitude_max_m and detail.altitude_min_m != detail.altitude_max_m
        else detail.altitude_min_m
    )
    context = {
        "c": detail,
        "attributes": [(key, label, values.get(key)) for key, label in ATTRIBUTES],
        "evidence": evidence_by_attribute(detail),
        "history": history,
        "chart": chart,
        "hidden_variants": len([v for v in detail.variants if v.id in by_variant]) - len(shown),
    }
    return render(request, "catalog/coffee.html", context, principal=principal)
