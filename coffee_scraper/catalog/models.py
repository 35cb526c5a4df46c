"""SQLAlchemy 2 tables of the catalog: roasters, coffees, variants, prices, runs, raw artifacts, quarantine, reviews.

Only table definitions live here; every query and upsert is in ``catalog/service.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite stores naive values; we re-attach UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use datetime.now(UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class Roaster(Base):
    __tablename__ = "roasters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    base_url: Mapped[str] = mapped_column(String(500), unique=True)
    platform: Mapped[str] = mapped_column(String(20), default="auto")  # auto | shopify | woocommerce
    currency: Mapped[str | None] = mapped_column(String(3), default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    paused_reason: Mapped[str | None] = mapped_column(Text, default=None)
    paused_at: Mapped[datetime | None] = mapped_column(default=None)  # when active became False (jobs/)
    # per-roaster overrides (None = settings default)
    full_cadence: Mapped[str | None] = mapped_column(String(100), default=None)
    price_cadence: Mapped[str | None] = mapped_column(String(100), default=None)
    concurrency: Mapped[int | None] = mapped_column(Integer, default=None)
    delay_s: Mapped[float | None] = mapped_column(Float, default=None)
    # robots state
    robots_txt: Mapped[str | None] = mapped_column(Text, default=None)
    robots_status: Mapped[int | None] = mapped_column(Integer, default=None)
    robots_fetched_at: Mapped[datetime | None] = mapped_column(default=None)
    robots_allowed: Mapped[bool | None] = mapped_column(Boolean, default=None)
    # circuit breaker state (written by the pipeline after each run)
    circuit_state: Mapped[str] = mapped_column(String(20), default="closed")
    circuit_opened_at: Mapped[datetime | None] = mapped_column(default=None)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    consecutive_failed_runs: Mapped[int] = mapped_column(Integer, default=0)
    fetch_state: Mapped[dict[str, Any]] = mapped_column(default=dict)  # fetcher notes (last robots error, …)
    last_run_at: Mapped[datetime | None] = mapped_column(default=None)
    last_success_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    coffees: Mapped[list[Coffee]] = relationship(back_populates="roaster")


class Coffee(Base):
    """One product of a roaster's shop (coffee or not: ``is_coffee`` tells)."""

    __tablename__ = "coffees"
    __table_args__ = (UniqueConstraint("roaster_id", "platform_product_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    roaster_id: Mapped[int] = mapped_column(ForeignKey("roasters.id", ondelete="CASCADE"), index=True)
    platform: Mapped[str] = mapped_column(String(20))
    platform_product_id: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(Text)
    is_coffee: Mapped[bool] = mapped_column(Boolean, index=True)
    name_clean: Mapped[str] = mapped_column(Text)
    roast_level: Mapped[str | None] = mapped_column(String(20), default=None, index=True)
    process: Mapped[str | None] = mapped_column(String(30), default=None, index=True)
    species: Mapped[str | None] = mapped_column(String(20), default=None)
    chicory_pct: Mapped[int | None] = mapped_column(Integer, default=None)
    country: Mapped[str | None] = mapped_column(String(2), default=None, index=True)
    region: Mapped[str | None] = mapped_column(String(100), default=None, index=True)
    estate: Mapped[str | None] = mapped_column(String(200), default=None)
    altitude_min_m: Mapped[int | None] = mapped_column(Integer, default=None)
    altitude_max_m: Mapped[int | None] = mapped_column(Integer, default=None)
    varieties: Mapped[list[Any]] = mapped_column(default=list)
    tasting_notes: Mapped[list[Any]] = mapped_column(default=list)
    decaf: Mapped[bool] = mapped_column(Boolean, default=False)
    evidence: Mapped[list[Any]] = mapped_column(default=list)
    review_flags: Mapped[list[Any]] = mapped_column(default=list)
    content_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), default="active", index=True)  # active | missing
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    missing_since: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    roaster: Mapped[Roaster] = relationship(back_populates="coffees")
    variants: Mapped[list[Variant]] = relationship(
        back_populates="coffee", order_by="Variant.position", cascade="all, delete-orphan"
    )


class Variant(Base):
    __tablename__ = "variants"
    __table_args__ = (UniqueConstraint("coffee_id", "platform_variant_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    coffee_id: Mapped[int] = mapped_column(ForeignKey("coffees.id", ondelete="CASCADE"), index=True)
    platform_variant_id: Mapped[str] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer, default=0)
    title: Mapped[str] = mapped_column(Text)
    weight_g: Mapped[int | None] = mapped_column(Integer, default=None)
    pack_count: Mapped[int] = mapped_column(Integer, default=1)
    grind: Mapped[str | None] = mapped_column(String(30), default=None)
    currency: Mapped[str] = mapped_column(String(3))
    price_minor: Mapped[int] = mapped_column(BigInteger)
    compare_at_minor: Mapped[int | None] = mapped_column(BigInteger, default=None)
    in_stock: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(20), default="active")  # active | missing
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)

    coffee: Mapped[Coffee] = relationship(back_populates="variants")


class Price(Base):
    """Append-only price history: a row only when price, compare-at price or availability changes."""

    __tablename__ = "prices"
    __table_args__ = (Index("ix_prices_variant_observed", "variant_id", "observed_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    variant_id: Mapped[int] = mapped_column(ForeignKey("variants.id", ondelete="CASCADE"))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("scrape_runs.id", ondelete="SET NULL"), default=None)
    observed_at: Mapped[datetime] = mapped_column(default=utcnow)
    currency: Mapped[str] = mapped_column(String(3))
    price_minor: Mapped[int] = mapped_column(BigInteger)
    compare_at_minor: Mapped[int | None] = mapped_column(BigInteger, default=None)
    in_stock: Mapped[bool] = mapped_column(Boolean)

    variant: Mapped[Variant] = relationship()


class ScrapeRun(Base):
    """One roaster run (full or price) with its counters and error summary."""

    __tablename__ = "scrape_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    roaster_id: Mapped[int] = mapped_column(ForeignKey("roasters.id", ondelete="CASCADE"), index=True)
    mode: Mapped[str] = mapped_column(String(10))  # full | price
    status: Mapped[str] = mapped_column(String(10), default="running", index=True)  # running|ok|partial|fail
    platform: Mapped[str | None] = mapped_column(String(20), default=None)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    pages_fetched: Mapped[int] = mapped_column(Integer, default=0)
    pages_not_modified: Mapped[int] = mapped_column(Integer, default=0)
    products_seen: Mapped[int] = mapped_column(Integer, default=0)
    products_new: Mapped[int] = mapped_column(Integer, default=0)
    products_updated: Mapped[int] = mapped_column(Integer, default=0)
    products_unchanged: Mapped[int] = mapped_column(Integer, default=0)
    products_quarantined: Mapped[int] = mapped_column(Integer, default=0)
    products_missing: Mapped[int] = mapped_column(Integer, default=0)
    price_changes: Mapped[int] = mapped_column(Integer, default=0)
    reviews_flagged: Mapped[int] = mapped_column(Integer, default=0)
    error_summary: Mapped[str | None] = mapped_column(Text, default=None)
    errors: Mapped[list[Any]] = mapped_column(default=list)


class RawArtifact(Base):
    """Every fetched page, compressed, with enough metadata to replay the run offline."""

    __tablename__ = "raw_artifacts"
    __table_args__ = (Index("ix_raw_artifacts_url_fetched", "url", "fetched_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int | None] = mapped_column(
        ForeignKey("scrape_runs.id", ondelete="SET NULL"), index=True, default=None
    )
    roaster_id: Mapped[int] = mapped_column(ForeignKey("roasters.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))  # products | meta | robots | detect
    page: Mapped[int | None] = mapped_column(Integer, default=None)
    url: Mapped[str] = mapped_column(Text)
    status: Mapped[int] = mapped_column(Integer)
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    body_gz: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    elapsed_ms: Mapped[float] = mapped_column(Float)
    etag: Mapped[str | None] = mapped_column(String(500), default=None)
    last_modified: Mapped[str | None] = mapped_column(String(100), default=None)
    from_cache: Mapped[bool] = mapped_column(Boolean, default=False)
    fetched_at: Mapped[datetime] = mapped_column(default=utcnow)


class QuarantinedProduct(Base):
    """A product that failed validation: kept raw with the reason; it never aborts the shop's run."""

    __tablename__ = "quarantined_products"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("scrape_runs.id", ondelete="CASCADE"), index=True)
    roaster_id: Mapped[int] = mapped_column(ForeignKey("roasters.id", ondelete="CASCADE"))
    artifact_id: Mapped[int | None] = mapped_column(ForeignKey("raw_artifacts.id", ondelete="SET NULL"), default=None)
    platform_product_id: Mapped[str | None] = mapped_column(String(64), default=None)
    reason: Mapped[str] = mapped_column(Text)
    raw: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Review(Base):
    """Something a person should look at: a large price change, conflicting evidence, a hidden price."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    coffee_id: Mapped[int] = mapped_column(ForeignKey("coffees.id", ondelete="CASCADE"), index=True)
    variant_id: Mapped[int | None] = mapped_column(ForeignKey("variants.id", ondelete="CASCADE"), default=None)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("scrape_runs.id", ondelete="SET NULL"), default=None)
    kind: Mapped[str] = mapped_column(String(50))
    detail: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)

    coffee: Mapped[Coffee] = relationship()
