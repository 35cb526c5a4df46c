"""The bulk ``upsert_products`` against the per-object ORM code it replaced, on SQLite and PostgreSQL.

A randomized differential test runs the same pages through both (into two roasters of one database) and
compares every row and counter; the other tests pin down cases one by one (mixed pages, price mode,
variants that vanish and come back, review text, duplicate variant ids, timestamps, stale objects).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from coffee_scraper.catalog import db, service
from coffee_scraper.catalog.models import Coffee, Price, Review, Variant
from coffee_scraper.normalize.models import (
    Altitude,
    Evidence,
    NormalizedProduct,
    NormalizedVariant,
    NormalizeResult,
)

from ._orm_reference import upsert_products_orm

T0 = datetime(2026, 1, 1, tzinfo=UTC)
COFFEE_COLUMNS = [c.key for c in Coffee.__table__.columns]
VARIANT_COLUMNS = [c.key for c in Variant.__table__.columns]
Upsert = Callable[..., service.UpsertStats]


def variant(
    vid: str, price: int, *, in_stock: bool = True, compare_at: int | None = None, **kw: Any
) -> NormalizedVariant:
    values: dict[str, Any] = {"title": f"{vid} / Whole Bean", "weight_g": 250, "grind": "whole", "currency": "INR"}
    values.update(kw)
    return NormalizedVariant(
        platform_variant_id=vid, price_minor=price, compare_at_minor=compare_at, in_stock=in_stock, **values
    )


def product(
    pid: str,
    variants: list[NormalizedVariant],
    *,
    title: str = "Kolli Berri",
    flags: tuple[str, ...] = (),
    **attrs: Any,
) -> NormalizeResult:
    record = NormalizedProduct(
        platform="shopify",
        platform_product_id=pid,
        title=title,
        is_coffee=True,
        name_clean=title,
        variants=variants,
        **attrs,
    )
    evidence = [Evidence(attribute="title", source="title", text=title)]
    return NormalizeResult(product=record, evidence=evidence, review_flags=list(flags))


@pytest.fixture
def factory(db_url: str) -> Iterator[sessionmaker[Session]]:
    db.upgrade(db_url)
    engine = db.make_engine(db_url)
    factory = db.session_factory(engine)
    with db.session_scope(factory) as session:
        for name in ("orm", "bulk"):
            service.add_roaster(session, name, f"https://{name}.example", platform="shopify", currency="INR")
    yield factory
    engine.dispose()


def upsert(
    factory: sessionmaker[Session],
    items: list[tuple[NormalizeResult, str]],
    *,
    roaster: str = "bulk",
    mode: str = "full",
    now: datetime = T0,
    force: bool = False,
    fn: Upsert = service.upsert_products,
) -> service.UpsertStats:
    with db.session_scope(factory) as session:
        r = service.get_roaster(session, roaster)
        run = service.start_run(session, r, mode, now)
        return fn(session, roaster=r, run=run, items=items, mode=mode, now=now, price_review_delta=0.10, force=force)


def coffee_row(session: Session, pid: str, roaster: str = "bulk") -> Coffee:
    rid = service.get_roaster(session, roaster).id
    return session.scalars(select(Coffee).where(Coffee.roaster_id == rid, Coffee.platform_product_id == pid)).one()


def variant_rows(session: Session, pid: str, roaster: str = "bulk") -> dict[str, Variant]:
    return {v.platform_variant_id: v for v in coffee_row(session, pid, roaster).variants}


def price_rows(session: Session, roaster: str = "bulk") -> list[tuple[str, str, int, bool]]:
    rid = service.get_roaster(session, roaster).id
    stmt = (
        select(Coffee.platform_product_id, Variant.platform_variant_id, Price.price_minor, Price.in_stock)
        .join(Variant, Price.variant_id == Variant.id)
        .join(Coffee, Variant.coffee_id == Coffee.id)
        .where(Coffee.roaster_id == rid)
        .order_by(Price.id)
    )
    return [tuple(row) for row in session.execute(stmt)]  # type: ignore[misc]


def stats_tuple(s: service.UpsertStats) -> tuple[int, int, int, int, int, list[str]]:
    return s.new, s.updated, s.unchanged, s.price_changes, s.reviews, s.flagged


# --- one case at a time ------------------------------------------------------------------------------


def test_mixed_page_in_full_mode(factory: sessionmaker[Session]) -> None:
    upsert(factory, [(product("keep", [variant("k", 100)]), "h1"), (product("edit", [variant("e", 200)]), "h1")])
    t1 = T0 + timedelta(days=1)
    page = [
        (product("keep", [variant("k", 100)]), "h1"),  # unchanged
        (product("edit", [variant("e", 230)], title="Edited", flags=("conflict:roast_level",)), "h2"),  # changed
        (product("new", [variant("n1", 300), variant("n2", 600)], flags=("conflict:roast_level",)), "h1"),  # new
    ]
    stats = upsert(factory, page, now=t1)
    assert stats_tuple(stats) == (1, 1, 1, 3, 1, ["conflict:roast_level"])
    with factory() as session:
        keep, edit, new = (coffee_row(session, pid) for pid in ("keep", "edit", "new"))
        assert keep.last_seen_at == t1 and keep.updated_at == T0 and keep.first_seen_at == T0
        assert edit.title == "Edited" and edit.content_hash == "h2" and edit.updated_at == t1
        assert edit.review_flags == ["conflict:roast_level"]
        assert edit.evidence == [{"attribute": "title", "source": "title", "text": "Edited"}]
        assert new.first_seen_at == new.last_seen_at == new.updated_at == t1
        assert [(v.platform_variant_id, v.position) for v in new.variants] == [("n1", 0), ("n2", 1)]
        assert price_rows(session) == [
            ("keep", "k", 100, True),
            ("edit", "e", 200, True),
            ("edit", "e", 230, True),
            ("new", "n1", 300, True),
            ("new", "n2", 600, True),
        ]


def test_mixed_page_in_price_mode_keeps_attributes_but_not_of_missing_ones(factory: sessionmaker[Session]) -> None:
    upsert(
        factory,
        [
            (product("keep", [variant("k", 100)], roast_level="dark"), "h1"),
            (product("edit", [variant("e", 200)], roast_level="dark", varieties=["SL9"]), "h1"),
            (product("gone", [variant("g", 50)], title="Old"), "h1"),
        ],
    )
    with db.session_scope(factory) as session:
        rid = service.get_roaster(session, "bulk").id
        assert service.mark_missing(session, roaster_id=rid, seen_ids={"keep", "edit"}, now=T0) == 1
    t1 = T0 + timedelta(hours=6)
    page = [
        (product("keep", [variant("k", 100)], roast_level="dark"), "h1"),
        (product("edit", [variant("e", 210, in_stock=False)], title="New", roast_level="light"), "h2"),
        (product("gone", [variant("g", 50)], title="Back"), "h1"),  # same hash, but it was missing
        (product("new", [variant("n", 10)], title="Brand New", roast_level="light"), "h1"),
    ]
    stats = upsert(factory, page, mode="price", now=t1)
    assert stats_tuple(stats) == (1, 2, 1, 2, 0, [])
    with factory() as session:
        edit, gone, new = (coffee_row(session, pid) for pid in ("edit", "gone", "new"))
        assert (edit.title, edit.roast_level, edit.varieties) == ("Kolli Berri", "dark", ["SL9"])
        assert edit.content_hash == "h2" and edit.updated_at == t1
        assert edit.variants[0].price_minor == 210 and edit.variants[0].in_stock is False
        assert (gone.title, gone.status, gone.missing_since, gone.last_seen_at) == ("Back", "active", None, t1)
        assert (new.title, new.roast_level) == ("Brand New", "light")


def test_variant_removed_then_readded_keeps_its_row(factory: sessionmaker[Session]) -> None:
    upsert(factory, [(product("1", [variant("a", 100), variant("b", 200)]), "h1")])
    with factory() as session:
        b_id = variant_rows(session, "1")["b"].id
    upsert(factory, [(product("1", [variant("a", 100)]), "h2")], now=T0 + timedelta(days=1))
    with factory() as session:
        assert {k: v.status for k, v in variant_rows(session, "1").items()} == {"a": "active", "b": "missing"}
        assert variant_rows(session, "1")["b"].last_seen_at == T0
    t2 = T0 + timedelta(days=2)
    stats = upsert(factory, [(product("1", [variant("b", 200), variant("a", 100)]), "h3")], now=t2)
    assert (stats.updated, stats.price_changes) == (1, 0)  # same price as stored: no price row
    with factory() as session:
        rows = variant_rows(session, "1")
        assert rows["b"].id == b_id and rows["b"].status == "active" and rows["b"].first_seen_at == T0
        assert (rows["b"].position, rows["a"].position, rows["b"].last_seen_at) == (0, 1, t2)
    stats = upsert(factory, [(product("1", [variant("b", 260), variant("a", 100)]), "h4")], now=t2)
    assert (stats.price_changes, stats.reviews) == (1, 1)


def test_review_row_text_and_links(factory: sessionmaker[Session]) -> None:
    upsert(factory, [(product("1", [variant("a", 40000, title="250g / Whole Bean"), variant("b", 0)]), "h1")])
    t1 = T0 + timedelta(days=1)
    page = [(product("1", [variant("a", 29900, title="250 g / Beans", currency="INR"), variant("b", 500)]), "h2")]
    stats = upsert(factory, page, now=t1)
    assert (stats.reviews, stats.price_changes) == (1, 2)  # b's old price was 0: no review
    with factory() as session:
        review = session.scalars(select(Review)).one()
        coffee = coffee_row(session, "1")
        assert review.detail == "250g / Whole Bean: 40000 → 29900 INR minor units (-25%)"  # the old title
        assert (review.kind, review.coffee_id, review.variant_id) == ("price_delta", coffee.id, coffee.variants[0].id)
        assert review.run_id is not None and review.created_at == t1 and review.resolved_at is None


def test_small_moves_and_non_price_changes_are_not_reviewed(factory: sessionmaker[Session]) -> None:
    upsert(factory, [(product("1", [variant("a", 1000)]), "h1")])
    stats = upsert(factory, [(product("1", [variant("a", 1100)]), "h2")])  # exactly +10%: not more than delta
    assert (stats.reviews, stats.price_changes) == (0, 1)
    stats = upsert(factory, [(product("1", [variant("a", 1100, compare_at=2000)]), "h3")])
    assert (stats.reviews, stats.price_changes) == (0, 1)
    stats = upsert(factory, [(product("1", [variant("a", 1100, compare_at=2000, currency="USD")]), "h4")])
    assert (stats.reviews, stats.price_changes) == (0, 1)


def test_duplicate_variant_ids_first_wins(factory: sessionmaker[Session]) -> None:
    stats = upsert(factory, [(product("1", [variant("a", 100), variant("a", 999), variant("b", 5)]), "h1")])
    assert stats.price_changes == 2
    with factory() as session:
        rows = variant_rows(session, "1")
        assert (rows["a"].price_minor, rows["a"].position, rows["b"].position) == (100, 0, 2)


def test_force_reapplies_unchanged_products(factory: sessionmaker[Session]) -> None:
    upsert(factory, [(product("1", [variant("a", 100)], title="A"), "h1")])
    stats = upsert(factory, [(product("1", [variant("a", 100)], title="B"), "h1")], force=True)
    assert stats_tuple(stats) == (0, 1, 0, 0, 0, [])
    with factory() as session:
        assert coffee_row(session, "1").title == "B"


def test_every_timestamp_round_trips_timezone_aware(factory: sessionmaker[Session]) -> None:
    ist = T0.astimezone(timezone(timedelta(hours=5, minutes=30)))
    upsert(factory, [(product("1", [variant("a", 100)]), "h1")], now=ist)
    upsert(factory, [(product("1", [variant("a", 200)]), "h2")], now=ist + timedelta(hours=1))
    with factory() as session:
        coffee = coffee_row(session, "1")
        price = session.scalars(select(Price).order_by(Price.id)).first()
        review = session.scalars(select(Review)).one()
        stamps = [coffee.first_seen_at, coffee.updated_at, coffee.variants[0].first_seen_at, review.created_at]
        stamps += [price.observed_at if price else None, coffee.variants[0].last_seen_at]
        assert all(s is not None and s.utcoffset() == timedelta(0) for s in stamps)
        assert coffee.first_seen_at == T0 and coffee.updated_at == T0 + timedelta(hours=1)


def test_objects_loaded_before_the_upsert_are_refreshed(factory: sessionmaker[Session]) -> None:
    upsert(factory, [(product("1", [variant("a", 100)], title="A"), "h1")])
    with db.session_scope(factory) as session:
        coffee = coffee_row(session, "1")
        assert coffee.variants[0].price_minor == 100
        r = service.get_roaster(session, "bulk")
        run = service.start_run(session, r, "full", T0)
        page = [(product("1", [variant("a", 150)], title="B"), "h2")]
        service.upsert_products(session, roaster=r, run=run, items=page, mode="full", now=T0, price_review_delta=0.1)
        assert coffee.title == "B" and coffee.variants[0].price_minor == 150


def test_empty_page_and_pages_larger_than_one_in_list(factory: sessionmaker[Session]) -> None:
    assert stats_tuple(upsert(factory, [])) == (0, 0, 0, 0, 0, [])
    page = [(product(str(i), [variant(f"{i}a", 100), variant(f"{i}b", 200)]), "h1") for i in range(1200)]
    assert upsert(factory, page).new == 1200
    page[::2] = [(product(str(i), [variant(f"{i}a", 150)]), "h2") for i in range(0, 1200, 2)]
    stats = upsert(factory, page, now=T0 + timedelta(days=1))
    assert stats_tuple(stats) == (0, 600, 600, 600, 600, [])
    with factory() as session:
        assert {v.platform_variant_id: v.status for v in coffee_row(session, "998").variants} == {
            "998a": "active",
            "998b": "missing",
        }


# --- the same pages through the old per-object code and the bulk code ----------------------------------


def random_pages(seed: int, steps: int = 8) -> Iterator[tuple[list[tuple[NormalizeResult, str]], str, bool, bool]]:
    """Pages of products whose prices, stock, variants and attributes drift between steps.

    Yields (items, mode, force, mark_missing_after).
    """
    rng = random.Random(seed)
    state: dict[str, dict[str, Any]] = {}
    pids = [f"p{i}" for i in range(40)]
    for _ in range(steps):
        items = []
        for pid in rng.sample(pids, rng.randint(10, 30)):
            s = state.get(pid)
            if s is None or rng.random() < 0.15:
                s = state[pid] = {
                    "hash": 0,
                    "title": rng.choice(["Kolli Berri", "Baba Budan", "Ratnagiri"]),
                    "roast": rng.choice(["light", "medium", "dark", None]),
                    "variants": {
                        f"{pid}v{j}": [rng.choice([0, 1000, 45000]), True, None, f"{j} / Whole Bean"] for j in range(3)
                    },
                }
            if rng.random() < 0.6:
                s["hash"] += 1
                for vid, v in s["variants"].items():
                    r = rng.random()
                    if r < 0.3:
                        v[0] = max(0, int(v[0] * rng.choice([0.5, 0.95, 1.05, 1.3])) + rng.choice([0, 10]))
                    elif r < 0.4:
                        v[1] = not v[1]
                    elif r < 0.45:
                        v[2] = None if v[2] else v[0] + 500
                    if rng.random() < 0.2:
                        v[3] = v[3] + "+"  # renamed (a review quotes the title before the change)
                    s["variants"][vid] = v
                if rng.random() < 0.2:
                    s["title"] = s["title"] + "!"
                    s["roast"] = rng.choice(["light", "medium", "dark", None])
            vids = [vid for vid in s["variants"] if rng.random() < 0.8] or list(s["variants"])[:1]
            if rng.random() < 0.1:
                vids.append(vids[0])  # duplicate variant id inside one product
            variants = [
                variant(vid, price, in_stock=in_stock, compare_at=compare_at, title=title)
                for vid in vids
                for price, in_stock, compare_at, title in [s["variants"][vid]]
            ]
            flags = ("conflict:process",) if rng.random() < 0.2 else ()
            altitude = Altitude(min=1000, max=1400) if rng.random() < 0.5 else None
            result = product(pid, variants, title=s["title"], roast_level=s["roast"], flags=flags, altitude_m=altitude)
            items.append((result, f"h{s['hash']}"))
        yield items, rng.choice(["full", "full", "price"]), rng.random() < 0.15, rng.random() < 0.3


def snapshot(session: Session, roaster: str) -> dict[str, Any]:
    """Every upserted row of a roaster, keyed by natural keys (ids and run ids vary between roasters)."""
    rid = service.get_roaster(session, roaster).id
    coffees = session.scalars(select(Coffee).where(Coffee.roaster_id == rid)).all()
    skip = {"id", "roaster_id"}
    out: dict[str, Any] = {
        "coffees": {
            c.platform_product_id: {k: getattr(c, k) for k in COFFEE_COLUMNS if k not in skip} for c in coffees
        },
        "variants": {
            (c.platform_product_id, v.platform_variant_id): {
                k: getattr(v, k) for k in VARIANT_COLUMNS if k not in {"id", "coffee_id"}
            }
            for c in coffees
            for v in c.variants
        },
    }
    variant_key = {v.id: (c.platform_product_id, v.platform_variant_id) for c in coffees for v in c.variants}
    coffee_key = {c.id: c.platform_product_id for c in coffees}
    prices = session.scalars(select(Price).where(Price.variant_id.in_(variant_key)).order_by(Price.id))
    out["prices"] = [
        (variant_key[p.variant_id], p.observed_at, p.currency, p.price_minor, p.compare_at_minor, p.in_stock)
        for p in prices
    ]
    reviews = session.scalars(select(Review).where(Review.coffee_id.in_(coffee_key)).order_by(Review.id))
    out["reviews"] = [
        (coffee_key[r.coffee_id], variant_key.get(r.variant_id or -1), r.kind, r.detail, r.created_at) for r in reviews
    ]
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bulk_upsert_matches_the_per_object_orm_code(factory: sessionmaker[Session], seed: int) -> None:
    for step, (items, mode, force, missing_after) in enumerate(random_pages(seed)):
        now = T0 + timedelta(hours=step)
        kw: dict[str, Any] = {"mode": mode, "now": now, "force": force}
        expected = upsert(factory, items, roaster="orm", fn=upsert_products_orm, **kw)
        got = upsert(factory, items, roaster="bulk", **kw)
        assert stats_tuple(got) == stats_tuple(expected), f"step {step}"
        if missing_after:
            with db.session_scope(factory) as session:
                seen = {r.product.platform_product_id for r, _ in items}
                for name in ("orm", "bulk"):
                    rid = service.get_roaster(session, name).id
                    service.mark_missing(session, roaster_id=rid, seen_ids=seen, now=now)
        with factory() as session:
            assert snapshot(session, "bulk") == snapshot(session, "orm"), f"step {step}"
    with factory() as session:
        snap = snapshot(session, "bulk")
        assert snap["prices"] and snap["reviews"]  # the scenario exercised history and reviews
        assert {v["status"] for v in snap["variants"].values()} == {"active", "missing"}
