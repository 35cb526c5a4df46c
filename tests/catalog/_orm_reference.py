"""The per-object ORM ``upsert_products`` the bulk rewrite replaced, kept verbatim as a test oracle.

``test_upsert_bulk.py`` runs the same pages through both and compares the resulting rows and counters.
Not used by the application.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from coffee_scraper.catalog.models import Coffee, Price, Review, Roaster, ScrapeRun, Variant
from coffee_scraper.catalog.service import UpsertStats
from coffee_scraper.normalize.models import NormalizedProduct, NormalizeResult


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


def upsert_products_orm(
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
            continue
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
