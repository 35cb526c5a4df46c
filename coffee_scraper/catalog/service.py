"""Every query and upsert on the catalog tables (roasters, coffees, variants, prices, runs, artifacts).

No HTTP and no normalization here: callers hand in normalized records and fetched pages.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import Session, selectinload, sessionmaker

from coffee_scraper.catalog.models import (
    Coffee,
    Price,
    QuarantinedProduct,
    RawArtifact,
    Review,
    Roaster,
    ScrapeRun,
    Variant,
    utcnow,
)
from coffee_scraper.normalize.models import NormalizedProduct, NormalizeResult
from coffee_scraper.storefronts.types import CachedResponse, FetchedPage, ShopState


class CatalogError(ValueError):
    """A catalog operation cannot be done as asked; the message says what to do instead."""


# --- roasters --------------------------------------------------------------------------------------


def add_roaster(
    session: Session,
    name: str,
    base_url: str,
    *,
    platform: str = "auto",
    currency: str | None = None,
    update_existing: bool = False,
    **overrides: Any,
) -> Roaster:
    """Create a roaster (or update it when ``update_existing``); names and base URLs are unique."""
    base_url = base_url.rstrip("/")
    if platform not in {"auto", "shopify", "woocommerce"}:
        raise CatalogError(f"unknown platform {platform!r}; use auto, shopify or woocommerce")
    existing = session.scalar(select(Roaster).where((Roaster.base_url == base_url) | (Roaster.name == name)))
    if existing is not None and not update_existing:
        raise CatalogError(
            f"a roaster named {existing.name!r} with URL {existing.base_url} already exists; "
            "use `coffee-scraper roasters list` to see it"
        )
    roaster = existing or Roaster(name=name, base_url=base_url)
    roaster.name, roaster.base_url, roaster.platform = name, base_url, platform
    if currency:
        roaster.currency = currency.upper()
    for key, value in overrides.items():
        if not hasattr(Roaster, key):
            raise CatalogError(f"unknown roaster setting {key!r}")
        setattr(roaster, key, value)
    session.add(roaster)
    session.flush()
    return roaster


def get_roaster(session: Session, name_or_id: str | int) -> Roaster:
    stmt = select(Roaster)
    if isinstance(name_or_id, int) or str(name_or_id).isdigit():
        stmt = stmt.where((Roaster.id == int(name_or_id)) | (Roaster.name == str(name_or_id)))
    else:
        stmt = stmt.where(Roaster.name == name_or_id)
    roaster = session.scalar(stmt)
    if roaster is None:
        raise CatalogError(f"no roaster {name_or_id!r}; `coffee-scraper roasters list` shows the known ones")
    return roaster


def list_roasters(session: Session, *, active_only: bool = False) -> list[Roaster]:
    stmt = select(Roaster).order_by(Roaster.name)
    if active_only:
        stmt = stmt.where(Roaster.active.is_(True))
    return list(session.scalars(stmt))


def shop_state(roaster: Roaster) -> ShopState:
    return ShopState(
        consecutive_failures=roaster.consecutive_failures,
        circuit_state=roaster.circuit_state,  # type: ignore[arg-type]
        circuit_opened_at=roaster.circuit_opened_at,
        robots_txt=roaster.robots_txt,
        robots_status=roaster.robots_status,
        robots_fetched_at=roaster.robots_fetched_at,
        extra=dict(roaster.fetch_state or {}),
    )


def save_shop_state(roaster: Roaster, state: ShopState) -> None:
    roaster.consecutive_failures = state.consecutive_failures
    roaster.circuit_state = state.circuit_state
    roaster.circuit_opened_at = state.circuit_opened_at
    roaster.robots_txt = state.robots_txt
    roaster.robots_status = state.robots_status
    roaster.robots_fetched_at = state.robots_fetched_at
    roaster.fetch_state = {k: v for k, v in state.extra.items() if isinstance(v, str | int | float | bool)}


# --- runs ---------------------------------------------------------------------------------------


def start_run(session: Session, roaster: Roaster, mode: str, now: datetime) -> ScrapeRun:
    run = ScrapeRun(roaster_id=roaster.id, mode=mode, status="running", started_at=now, errors=[])
    session.add(run)
    session.flush()
    return run


def fail_interrupted_runs(session: Session, now: datetime, *, roaster_id: int | None = None) -> int:
    """Runs left 'running' by a crashed process become 'fail' (what they committed page by page stays)."""
    stmt = update(ScrapeRun).where(ScrapeRun.status == "running")
    if roaster_id is not None:
        stmt = stmt.where(ScrapeRun.roaster_id == roaster_id)
    result = session.execute(
        stmt.values(status="fail", finished_at=now, error_summary="interrupted: the process stopped mid-run")
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# --- raw artifacts ------------------------------------------------------------------------------


def store_artifact(
    session: Session,
    *,
    roaster_id: int,
    run_id: int | None,
    kind: str,
    page: int | None,
    fetched: FetchedPage,
) -> RawArtifact:
    headers = {k.lower(): v for k, v in fetched.headers.items() if k.lower() not in {"set-cookie", "cookie"}}
    artifact = RawArtifact(
        run_id=run_id,
        roaster_id=roaster_id,
        kind=kind,
        page=page,
        url=fetched.url,
        status=fetched.status,
        headers=headers,
        body_gz=gzip.compress(fetched.body, compresslevel=6),
        sha256=hashlib.sha256(fetched.body).hexdigest(),
        size_bytes=len(fetched.body),
        elapsed_ms=fetched.elapsed_ms,
        etag=headers.get("etag"),
        last_modified=headers.get("last-modified"),
        from_cache=fetched.from_cache,
        fetched_at=fetched.fetched_at,
    )
    session.add(artifact)
    session.flush()
    return artifact


def artifact_body(artifact: RawArtifact) -> bytes:
    return gzip.decompress(artifact.body_gz)


def run_artifacts(session: Session, run_id: int, kind: str = "products") -> list[RawArtifact]:
    stmt = (
        select(RawArtifact)
        .where(RawArtifact.run_id == run_id, RawArtifact.kind == kind)
        .order_by(RawArtifact.page, RawArtifact.id)
    )
    return list(session.scalars(stmt))


class ArtifactCache:
    """ConditionalCache backed by raw_artifacts: the newest 200 answer for a URL with a validator."""

    def __init__(self, factory: sessionmaker[Session], roaster_id: int):
        self._factory = factory
        self._roaster_id = roaster_id

    def lookup(self, url: str) -> CachedResponse | None:
        with self._factory() as session:
            artifact = session.scalar(
                select(RawArtifact)
                .where(
                    RawArtifact.roaster_id == self._roaster_id,
                    RawArtifact.url == url,
                    RawArtifact.status.in_((200, 304)),
                    (RawArtifact.etag.is_not(None)) | (RawArtifact.last_modified.is_not(None)),
                )
                .order_by(RawArtifact.fetched_at.desc(), RawArtifact.id.desc())
                .limit(1)
            )
            if artifact is None:
                return None
            return CachedResponse(
                etag=artifact.etag, last_modified=artifact.last_modified, body=artifact_body(artifact)
            )


def quarantine(
    session: Session,
    *,
    run: ScrapeRun,
    artifact_id: int | None,
    platform_product_id: str | None,
    reason: str,
    raw: Any,
) -> None:
    session.add(
        QuarantinedProduct(
            run_id=run.id,
            roaster_id=run.roaster_id,
            artifact_id=artifact_id,
            platform_product_id=platform_product_id,
            reason=reason,
            raw=raw if isinstance(raw, dict) else {"value": raw},
        )
    )
    run.products_quarantined += 1


# --- product upserts ------------------------------------------------------------------------------


@dataclass
class UpsertStats:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    price_changes: int = 0
    reviews: int = 0
    flagged: list[str] = field(default_factory=list)


def _apply_attributes(coffee: Coffee, record: NormalizedProduct, result: NormalizeResult) -> None:
    coffee.title = record.title
    coffee.is_coffee = record.is_coffee
    coffee.name_clean = record.name_clean
    coffee.roast_level = record.roast_level
    coffee.process = record.process
    coffee.species = record.species
    coffee.chicory_pct = record.chicory_pct
    coffee.country = record.country
    coffee.region = record.region
    coffee.estate = record.estate
    coffee.altitude_min_m = record.altitude_m.min if record.altitude_m else None
    coffee.altitude_max_m = record.altitude_m.max if record.altitude_m else None
    coffee.varieties = list(record.varieties)
    coffee.tasting_notes = list(record.tasting_notes)
    coffee.decaf = record.decaf
    coffee.evidence = [e.model_dump() for e in result.evidence]
    coffee.review_flags = list(result.review_flags)


def stored_hashes(session: Session, roaster_id: int, product_ids: Sequence[str]) -> dict[str, str]:
    """Content hashes of the roaster's active products among ``product_ids`` (to skip unchanged ones)."""
    rows = session.execute(
        select(Coffee.platform_product_id, Coffee.content_hash).where(
            Coffee.roaster_id == roaster_id,
            Coffee.platform_product_id.in_(product_ids),
            Coffee.status == "active",
        )
    )
    return {pid: h for pid, h in rows}


def touch_unchanged(session: Session, roaster_id: int, product_ids: Sequence[str], now: datetime) -> int:
    """Mark products whose raw JSON did not change as seen now (one UPDATE, no normalization)."""
    if not product_ids:
        return 0
    session.execute(
        update(Coffee)
        .where(Coffee.roaster_id == roaster_id, Coffee.platform_product_id.in_(product_ids))
        .values(last_seen_at=now)
    )
    return len(product_ids)


def upsert_products(
    session: Session,
    *,
    roaster: Roaster,
    run: ScrapeRun,
    items: Sequence[tuple[NormalizeResult, str]],
    mode: str,
    now: datetime,
    price_review_delta: float,
    force: bool = False,
) -> UpsertStats:
    """Insert or update one page of normalized products, keyed on (roaster, platform_product_id).

    ``items`` pairs each result with the raw product's content hash. In ``price`` mode an existing
    product only gets its variants' prices and availability refreshed; attributes stay as they were.
    A price row is appended only when price, compare-at price or availability changed. ``force``
    re-applies products whose raw JSON is unchanged (replays after a normalizer improvement).
    """
    stats = UpsertStats()
    ids = [r.product.platform_product_id for r, _ in items]
    existing = {
        c.platform_product_id: c
        for c in session.scalars(
            select(Coffee)
            .where(Coffee.roaster_id == roaster.id, Coffee.platform_product_id.in_(ids))
            .options(selectinload(Coffee.variants))
        )
    }
    for result, content_hash in items:
        record = result.product
        coffee = existing.get(record.platform_product_id)
        unchanged = coffee is not None and coffee.content_hash == content_hash and coffee.status == "active"
        if coffee is not None and unchanged and not force:
            coffee.last_seen_at = now
            stats.unchanged += 1
            continue
        if coffee is None:
            coffee = Coffee(
                roaster_id=roaster.id,
                platform=record.platform,
                platform_product_id=record.platform_product_id,
                first_seen_at=now,
                content_hash=content_hash,
            )
            _apply_attributes(coffee, record, result)
            session.add(coffee)
            stats.new += 1
        else:
            if mode == "full" or coffee.status == "missing":
                _apply_attributes(coffee, record, result)
            stats.updated += 1
        coffee.content_hash = content_hash
        coffee.status = "active"
        coffee.missing_since = None
        coffee.last_seen_at = now
        coffee.updated_at = now
        _upsert_variants(session, coffee, record, run, now, price_review_delta, stats)
        for flag in result.review_flags:
            if flag not in stats.flagged:
                stats.flagged.append(flag)
    session.flush()
    return stats


def _upsert_variants(
    session: Session,
    coffee: Coffee,
    record: NormalizedProduct,
    run: ScrapeRun,
    now: datetime,
    delta: float,
    stats: UpsertStats,
) -> None:
    by_id = {v.platform_variant_id: v for v in coffee.variants}
    seen: set[str] = set()
    for position, nv in enumerate(record.variants):
        if nv.platform_variant_id in seen:
            continue  # duplicate variant id inside one product: the first one wins
        seen.add(nv.platform_variant_id)
        variant = by_id.get(nv.platform_variant_id)
        changed = True
        if variant is None:
            variant = Variant(platform_variant_id=nv.platform_variant_id, first_seen_at=now)
            coffee.variants.append(variant)
        else:
            changed = (variant.price_minor, variant.compare_at_minor, variant.in_stock, variant.currency) != (
                nv.price_minor,
                nv.compare_at_minor,
                nv.in_stock,
                nv.currency,
            )
            old = variant.price_minor
            if changed and old and nv.price_minor != old and abs(nv.price_minor - old) / old > delta:
                session.add(
                    Review(
                        coffee=coffee,
                        variant_id=variant.id,
                        run_id=run.id,
                        kind="price_delta",
                        detail=f"{variant.title}: {old} → {nv.price_minor} {nv.currency} minor units "
                        f"({(nv.price_minor - old) / old:+.0%})",
                        created_at=now,
                    )
                )
                stats.reviews += 1
        variant.position = position
        variant.title = nv.title
        variant.weight_g = nv.weight_g
        variant.pack_count = nv.pack_count
        variant.grind = nv.grind
        variant.currency = nv.currency
        variant.price_minor = nv.price_minor
        variant.compare_at_minor = nv.compare_at_minor
        variant.in_stock = nv.in_stock
        variant.status = "active"
        variant.last_seen_at = now
        if changed:
            session.add(
                Price(
                    variant=variant,
                    run_id=run.id,
                    observed_at=now,
                    currency=nv.currency,
                    price_minor=nv.price_minor,
                    compare_at_minor=nv.compare_at_minor,
                    in_stock=nv.in_stock,
                )
            )
            stats.price_changes += 1
    for variant in coffee.variants:
        if variant.platform_variant_id not in seen and variant.status != "missing":
            variant.status = "missing"


def mark_missing(session: Session, *, roaster_id: int, seen_ids: Iterable[str], now: datetime) -> int:
    """Products of the roaster not seen in a complete listing become 'missing' (never deleted)."""
    seen = set(seen_ids)
    count = 0
    for coffee in session.scalars(select(Coffee).where(Coffee.roaster_id == roaster_id, Coffee.status == "active")):
        if coffee.platform_product_id not in seen:
            coffee.status = "missing"
            coffee.missing_since = now
            count += 1
    return count


# --- catalog queries --------------------------------------------------------------------------------


def coffees_query(
    *,
    roaster: str | None = None,
    roast: str | None = None,
    process: str | None = None,
    country: str | None = None,
    region: str | None = None,
    search: str | None = None,
    coffee_only: bool = True,
    include_missing: bool = False,
    in_stock: bool | None = None,
    min_price_minor: int | None = None,
    max_price_minor: int | None = None,
) -> Select[tuple[Coffee]]:
    stmt = select(Coffee).join(Roaster).options(selectinload(Coffee.variants), selectinload(Coffee.roaster))
    if roaster:
        stmt = stmt.where(Roaster.name == roaster)
    if roast:
        stmt = stmt.where(Coffee.roast_level == roast)
    if process:
        stmt = stmt.where(Coffee.process == process)
    if country:
        stmt = stmt.where(Coffee.country == country.upper())
    if region:
        stmt = stmt.where(func.lower(Coffee.region) == region.lower())
    if search:
        stmt = stmt.where(func.lower(Coffee.title).contains(search.lower()))
    if coffee_only:
        stmt = stmt.where(Coffee.is_coffee.is_(True))
    if not include_missing:
        stmt = stmt.where(Coffee.status == "active")
    if in_stock is not None or min_price_minor is not None or max_price_minor is not None:
        sub = select(Variant.coffee_id).where(Variant.status == "active", Variant.price_minor > 0)
        if in_stock is not None:
            sub = sub.where(Variant.in_stock.is_(in_stock))
        if min_price_minor is not None:
            sub = sub.where(Variant.price_minor >= min_price_minor)
        if max_price_minor is not None:
            sub = sub.where(Variant.price_minor <= max_price_minor)
        stmt = stmt.where(Coffee.id.in_(sub))
    return stmt.order_by(Roaster.name, Coffee.name_clean)


def price_history(session: Session, coffee_id: int) -> list[Price]:
    stmt = (
        select(Price)
        .join(Variant, Price.variant_id == Variant.id)
        .where(Variant.coffee_id == coffee_id)
        .order_by(Price.variant_id, Price.observed_at, Price.id)
    )
    return list(session.scalars(stmt))


def counts(session: Session) -> dict[str, int]:
    """Row counts per table (for reports and tests)."""
    out: dict[str, int] = {}
    for model in (Roaster, Coffee, Variant, Price, ScrapeRun, RawArtifact, QuarantinedProduct, Review):
        out[str(model.__tablename__)] = int(session.scalar(select(func.count()).select_from(model)) or 0)
    return out


__all__ = [
    "ArtifactCache",
    "CatalogError",
    "UpsertStats",
    "add_roaster",
    "artifact_body",
    "coffees_query",
    "counts",
    "fail_interrupted_runs",
    "get_roaster",
    "list_roasters",
    "mark_missing",
    "price_history",
    "quarantine",
    "run_artifacts",
    "save_shop_state",
    "shop_state",
    "start_run",
    "store_artifact",
    "stored_hashes",
    "touch_unchanged",
    "upsert_products",
    "utcnow",
]
