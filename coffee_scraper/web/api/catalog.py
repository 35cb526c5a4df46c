"""``/api/v1/coffees``: the catalog with filters, one coffee with attributes, evidence and variants, price history.

Queries are ``catalog/service.py``'s (the CLI's ``coffees list`` uses the same ``coffees_query``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query

from coffee_scraper.catalog import service
from coffee_scraper.web.api.schemas import (
    CleanStr,
    CoffeeDetail,
    CoffeePage,
    IdPath,
    PricePoint,
    coffee_detail,
    coffee_summary,
    price_points,
)
from coffee_scraper.web.security import ApiViewer, Context

router = APIRouter(tags=["catalog"])

Sort = Literal["roaster", "name", "price_250", "-price_250", "newest"]
MAX_PAGE = 500


def to_minor(major: float | None) -> int | None:
    return None if major is None else round(major * 100)


@router.get("/coffees", response_model=CoffeePage, summary="Search coffees")
def list_coffees(
    ctx: Context,
    _: ApiViewer,
    q: Annotated[CleanStr | None, Query(max_length=200, description="Words in the title.")] = None,
    roaster: Annotated[CleanStr | None, Query(max_length=200)] = None,
    roast: Annotated[CleanStr | None, Query(max_length=20, description="light, light_medium, medium, ...")] = None,
    process: Annotated[CleanStr | None, Query(max_length=30)] = None,
    country: Annotated[CleanStr | None, Query(max_length=2, description="ISO alpha-2 origin, e.g. IN.")] = None,
    region: Annotated[CleanStr | None, Query(max_length=100)] = None,
    in_stock: bool | None = None,
    min_per_250g: Annotated[float | None, Query(ge=0, le=1e9, description="Major units per 250 g.")] = None,
    max_per_250g: Annotated[float | None, Query(ge=0, le=1e9, description="Major units per 250 g.")] = None,
    include_all: Annotated[bool, Query(description="Also non-coffee and missing products.")] = False,
    sort: Sort = "roaster",
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> CoffeePage:
    filters = service.CoffeeFilters(
        roaster=roaster or None,
        roast=roast or None,
        process=process or None,
        country=country or None,
        region=region or None,
        search=q or None,
        in_stock=in_stock,
        min_per_250g_minor=to_minor(min_per_250g),
        max_per_250g_minor=to_minor(max_per_250g),
        coffee_only=not include_all,
        include_missing=include_all,
    )
    with ctx.factory() as session:
        items, total = service.search_coffees(session, filters, sort=sort, limit=limit, offset=offset)
        return CoffeePage(items=[coffee_summary(c) for c in items], total=total, limit=limit, offset=offset)


@router.get("/coffees/{coffee_id}", response_model=CoffeeDetail, summary="One coffee with evidence and variants")
def get_coffee(coffee_id: IdPath, ctx: Context, _: ApiViewer) -> CoffeeDetail:
    with ctx.factory() as session:
        try:
            return coffee_detail(service.get_coffee(session, coffee_id))
        except service.CatalogError as exc:
            raise HTTPException(404, str(exc)) from exc


@router.get("/coffees/{coffee_id}/prices", response_model=list[PricePoint], summary="A coffee's price history")
def get_prices(coffee_id: IdPath, ctx: Context, _: ApiViewer) -> list[PricePoint]:
    with ctx.factory() as session:
        try:
            coffee = service.get_coffee(session, coffee_id)
        except service.CatalogError as exc:
            raise HTTPException(404, str(exc)) from exc
        return price_points(service.price_history(session, coffee_id), list(coffee.variants))
