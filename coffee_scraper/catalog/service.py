"""Every query and upsert on the catalog tables (roasters, coffees, variants, prices, runs, artifacts).

No HTTP and no normalization here: callers hand in normalized records and fetched pages.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast
from urllib.parse import urlsplit

from sqlalchemy import BigInteger, Select, Table, bindparam, func, insert, select, text, update
from sqlalchemy import cast as sql_cast
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
from coffee_scraper.normalize.models import NormalizedProduct, NormalizedVariant, NormalizeResult
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
    """ConditionalCache backed by raw_artifacts: validators of the newest answer per URL, body read on a hit.

    The first lookup for an origin loads that origin's (url → etag, last-modified, artifact id) index in one
    query; later lookups are dictionary hits, plus one primary-key read of the body when there is a validator.
    """

    def __init__(self, factory: sessionmaker[Session]):
        self._factory = factory
        self._index: dict[str, dict[str, tuple[str | None, str | None, int]]] = {}

    @staticmethod
    def _origin(url: str) -> str:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}"

    def _load(self, origin: str) -> dict[str, tuple[str | None, str | None, int]]:
        index: dict[str, tuple[str | None, str | None, int]] = {}
        with self._factory() as session:
            rows = session.execute(
                select(RawArtifact.url, RawArtifact.etag, RawArtifact.last_modified, RawArtifact.id)
                .where(
                    RawArtifact.url.startswith(origin + "/", autoescape=True),
                    RawArtifact.status.in_((200, 304)),
                )
                .order_by(RawArtifact.fetched_at, RawArtifact.id)
            )
            for url, etag, last_modified, artifact_id in rows:  # newest last: it wins
                index[url] = (etag, last_modified, artifact_id)
        return {url: v for url, v in index.items() if v[0] or v[1]}

    def lookup(self, url: str) -> CachedResponse | None:
        origin = self._origin(url)
        if origin not in self._index:
            self._index[origin] = self._load(origin)
        hit = self._index[origin].get(url)
        if hit is None:
            return None
        etag, last_modified, artifact_id = hit
        with self._factory() as session:
            artifact = session.get(RawArtifact, artifact_id)
            if artifact is None:
                return None
            return CachedResponse(etag=etag, last_modified=last_modified, body=artifact_body(artifact))


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
#
# A page of products is written with a handful of set-based Core statements rather than the ORM unit
# of work (whose per-object flush and attribute instrumentation cost ~70% of a page): the page's stored
# coffees and variants are read into small plain records, every write is decided in Python, and the
# writes go out as executemany INSERTs and UPDATE-by-primary-key statements.
#
# New rows' ids are read back with one SELECT by natural key instead of INSERT ... RETURNING: RETURNING
# over many rows needs one huge multi-VALUES statement, and psycopg parses such statements' parameter markers
# in Python, uncached (~75 µs per variant row, measured); a plain executemany runs in pipeline mode.

_IN_CHUNK = 500  # values per IN (...) list, far below SQLite's and PostgreSQL's bound-parameter limits
# Core tables of the models: Core statements skip the ORM's per-row bookkeeping but keep the column types
# (UTCDateTime, JSON), so values are converted exactly as through the ORM.
_COFFEES = cast(Table, Coffee.__table__)
_VARIANTS = cast(Table, Variant.__table__)
_PRICES = cast(Table, Price.__table__)
_REVIEWS = cast(Table, Review.__table__)


@dataclass
class UpsertStats:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    price_changes: int = 0
    reviews: int = 0
    flagged: list[str] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class _CoffeeRow:
    """A stored (or about to be inserted) coffee: the columns the upsert compares, and what to write."""

    id: int | None
    platform_product_id: str
    content_hash: str
    status: str
    is_new: bool = False
    variants: dict[str, _VariantRow] = field(default_factory=dict)  # by platform_variant_id
    pending: dict[str, Any] = field(default_factory=dict)  # column values to write
    seen_unchanged: bool = False  # only last_seen_at to write


@dataclass(slots=True, eq=False)
class _VariantRow:
    """A stored (or about to be inserted) variant: the columns the upsert compares, and what to write."""

    coffee: _CoffeeRow
    platform_variant_id: str
    id: int | None = None
    title: str = ""
    currency: str = ""
    price_minor: int = 0
    compare_at_minor: int | None = None
    in_stock: bool = False
    status: str = "active"
    is_new: bool = False
    pending: dict[str, Any] | None = None  # column values to write

    def price_key(self) -> tuple[int, int | None, bool, str]:
        return self.price_minor, self.compare_at_minor, self.in_stock, self.currency

    def write(self, values: dict[str, Any]) -> None:
        if self.pending is None:
            self.pending = values
        else:
            self.pending.update(values)


def _chunks(values: Sequence[Any], size: int = _IN_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _attribute_values(record: NormalizedProduct, result: NormalizeResult) -> dict[str, Any]:
    """The coffee columns a ``full`` run re-applies (a ``price`` run leaves them as they were)."""
    altitude = record.altitude_m
    return {
        "title": record.title,
        "is_coffee": record.is_coffee,
        "name_clean": record.name_clean,
        "roast_level": record.roast_level,
        "process": record.process,
        "species": record.species,
        "chicory_pct": record.chicory_pct,
        "country": record.country,
        "region": record.region,
        "estate": record.estate,
        "altitude_min_m": altitude.min if altitude else None,
        "altitude_max_m": altitude.max if altitude else None,
        "varieties": list(record.varieties),
        "tasting_notes": list(record.tasting_notes),
        "decaf": record.decaf,
        "evidence": [e.model_dump() for e in result.evidence],
        "review_flags": list(result.review_flags),
    }


def _variant_values(nv: NormalizedVariant, position: int, now: datetime) -> dict[str, Any]:
    """The variant columns every upsert of its product rewrites."""
    return {
        "position": position,
        "title": nv.title,
        "weight_g": nv.weight_g,
        "pack_count": nv.pack_count,
        "grind": nv.grind,
        "currency": nv.currency,
        "price_minor": nv.price_minor,
        "compare_at_minor": nv.compare_at_minor,
        "in_stock": nv.in_stock,
        "status": "active",
        "last_seen_at": now,
    }


def _price_delta_detail(title: str, old: int, nv: NormalizedVariant) -> str:
    return f"{title}: {old} → {nv.price_minor} {nv.currency} minor units ({(nv.price_minor - old) / old:+.0%})"


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

    A page of up to 500 products costs a fixed handful of statements whatever its size: SELECTs of the
    stored coffees and their variants, executemany INSERTs of new coffees and new variants (each followed
    by one SELECT of their ids), executemany UPDATEs by primary key, executemany INSERTs of price and
    review rows. Coffee and Variant objects already loaded in ``session`` are expired afterwards, since
    the bulk statements bypass them.
    """
    session.flush()
    page = _PageUpsert(
        session, roaster_id=roaster.id, run_id=run.id, mode=mode, now=now, delta=price_review_delta, force=force
    )
    if items:
        page.load(items)
        for result, content_hash in items:
            page.apply(result, content_hash)
        page.write()
    return page.stats


class _PageUpsert:
    """The writes of one ``upsert_products`` call: decided in memory by ``apply``, emitted by ``write``.

    The same product id twice in one page is applied twice in order, against the state the first
    occurrence left (as the former per-object code did for stored products).
    """

    def __init__(
        self,
        session: Session,
        *,
        roaster_id: int,
        run_id: int,
        mode: str,
        now: datetime,
        delta: float,
        force: bool,
    ):
        self.session = session
        self.roaster_id = roaster_id
        self.run_id = run_id
        self.mode = mode
        self.now = now
        self.delta = delta
        self.force = force
        self.stats = UpsertStats()
        self.coffees: dict[str, _CoffeeRow] = {}  # by platform_product_id
        self.new_coffees: list[_CoffeeRow] = []
        self.new_variants: list[_VariantRow] = []
        # history rows, with the variant each belongs to (its id is known only after the variant INSERT)
        self.prices: list[dict[str, Any]] = []
        self.price_variants: list[_VariantRow] = []
        self.reviews: list[dict[str, Any]] = []
        self.review_variants: list[_VariantRow] = []

    # --- reading -----------------------------------------------------------------------------------

    def load(self, items: Sequence[tuple[NormalizeResult, str]]) -> None:
        """Read the page's stored coffees, and the variants of those that will be re-applied."""
        c = _COFFEES.c
        product_ids = dict.fromkeys(result.product.platform_product_id for result, _ in items)
        for chunk in _chunks(list(product_ids)):
            rows = self.session.execute(
                select(c.id, c.platform_product_id, c.content_hash, c.status).where(
                    c.roaster_id == self.roaster_id, c.platform_product_id.in_(chunk)
                )
            )
            for coffee_id, pid, content_hash, status in rows:
                self.coffees[pid] = _CoffeeRow(coffee_id, pid, content_hash, status)
        stale: dict[int, _CoffeeRow] = {}
        for result, content_hash in items:
            coffee = self.coffees.get(result.product.platform_product_id)
            if coffee is not None and coffee.id is not None and not self._is_unchanged(coffee, content_hash):
                stale[coffee.id] = coffee
        self._load_variants(stale)

    def _load_variants(self, coffees: dict[int, _CoffeeRow]) -> None:
        v = _VARIANTS.c
        columns = [v.id, v.coffee_id, v.platform_variant_id, v.price_minor, v.compare_at_minor]
        columns += [v.in_stock, v.currency, v.status, v.title]
        for chunk in _chunks(list(coffees)):
            for vid, coffee_id, pvid, price, compare_at, in_stock, currency, status, title in self.session.execute(
                select(*columns).where(v.coffee_id.in_(chunk))
            ):
                coffee = coffees[coffee_id]
                coffee.variants[pvid] = _VariantRow(
                    coffee,
                    pvid,
                    id=vid,
                    title=title,
                    currency=currency,
                    price_minor=price,
                    compare_at_minor=compare_at,
                    in_stock=in_stock,
                    status=status,
                )

    # --- deciding ----------------------------------------------------------------------------------

    def _is_unchanged(self, coffee: _CoffeeRow, content_hash: str) -> bool:
        return not self.force and coffee.content_hash == content_hash and coffee.status == "active"

    def apply(self, result: NormalizeResult, content_hash: str) -> None:
        """Decide the writes for one product (nothing is sent to the database here)."""
        record = result.product
        coffee = self.coffees.get(record.platform_product_id)
        if coffee is not None and self._is_unchanged(coffee, content_hash):
            coffee.seen_unchanged = True
            self.stats.unchanged += 1
            return
        if coffee is None:
            coffee = self._new_coffee(record, result, content_hash)
            self.stats.new += 1
        else:
            if self.mode == "full" or coffee.status == "missing":
                coffee.pending.update(_attribute_values(record, result))
            self.stats.updated += 1
        coffee.content_hash = content_hash
        coffee.status = "active"
        coffee.pending.update(
            content_hash=content_hash,
            status="active",
            missing_since=None,
            last_seen_at=self.now,
            updated_at=self.now,
        )
        self._apply_variants(coffee, record)
        for flag in result.review_flags:
            if flag not in self.stats.flagged:
                self.stats.flagged.append(flag)

    def _new_coffee(self, record: NormalizedProduct, result: NormalizeResult, content_hash: str) -> _CoffeeRow:
        coffee = _CoffeeRow(None, record.platform_product_id, content_hash, "active", is_new=True)
        coffee.pending.update(
            roaster_id=self.roaster_id,
            platform=record.platform,
            platform_product_id=record.platform_product_id,
            first_seen_at=self.now,
        )
        coffee.pending.update(_attribute_values(record, result))
        self.coffees[record.platform_product_id] = coffee
        self.new_coffees.append(coffee)
        return coffee

    def _apply_variants(self, coffee: _CoffeeRow, record: NormalizedProduct) -> None:
        """Variants keyed on platform_variant_id (the first of duplicates wins); absent ones go missing."""
        seen: set[str] = set()
        for position, nv in enumerate(record.variants):
            if nv.platform_variant_id in seen:
                continue  # duplicate variant id inside one product: the first one wins
            seen.add(nv.platform_variant_id)
            variant = coffee.variants.get(nv.platform_variant_id)
            if variant is None:
                variant = self._new_variant(coffee, nv.platform_variant_id)
                changed = True
            else:
                changed = variant.price_key() != (nv.price_minor, nv.compare_at_minor, nv.in_stock, nv.currency)
                if changed:
                    self._review_price_delta(variant, nv)
            variant.write(_variant_values(nv, position, self.now))
            variant.title, variant.status = nv.title, "active"
            variant.price_minor, variant.compare_at_minor = nv.price_minor, nv.compare_at_minor
            variant.in_stock, variant.currency = nv.in_stock, nv.currency
            if changed:
                self._record_price(variant, nv)
        for variant in coffee.variants.values():
            if variant.platform_variant_id not in seen and variant.status != "missing":
                variant.status = "missing"
                variant.write({"status": "missing"})

    def _new_variant(self, coffee: _CoffeeRow, platform_variant_id: str) -> _VariantRow:
        variant = _VariantRow(coffee, platform_variant_id, is_new=True)
        variant.write({"platform_variant_id": platform_variant_id, "first_seen_at": self.now})
        coffee.variants[platform_variant_id] = variant
        self.new_variants.append(variant)
        return variant

    def _review_price_delta(self, variant: _VariantRow, nv: NormalizedVariant) -> None:
        """A review when a nonzero stored price moves by more than the configured fraction."""
        old = variant.price_minor
        if not old or nv.price_minor == old or abs(nv.price_minor - old) / old <= self.delta:
            return
        values = {
            "coffee_id": None,
            "variant_id": None,
            "run_id": self.run_id,
            "kind": "price_delta",
            "detail": _price_delta_detail(variant.title, old, nv),
            "created_at": self.now,
        }
        self.reviews.append(values)
        self.review_variants.append(variant)
        self.stats.reviews += 1

    def _record_price(self, variant: _VariantRow, nv: NormalizedVariant) -> None:
        values = {
            "variant_id": None,
            "run_id": self.run_id,
            "observed_at": self.now,
            "currency": nv.currency,
            "price_minor": nv.price_minor,
            "compare_at_minor": nv.compare_at_minor,
            "in_stock": nv.in_stock,
        }
        self.prices.append(values)
        self.price_variants.append(variant)
        self.stats.price_changes += 1

    # --- writing -----------------------------------------------------------------------------------

    def write(self) -> None:
        """Emit the decided writes: inserts first (their ids are needed), then updates, then history rows."""
        self._insert_coffees()
        self._insert_variants()
        coffees = [c for c in self.coffees.values() if not c.is_new]
        touched = [c.id for c in coffees if c.seen_unchanged and not c.pending]
        for chunk in _chunks(touched):
            self.session.execute(update(_COFFEES).where(_COFFEES.c.id.in_(chunk)).values(last_seen_at=self.now))
        _update_by_pk(self.session, _COFFEES, [(c.id, c.pending) for c in coffees if c.pending])
        variants = [v for c in coffees for v in c.variants.values() if not v.is_new]
        _update_by_pk(self.session, _VARIANTS, [(v.id, v.pending) for v in variants if v.pending])
        if self.prices:
            for row, variant in zip(self.prices, self.price_variants, strict=True):
                row["variant_id"] = variant.id
            self.session.execute(insert(_PRICES), self.prices)
        if self.reviews:
            for row, variant in zip(self.reviews, self.review_variants, strict=True):
                row["coffee_id"], row["variant_id"] = variant.coffee.id, variant.id
            self.session.execute(insert(_REVIEWS), self.reviews)
        _expire_loaded_rows(self.session)

    def _insert_coffees(self) -> None:
        """INSERT the new coffees (one executemany), then read back their ids by natural key."""
        if not self.new_coffees:
            return
        self.session.execute(insert(_COFFEES), [c.pending for c in self.new_coffees])
        c = _COFFEES.c
        ids: dict[str, int] = {}
        for chunk in _chunks([coffee.platform_product_id for coffee in self.new_coffees]):
            stmt = select(c.platform_product_id, c.id).where(
                c.roaster_id == self.roaster_id, c.platform_product_id.in_(chunk)
            )
            ids.update((pid, coffee_id) for pid, coffee_id in self.session.execute(stmt))
        for coffee in self.new_coffees:
            coffee.id = ids[coffee.platform_product_id]

    def _insert_variants(self) -> None:
        """INSERT the new variants (one executemany), then read back their ids by natural key."""
        if not self.new_variants:
            return
        rows: list[dict[str, Any]] = []
        for variant in self.new_variants:
            assert variant.pending is not None
            variant.pending["coffee_id"] = variant.coffee.id
            rows.append(variant.pending)
        self.session.execute(insert(_VARIANTS), rows)
        v = _VARIANTS.c
        ids: dict[tuple[int, str], int] = {}
        for chunk in _chunks(list({variant.coffee.id for variant in self.new_variants})):
            stmt = select(v.coffee_id, v.platform_variant_id, v.id).where(v.coffee_id.in_(chunk))
            ids.update(((coffee_id, pvid), vid) for coffee_id, pvid, vid in self.session.execute(stmt))
        for variant in self.new_variants:
            assert variant.coffee.id is not None
            variant.id = ids[(variant.coffee.id, variant.platform_variant_id)]


def _update_by_pk(session: Session, table: Table, rows: list[tuple[int | None, dict[str, Any]]]) -> None:
    """UPDATE rows by primary key: one executemany per set of columns written (``values`` gains ``row_id``)."""
    by_keys: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row_id, values in rows:
        by_keys.setdefault(tuple(values), []).append(values)
        values["row_id"] = row_id
    for group in by_keys.values():
        session.execute(update(table).where(table.c.id == bindparam("row_id")), group)


def _expire_loaded_rows(session: Session) -> None:
    """Coffee/Variant objects a caller loaded earlier in this session are stale now: reload on access."""
    for obj in list(session.identity_map.values()):
        if isinstance(obj, Coffee | Variant):
            session.expire(obj)


def refresh_statistics(session: Session, *, new_rows: int) -> bool:
    """After a big first load on PostgreSQL, ANALYZE the catalog tables so lookups use the unique indexes.

    Without statistics the planner scans a roaster's rows through ``ix_coffees_roaster_id`` on every page
    (measured: ~75 ms per query at 20,000 products). Autovacuum would get there later; a first run should not
    pay for it. No-op on SQLite and for small loads.
    """
    if session.get_bind().dialect.name != "postgresql" or new_rows < ANALYZE_AFTER_NEW_ROWS:
        return False
    for table in ("coffees", "variants", "prices"):
        session.execute(text(f"ANALYZE {table}"))
    return True


ANALYZE_AFTER_NEW_ROWS = 500


def mark_missing(session: Session, *, roaster_id: int, seen_ids: Iterable[str], now: datetime) -> int:
    """Products of the roaster not seen in a complete listing become 'missing' (never deleted).

    Reads only (id, platform_product_id) and updates by id in chunks: a 20,000-product shop costs no ORM objects.
    """
    seen = set(seen_ids)
    rows = session.execute(
        select(Coffee.id, Coffee.platform_product_id).where(Coffee.roaster_id == roaster_id, Coffee.status == "active")
    )
    gone = [coffee_id for coffee_id, pid in rows if pid not in seen]
    for chunk in _chunks(gone):
        session.execute(update(_COFFEES).where(_COFFEES.c.id.in_(chunk)).values(status="missing", missing_since=now))
    return len(gone)


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


# --- dashboard and API queries (web/pages, web/api) --------------------------------------------------

PER_WEIGHT_G = 250  # prices are compared per 250 g everywhere in the dashboard and API
COFFEE_SORTS = ("roaster", "name", "price_250", "-price_250", "newest")


def shop_url(url: str) -> str:
    """A shop's base URL from what a person typed: a bare host gets https://; anything else must be http(s)."""
    url = url.strip()
    if "://" not in url:  # a bare shop host: example-roaster.in
        url = f"https://{url.strip('/')}"
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname or " " in parts.netloc:
        raise CatalogError(f"{url!r} is not a shop URL; give it as https://host or a bare host name")
    return url.rstrip("/")


def per_250g_minor(price_minor: int, weight_g: int | None, pack_count: int = 1) -> int | None:
    """A variant's price per 250 g in minor units (None when its weight is unknown or it has no price)."""
    if not weight_g or weight_g <= 0 or price_minor <= 0:
        return None
    return round(price_minor * PER_WEIGHT_G / (weight_g * max(pack_count, 1)))


@dataclass(frozen=True)
class CoffeeFilters:
    """What the coffee list, the coffees API and ``coffees list`` filter on (``None`` = no filter)."""

    roaster: str | None = None
    roast: str | None = None
    process: str | None = None
    country: str | None = None
    region: str | None = None
    search: str | None = None
    in_stock: bool | None = None
    min_price_minor: int | None = None  # any variant's price at least this
    max_price_minor: int | None = None
    min_per_250g_minor: int | None = None  # some variant with a known weight costs at least this per 250 g
    max_per_250g_minor: int | None = None
    coffee_only: bool = True
    include_missing: bool = False


def _per_250g_expr() -> Any:
    return Variant.price_minor * float(PER_WEIGHT_G) / (Variant.weight_g * Variant.pack_count)


def search_coffees(
    session: Session, filters: CoffeeFilters, *, sort: str = "roaster", limit: int = 50, offset: int = 0
) -> tuple[list[Coffee], int]:
    """One page of coffees matching ``filters`` (variants and roaster loaded) and the total count.

    Builds on ``coffees_query``; the per-250 g bounds compare without division (price × 250 against
    bound × weight × packs), so they stay exact in integers on both backends.
    """
    if sort not in COFFEE_SORTS:
        raise CatalogError(f"unknown sort {sort!r}; use one of {', '.join(COFFEE_SORTS)}")
    stmt = coffees_query(
        roaster=filters.roaster,
        roast=filters.roast,
        process=filters.process,
        country=filters.country,
        region=filters.region,
        search=filters.search,
        coffee_only=filters.coffee_only,
        include_missing=filters.include_missing,
        in_stock=filters.in_stock,
        min_price_minor=filters.min_price_minor,
        max_price_minor=filters.max_price_minor,
    )
    if filters.min_per_250g_minor is not None or filters.max_per_250g_minor is not None:
        sub = select(Variant.coffee_id).where(Variant.status == "active", Variant.price_minor > 0, Variant.weight_g > 0)
        grams = sql_cast(Variant.weight_g, BigInteger) * Variant.pack_count  # bound × grams overflows INTEGER on PG
        if filters.min_per_250g_minor is not None:
            sub = sub.where(Variant.price_minor * PER_WEIGHT_G >= filters.min_per_250g_minor * grams)
        if filters.max_per_250g_minor is not None:
            sub = sub.where(Variant.price_minor * PER_WEIGHT_G <= filters.max_per_250g_minor * grams)
        if filters.in_stock is not None:
            sub = sub.where(Variant.in_stock.is_(filters.in_stock))
        stmt = stmt.where(Coffee.id.in_(sub))
    ids_only = stmt.with_only_columns(Coffee.id)  # same joins and filters, narrow rows: cheap to count and sort
    total = int(session.scalar(select(func.count()).select_from(ids_only.order_by(None).subquery())) or 0)
    if sort in {"price_250", "-price_250"}:
        cheapest = (
            select(func.min(_per_250g_expr()))
            .where(
                Variant.coffee_id == Coffee.id,
                Variant.status == "active",
                Variant.price_minor > 0,
                Variant.weight_g > 0,
            )
            .correlate(Coffee)
            .scalar_subquery()
        )
        key = cheapest.asc() if sort == "price_250" else cheapest.desc()
        ids_only = ids_only.order_by(None).order_by(key.nulls_last(), Coffee.id)
    elif sort == "name":
        ids_only = ids_only.order_by(None).order_by(Coffee.name_clean, Coffee.id)
    elif sort == "newest":
        ids_only = ids_only.order_by(None).order_by(Coffee.first_seen_at.desc(), Coffee.id.desc())
    else:
        ids_only = ids_only.order_by(Coffee.id)
    # Sort and page over ids, then load only that page's rows: sorting whole rows (JSON evidence and all)
    # made a deep page of 5,000 coffees several times slower on SQLite.
    page_ids = list(session.scalars(ids_only.limit(limit).offset(offset)))
    rows = session.scalars(
        select(Coffee)
        .where(Coffee.id.in_(page_ids))
        .options(selectinload(Coffee.variants), selectinload(Coffee.roaster))
    )
    by_id = {c.id: c for c in rows}
    return [by_id[i] for i in page_ids if i in by_id], total


def coffee_facets(session: Session) -> dict[str, list[str]]:
    """The values the coffee filters offer: roasters, roast levels, processes and origin countries in use."""

    def distinct(column: Any) -> list[str]:
        stmt = select(column).where(column.is_not(None)).distinct().order_by(column)  # uses the column's index
        return [str(v) for v in session.scalars(stmt)]

    return {
        "roasters": [str(n) for n in session.scalars(select(Roaster.name).order_by(Roaster.name))],
        "roast_levels": distinct(Coffee.roast_level),
        "processes": distinct(Coffee.process),
        "countries": distinct(Coffee.country),
    }


def get_coffee(session: Session, coffee_id: int) -> Coffee:
    coffee = session.scalar(
        select(Coffee)
        .where(Coffee.id == coffee_id)
        .options(selectinload(Coffee.variants), selectinload(Coffee.roaster))
    )
    if coffee is None:
        raise CatalogError(
            f"no coffee with id {coffee_id}; the coffee list (or `coffee-scraper coffees list`) shows ids"
        )
    return coffee


@dataclass
class RoasterStatus:
    """A roaster with its newest run and how many active coffees it has (one row of the roasters list)."""

    roaster: Roaster
    last_run: ScrapeRun | None
    coffees: int

    @property
    def needs_attention(self) -> bool:
        r, run = self.roaster, self.last_run
        return (
            not r.active
            or r.circuit_state != "closed"
            or r.consecutive_failed_runs > 0
            or r.robots_allowed is False
            or (run is not None and run.status in {"fail", "partial"})
        )


def roaster_statuses(session: Session, *, roaster_id: int | None = None) -> list[RoasterStatus]:
    """Every roaster (or one) with its newest run and active coffee count, by name: three queries in all."""
    latest = (
        select(ScrapeRun.roaster_id, func.max(ScrapeRun.id).label("run_id")).group_by(ScrapeRun.roaster_id).subquery()
    )
    stmt = (
        select(Roaster, ScrapeRun)
        .outerjoin(latest, latest.c.roaster_id == Roaster.id)
        .outerjoin(ScrapeRun, ScrapeRun.id == latest.c.run_id)
        .order_by(Roaster.name)
    )
    counts_stmt = (
        select(Coffee.roaster_id, func.count())
        .where(Coffee.status == "active", Coffee.is_coffee.is_(True))
        .group_by(Coffee.roaster_id)
    )
    if roaster_id is not None:
        stmt = stmt.where(Roaster.id == roaster_id)
        counts_stmt = counts_stmt.where(Coffee.roaster_id == roaster_id)
    coffee_counts = {rid: int(n) for rid, n in session.execute(counts_stmt)}
    return [RoasterStatus(r, run, coffee_counts.get(r.id, 0)) for r, run in session.execute(stmt)]


def recent_runs(
    session: Session,
    *,
    roaster_id: int | None = None,
    status: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[tuple[ScrapeRun, str]]:
    """Runs newest first with their roaster's name."""
    stmt = select(ScrapeRun, Roaster.name).join(Roaster).order_by(ScrapeRun.id.desc()).limit(limit).offset(offset)
    if roaster_id is not None:
        stmt = stmt.where(ScrapeRun.roaster_id == roaster_id)
    if status:
        stmt = stmt.where(ScrapeRun.status == status)
    return [(run, name) for run, name in session.execute(stmt)]


@dataclass
class RunDetail:
    """A run with its roaster name, its fetched pages (metadata only, no bodies) and quarantined products."""

    run: ScrapeRun
    roaster: str
    pages: list[dict[str, Any]]
    quarantined: list[QuarantinedProduct]


def run_detail(session: Session, run_id: int) -> RunDetail:
    row = session.execute(select(ScrapeRun, Roaster.name).join(Roaster).where(ScrapeRun.id == run_id)).first()
    if row is None:
        raise CatalogError(f"no run {run_id}; the runs list (or `coffee-scraper runs list`) shows recent runs")
    run, roaster = row
    a = RawArtifact
    pages = [
        dict(m)
        for m in session.execute(
            select(a.id, a.kind, a.page, a.url, a.status, a.size_bytes, a.elapsed_ms, a.from_cache, a.fetched_at)
            .where(a.run_id == run_id)
            .order_by(a.fetched_at, a.id)
        ).mappings()
    ]
    quarantined = list(
        session.scalars(
            select(QuarantinedProduct).where(QuarantinedProduct.run_id == run_id).order_by(QuarantinedProduct.id)
        )
    )
    return RunDetail(run=run, roaster=roaster, pages=pages, quarantined=quarantined)


def run_outcomes_since(session: Session, since: datetime) -> list[tuple[datetime, str]]:
    """(started_at, status) of every run started since ``since`` (for the runs-per-day chart)."""
    stmt = select(ScrapeRun.started_at, ScrapeRun.status).where(ScrapeRun.started_at >= since)
    return [(started, status) for started, status in session.execute(stmt)]


__all__ = [
    "ArtifactCache",
    "CatalogError",
    "CoffeeFilters",
    "RoasterStatus",
    "RunDetail",
    "UpsertStats",
    "add_roaster",
    "artifact_body",
    "coffee_facets",
    "coffees_query",
    "counts",
    "fail_interrupted_runs",
    "get_coffee",
    "get_roaster",
    "list_roasters",
    "mark_missing",
    "per_250g_minor",
    "price_history",
    "quarantine",
    "recent_runs",
    "roaster_statuses",
    "run_artifacts",
    "run_detail",
    "run_outcomes_since",
    "save_shop_state",
    "search_coffees",
    "shop_state",
    "shop_url",
    "start_run",
    "store_artifact",
    "stored_hashes",
    "touch_unchanged",
    "upsert_products",
    "utcnow",
]
