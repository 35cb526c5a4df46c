"""Catalog storage on real SQLite and PostgreSQL: migrations, idempotent upserts, price history, missing marks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import func, select

from coffee_scraper.catalog import db, service
from coffee_scraper.catalog.models import Coffee, Price, Review, Variant
from coffee_scraper.normalize.models import NormalizedProduct, NormalizedVariant, NormalizeResult

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def product(pid: str, *, prices: dict[str, int], in_stock: bool = True, title: str = "Kolli Berri") -> NormalizeResult:
    variants = [
        NormalizedVariant(
            platform_variant_id=vid,
            title=f"{vid} / Whole Bean",
            weight_g=250,
            grind="whole",
            price_minor=price,
            currency="INR",
            in_stock=in_stock,
        )
        for vid, price in prices.items()
    ]
    record = NormalizedProduct(
        platform="shopify",
        platform_product_id=pid,
        title=title,
        is_coffee=True,
        name_clean=title,
        roast_level="medium",
        variants=variants,
    )
    return NormalizeResult(product=record)


@pytest.fixture
def factory(db_url: str):  # type: ignore[no-untyped-def]
    db.upgrade(db_url)
    engine = db.make_engine(db_url)
    yield db.session_factory(engine)
    engine.dispose()


def upsert(factory, items, *, mode="full", now=T0):  # type: ignore[no-untyped-def]
    with db.session_scope(factory) as session:
        roaster = service.get_roaster(session, "r1")
        run = service.start_run(session, roaster, mode, now)
        return service.upsert_products(
            session, roaster=roaster, run=run, items=items, mode=mode, now=now, price_review_delta=0.10
        )


def setup_roaster(factory) -> None:  # type: ignore[no-untyped-def]
    with db.session_scope(factory) as session:
        service.add_roaster(session, "r1", "https://r1.example", platform="shopify", currency="INR")


def test_migrations_are_current_and_match_models(db_url: str) -> None:
    db.upgrade(db_url)
    db.upgrade(db_url)  # idempotent
    engine = db.make_engine(db_url)
    assert db.migrations_current(engine)
    command.check(db.alembic_config(db_url))  # raises when models and migrations drift apart
    engine.dispose()


def test_upsert_is_idempotent_and_price_rows_only_on_change(factory) -> None:  # type: ignore[no-untyped-def]
    setup_roaster(factory)
    first = upsert(factory, [(product("1", prices={"a": 45000, "b": 90000}), "h1")])
    assert (first.new, first.price_changes) == (1, 2)
    again = upsert(factory, [(product("1", prices={"a": 45000, "b": 90000}), "h1")], now=T0 + timedelta(days=1))
    assert (again.new, again.unchanged, again.price_changes) == (0, 1, 0)
    # raw JSON changed but prices did not: no new price row
    same_prices = upsert(factory, [(product("1", prices={"a": 45000, "b": 90000}), "h2")])
    assert (same_prices.updated, same_prices.price_changes) == (1, 0)
    changed = upsert(factory, [(product("1", prices={"a": 47000, "b": 90000}), "h3")])
    assert changed.price_changes == 1
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Coffee)) == 1
        assert session.scalar(select(func.count()).select_from(Variant)) == 2
        history = [p.price_minor for p in session.scalars(select(Price).order_by(Price.id))]
        assert history == [45000, 90000, 47000]
        assert session.scalar(select(func.count()).select_from(Review)) == 0  # 4.4% < 10%


def test_availability_change_appends_price_row_and_big_delta_is_reviewed(factory) -> None:  # type: ignore[no-untyped-def]
    setup_roaster(factory)
    upsert(factory, [(product("1", prices={"a": 40000}), "h1")])
    stats = upsert(factory, [(product("1", prices={"a": 40000}, in_stock=False), "h2")])
    assert stats.price_changes == 1
    stats = upsert(factory, [(product("1", prices={"a": 60000}, in_stock=False), "h3")])
    assert stats.reviews == 1
    with factory() as session:
        review = session.scalars(select(Review)).one()
        assert review.kind == "price_delta" and "+50%" in review.detail


def test_price_mode_keeps_attributes(factory) -> None:  # type: ignore[no-untyped-def]
    setup_roaster(factory)
    upsert(factory, [(product("1", prices={"a": 40000}, title="Old Name"), "h1")])
    upsert(factory, [(product("1", prices={"a": 41000}, title="New Name"), "h2")], mode="price")
    with factory() as session:
        coffee = session.scalars(select(Coffee)).one()
        assert coffee.title == "Old Name"
        assert coffee.variants[0].price_minor == 41000


def test_missing_products_are_marked_not_deleted(factory) -> None:  # type: ignore[no-untyped-def]
    setup_roaster(factory)
    upsert(factory, [(product("1", prices={"a": 1}), "h1"), (product("2", prices={"b": 2}), "h2")])
    with db.session_scope(factory) as session:
        roaster = service.get_roaster(session, "r1")
        assert service.mark_missing(session, roaster_id=roaster.id, seen_ids={"1"}, now=T0) == 1
    with factory() as session:
        states = dict(session.execute(select(Coffee.platform_product_id, Coffee.status)).all())
        assert states == {"1": "active", "2": "missing"}
    # it comes back: active again, same row
    stats = upsert(factory, [(product("2", prices={"b": 2}), "h2")])
    assert stats.updated == 1
    with factory() as session:
        assert session.scalar(select(Coffee.status).where(Coffee.platform_product_id == "2")) == "active"


def test_utc_timestamps_round_trip(factory) -> None:  # type: ignore[no-untyped-def]
    setup_roaster(factory)
    upsert(factory, [(product("1", prices={"a": 1}), "h1")], now=T0)
    with factory() as session:
        coffee = session.scalars(select(Coffee)).one()
        assert coffee.first_seen_at == T0 and coffee.first_seen_at.tzinfo is not None


def test_duplicate_roaster_is_a_clear_error(factory) -> None:  # type: ignore[no-untyped-def]
    setup_roaster(factory)
    with pytest.raises(service.CatalogError, match="already exists"), db.session_scope(factory) as session:
        service.add_roaster(session, "r1", "https://r1.example")


def test_bad_database_url_says_what_to_use() -> None:
    with pytest.raises(db.DatabaseConfigError, match="use SQLite or PostgreSQL"):
        db.make_engine("mysql://root@localhost/x")


def test_big_first_load_is_analyzed_on_postgresql(pg_url: str) -> None:
    from sqlalchemy import text

    db.upgrade(pg_url)
    engine = db.make_engine(pg_url)
    factory = db.session_factory(engine)
    with db.session_scope(factory) as session:
        assert service.refresh_statistics(session, new_rows=10) is False  # small loads: autovacuum's job
        assert service.refresh_statistics(session, new_rows=service.ANALYZE_AFTER_NEW_ROWS) is True
    with engine.connect() as conn:
        analyzed = conn.execute(
            text(
                "select count(*) from pg_stat_user_tables where relname in ('coffees','variants','prices') "
                "and last_analyze is not null"
            )
        ).scalar()
    engine.dispose()
    assert analyzed == 3
