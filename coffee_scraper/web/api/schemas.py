"""Request and response models of ``/api/v1`` (they make the OpenAPI schema) and their builders from rows.

The dashboard pages render the same objects, so a page and its API endpoint always show the same numbers.
Queries are in ``catalog/service.py`` and ``accounts/service.py``; routes in the sibling modules.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from coffee_scraper.accounts.models import ApiToken, User
from coffee_scraper.catalog import service
from coffee_scraper.catalog.models import Coffee, Price, QuarantinedProduct, ScrapeRun, Variant
from coffee_scraper.jobs.cadence import next_after
from coffee_scraper.jobs.models import JobSchedule
from coffee_scraper.settings import Settings
from coffee_scraper.web.security import WebContext

Role = Literal["viewer", "operator", "admin"]
MAX_ID = 2_147_483_647  # INTEGER primary keys: larger ids cannot exist (and would overflow the drivers)


def _clean_text(value: str) -> str:
    """Text the databases can store: no NUL characters (PostgreSQL refuses them), no lone surrogates."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode text") from exc
    return value


CleanStr = Annotated[str, AfterValidator(_clean_text)]
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]


class VariantOut(BaseModel):
    id: int
    platform_variant_id: str
    title: str
    weight_g: int | None
    pack_count: int
    grind: str | None
    price_minor: int
    compare_at_minor: int | None
    currency: str
    in_stock: bool
    status: str
    per_250g_minor: int | None = Field(description="Price per 250 g in minor units (None: weight unknown).")


class CoffeeSummary(BaseModel):
    id: int
    roaster_id: int
    roaster: str
    name: str
    title: str
    roast_level: str | None
    process: str | None
    species: str | None
    country: str | None
    region: str | None
    decaf: bool
    status: str
    in_stock: bool = Field(description="Some active variant is in stock.")
    from_price_minor: int | None = Field(description="Cheapest active variant's price (minor units).")
    from_weight_g: int | None = Field(description="Net weight of that cheapest variant.")
    per_250g_minor: int | None = Field(description="Cheapest price per 250 g among active variants.")
    currency: str | None


class EvidenceOut(BaseModel):
    attribute: str
    source: str
    text: str


class CoffeeDetail(CoffeeSummary):
    platform: str
    platform_product_id: str
    is_coffee: bool
    estate: str | None
    altitude_min_m: int | None
    altitude_max_m: int | None
    chicory_pct: int | None
    varieties: list[str]
    tasting_notes: list[str]
    evidence: list[EvidenceOut]
    review_flags: list[str]
    first_seen_at: datetime
    last_seen_at: datetime
    missing_since: datetime | None
    variants: list[VariantOut]


class CoffeePage(BaseModel):
    items: list[CoffeeSummary]
    total: int
    limit: int
    offset: int


class PricePoint(BaseModel):
    variant_id: int
    variant: str
    observed_at: datetime
    price_minor: int
    compare_at_minor: int | None
    currency: str
    in_stock: bool
    per_250g_minor: int | None


class RunSummary(BaseModel):
    id: int
    roaster_id: int
    roaster: str
    mode: str
    status: str = Field(description="running | ok | partial | fail")
    platform: str | None
    started_at: datetime
    finished_at: datetime | None
    duration_s: float | None
    pages_fetched: int
    pages_not_modified: int
    products_seen: int
    products_new: int
    products_updated: int
    products_unchanged: int
    products_quarantined: int
    products_missing: int
    price_changes: int
    reviews_flagged: int
    error_summary: str | None


class FetchedPageOut(BaseModel):
    id: int
    kind: str
    page: int | None
    url: str
    status: int
    size_bytes: int
    elapsed_ms: float
    from_cache: bool
    fetched_at: datetime


class QuarantinedOut(BaseModel):
    id: int
    platform_product_id: str | None
    reason: str
    raw: dict[str, Any]


class RunDetailOut(RunSummary):
    errors: list[dict[str, Any]]
    pages: list[FetchedPageOut]
    quarantined_products: list[QuarantinedOut]


class RoasterOut(BaseModel):
    id: int
    name: str
    base_url: str
    platform: str
    currency: str | None
    active: bool
    paused_reason: str | None
    full_cadence: str = Field(description="Cron of full runs (the roaster's own or the default).")
    price_cadence: str = Field(description="Cron of price runs (the roaster's own or the default).")
    next_full_run_at: datetime | None = Field(description="Next full run by the cadence (None while paused).")
    next_price_run_at: datetime | None
    delay_s: float | None
    circuit_state: str
    consecutive_failures: int
    consecutive_failed_runs: int
    robots_allowed: bool | None
    robots_status: int | None
    robots_fetched_at: datetime | None
    last_run_at: datetime | None
    last_success_at: datetime | None
    coffees: int = Field(description="Active coffees of this roaster.")
    last_run: RunSummary | None
    running: bool = Field(description="A run-now of this roaster is queued or in progress in this process.")
    needs_attention: bool


class RoasterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: CleanStr = Field(min_length=1, max_length=500, description="The shop's URL or bare host name.")
    name: CleanStr | None = Field(None, max_length=200, description="Display name (default: the host name).")
    platform: Literal["auto", "shopify", "woocommerce"] = "auto"
    currency: CleanStr | None = Field(
        None, min_length=3, max_length=3, description="ISO 4217 code when the shop does not say (e.g. INR)."
    )
    delay_s: float | None = Field(None, ge=0, le=3600, description="Seconds between requests to this shop.")


class PauseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: CleanStr | None = Field(None, max_length=500)


class RunNowIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["full", "price"] = "full"


class RunNowOut(BaseModel):
    roaster: str
    mode: str
    started: bool
    message: str


class UserOut(BaseModel):
    id: int
    username: str
    role: str
    active: bool
    created_at: datetime
    last_login_at: datetime | None


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: CleanStr = Field(min_length=1, max_length=64)
    password: CleanStr = Field(min_length=1, max_length=1024)
    role: Role = "viewer"


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role | None = None
    active: bool | None = None
    password: CleanStr | None = Field(None, min_length=1, max_length=1024)


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: CleanStr = Field(min_length=1, max_length=100)
    expires_in_days: int | None = Field(None, ge=1, le=3650, description="None: the token never expires.")


class TokenOut(BaseModel):
    id: int
    user: str
    name: str
    prefix: str = Field(description="The token's first characters, to recognise it.")
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class NewTokenOut(BaseModel):
    id: int
    name: str
    token: str = Field(description="The secret: shown once, only its hash is stored.")
    prefix: str
    expires_at: datetime | None


class MeOut(BaseModel):
    username: str
    role: str
    via: str = Field(description="session | user_token | api_token")


class CheckOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    ok: bool


class SystemOut(BaseModel):
    process_rss_bytes: float | None
    host_memory_ratio: float | None
    disk_usage_ratio: dict[str, float]


class OverviewOut(BaseModel):
    checks: dict[str, CheckOut]
    system: SystemOut
    roasters_total: int
    roasters_paused: int
    coffees_active: int
    runs_last_24h: dict[str, int]
    last_runs: list[RunSummary]
    needs_attention: list[RoasterOut]


# --- builders -----------------------------------------------------------------------------------------


def variant_out(v: Variant) -> VariantOut:
    return VariantOut(
        id=v.id,
        platform_variant_id=v.platform_variant_id,
        title=v.title,
        weight_g=v.weight_g,
        pack_count=v.pack_count,
        grind=v.grind,
        price_minor=v.price_minor,
        compare_at_minor=v.compare_at_minor,
        currency=v.currency,
        in_stock=v.in_stock,
        status=v.status,
        per_250g_minor=service.per_250g_minor(v.price_minor, v.weight_g, v.pack_count),
    )


def _summary_fields(c: Coffee) -> dict[str, Any]:
    active = [v for v in c.variants if v.status == "active"]
    priced = [v for v in active if v.price_minor > 0]
    cheapest = min(priced, key=lambda v: v.price_minor) if priced else None
    per_250 = [p for p in (service.per_250g_minor(v.price_minor, v.weight_g, v.pack_count) for v in priced) if p]
    return {
        "id": c.id,
        "roaster_id": c.roaster_id,
        "roaster": c.roaster.name,
        "name": c.name_clean,
        "title": c.title,
        "roast_level": c.roast_level,
        "process": c.process,
        "species": c.species,
        "country": c.country,
        "region": c.region,
        "decaf": c.decaf,
        "status": c.status,
        "in_stock": any(v.in_stock for v in active),
        "from_price_minor": cheapest.price_minor if cheapest else None,
        "from_weight_g": cheapest.weight_g if cheapest else None,
        "per_250g_minor": min(per_250) if per_250 else None,
        "currency": cheapest.currency if cheapest else None,
    }


def coffee_summary(c: Coffee) -> CoffeeSummary:
    return CoffeeSummary(**_summary_fields(c))


def _evidence(items: list[Any]) -> list[EvidenceOut]:
    out = []
    for e in items or []:
        if isinstance(e, dict):
            out.append(
                EvidenceOut(
                    attribute=str(e.get("attribute", "")), source=str(e.get("source", "")), text=str(e.get("text", ""))
                )
            )
    return out


def coffee_detail(c: Coffee) -> CoffeeDetail:
    return CoffeeDetail(
        **_summary_fields(c),
        platform=c.platform,
        platform_product_id=c.platform_product_id,
        is_coffee=c.is_coffee,
        estate=c.estate,
        altitude_min_m=c.altitude_min_m,
        altitude_max_m=c.altitude_max_m,
        chicory_pct=c.chicory_pct,
        varieties=[str(v) for v in c.varieties or []],
        tasting_notes=[str(n) for n in c.tasting_notes or []],
        evidence=_evidence(c.evidence),
        review_flags=[str(f) for f in c.review_flags or []],
        first_seen_at=c.first_seen_at,
        last_seen_at=c.last_seen_at,
        missing_since=c.missing_since,
        variants=[variant_out(v) for v in c.variants],
    )


def evidence_by_attribute(detail: CoffeeDetail) -> dict[str, list[EvidenceOut]]:
    grouped: dict[str, list[EvidenceOut]] = defaultdict(list)
    for e in detail.evidence:
        grouped[e.attribute].append(e)
    return dict(grouped)


def price_points(prices: list[Price], variants: list[Variant]) -> list[PricePoint]:
    by_id = {v.id: v for v in variants}
    out = []
    for p in prices:
        v = by_id.get(p.variant_id)
        out.append(
            PricePoint(
                variant_id=p.variant_id,
                variant=v.title if v else str(p.variant_id),
                observed_at=p.observed_at,
                price_minor=p.price_minor,
                compare_at_minor=p.compare_at_minor,
                currency=p.currency,
                in_stock=p.in_stock,
                per_250g_minor=service.per_250g_minor(p.price_minor, v.weight_g, v.pack_count) if v else None,
            )
        )
    return out


def run_summary(run: ScrapeRun, roaster: str) -> RunSummary:
    duration = (run.finished_at - run.started_at).total_seconds() if run.finished_at else None
    return RunSummary(
        id=run.id,
        roaster_id=run.roaster_id,
        roaster=roaster,
        mode=run.mode,
        status=run.status,
        platform=run.platform,
        started_at=run.started_at,
        finished_at=run.finished_at,
        duration_s=round(duration, 3) if duration is not None else None,
        pages_fetched=run.pages_fetched,
        pages_not_modified=run.pages_not_modified,
        products_seen=run.products_seen,
        products_new=run.products_new,
        products_updated=run.products_updated,
        products_unchanged=run.products_unchanged,
        products_quarantined=run.products_quarantined,
        products_missing=run.products_missing,
        price_changes=run.price_changes,
        reviews_flagged=run.reviews_flagged,
        error_summary=run.error_summary,
    )


def _quarantined(q: QuarantinedProduct) -> QuarantinedOut:
    return QuarantinedOut(
        id=q.id,
        platform_product_id=q.platform_product_id,
        reason=q.reason,
        raw=q.raw if isinstance(q.raw, dict) else {},
    )


def run_detail_out(detail: service.RunDetail) -> RunDetailOut:
    errors = [e if isinstance(e, dict) else {"kind": "unknown", "message": str(e)} for e in detail.run.errors or []]
    return RunDetailOut(
        **run_summary(detail.run, detail.roaster).model_dump(),
        errors=errors,
        pages=[FetchedPageOut(**p) for p in detail.pages],
        quarantined_products=[_quarantined(q) for q in detail.quarantined],
    )


def next_run(cadence: str, now: datetime, tz: str = "UTC") -> datetime | None:
    """The next time ``cadence`` (cron, read in ``tz``) fires after ``now``; None for one that does not parse.

    Cron has minute resolution, so the answer for the current minute is cached: a page of 500 roasters that
    share a few cadences costs a few cron evaluations, not a thousand (croniter takes ~1-2 ms each).
    """
    return _next_run_in_minute(cadence, tz, now.replace(second=0, microsecond=0))


@lru_cache(maxsize=4096)
def _next_run_in_minute(cadence: str, tz: str, minute: datetime) -> datetime | None:
    try:
        return next_after(cadence, minute, tz)
    except (ValueError, KeyError):
        return None


def roaster_out(
    status: service.RoasterStatus,
    settings: Settings,
    now: datetime,
    *,
    running: bool,
    due: dict[tuple[int, str], datetime] | None = None,
) -> RoasterOut:
    """``due``: the scheduler's next due time per (roaster id, mode); the cron's next time when missing."""
    r = status.roaster
    full = r.full_cadence or settings.full_cadence
    price = r.price_cadence or settings.price_cadence
    due = due or {}

    def next_of(mode: str, cron: str) -> datetime | None:
        if not r.active:
            return None
        return due.get((r.id, mode)) or next_run(cron, now, settings.cadence_timezone)

    return RoasterOut(
        id=r.id,
        name=r.name,
        base_url=r.base_url,
        platform=r.platform,
        currency=r.currency,
        active=r.active,
        paused_reason=r.paused_reason,
        full_cadence=full,
        price_cadence=price,
        next_full_run_at=next_of("full", full),
        next_price_run_at=next_of("price", price),
        delay_s=r.delay_s,
        circuit_state=r.circuit_state,
        consecutive_failures=r.consecutive_failures,
        consecutive_failed_runs=r.consecutive_failed_runs,
        robots_allowed=r.robots_allowed,
        robots_status=r.robots_status,
        robots_fetched_at=r.robots_fetched_at,
        last_run_at=r.last_run_at,
        last_success_at=r.last_success_at,
        coffees=status.coffees,
        last_run=run_summary(status.last_run, r.name) if status.last_run else None,
        running=running or (status.last_run is not None and status.last_run.status == "running"),
        needs_attention=status.needs_attention,
    )


def due_times(session: Session) -> dict[tuple[int, str], datetime]:
    """The scheduler's next due time per (roaster id, mode), in one query (``jobs/`` keeps the schedules)."""
    return {(row.roaster_id, row.mode): row.next_due_at for row in session.scalars(select(JobSchedule))}


def roaster_rows(
    session: Session, ctx: WebContext, is_running: Callable[[str], bool], *, roaster_id: int | None = None
) -> list[RoasterOut]:
    """Every roaster (or one) as the roasters list shows it: state, last run, cadences and next due times."""
    now, due = ctx.now(), due_times(session)
    return [
        roaster_out(s, ctx.settings, now, running=is_running(s.roaster.name), due=due)
        for s in service.roaster_statuses(session, roaster_id=roaster_id)
    ]


def user_out(u: User) -> UserOut:
    return UserOut(
        id=u.id,
        username=u.username,
        role=u.role,
        active=u.active,
        created_at=u.created_at,
        last_login_at=u.last_login_at,
    )


def token_out(t: ApiToken, username: str) -> TokenOut:
    return TokenOut(
        id=t.id,
        user=username,
        name=t.name,
        prefix=t.prefix,
        created_at=t.created_at,
        expires_at=t.expires_at,
        last_used_at=t.last_used_at,
        revoked_at=t.revoked_at,
    )
