"""catalog tables

Revision ID: 0001
Revises:
Create Date: 2026-11-30 04:41:05.238025
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text  # noqa: F401  (autogenerate may render bare Text())

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "roasters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("base_url", sa.String(length=500), nullable=False),
        sa.Column("platform", sa.String(length=20), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("paused_reason", sa.Text(), nullable=True),
        sa.Column("full_cadence", sa.String(length=100), nullable=True),
        sa.Column("price_cadence", sa.String(length=100), nullable=True),
        sa.Column("concurrency", sa.Integer(), nullable=True),
        sa.Column("delay_s", sa.Float(), nullable=True),
        sa.Column("robots_txt", sa.Text(), nullable=True),
        sa.Column("robots_status", sa.Integer(), nullable=True),
        sa.Column("robots_fetched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("robots_allowed", sa.Boolean(), nullable=True),
        sa.Column("circuit_state", sa.String(length=20), nullable=False),
        sa.Column("circuit_opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("consecutive_failed_runs", sa.Integer(), nullable=False),
        sa.Column("fetch_state", sa.JSON(), nullable=False),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_roasters")),
        sa.UniqueConstraint("base_url", name=op.f("uq_roasters_base_url")),
        sa.UniqueConstraint("name", name=op.f("uq_roasters_name")),
    )
    op.create_table(
        "coffees",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("roaster_id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(length=20), nullable=False),
        sa.Column("platform_product_id", sa.String(length=64), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("is_coffee", sa.Boolean(), nullable=False),
        sa.Column("name_clean", sa.Text(), nullable=False),
        sa.Column("roast_level", sa.String(length=20), nullable=True),
        sa.Column("process", sa.String(length=30), nullable=True),
        sa.Column("species", sa.String(length=20), nullable=True),
        sa.Column("chicory_pct", sa.Integer(), nullable=True),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("region", sa.String(length=100), nullable=True),
        sa.Column("estate", sa.String(length=200), nullable=True),
        sa.Column("altitude_min_m", sa.Integer(), nullable=True),
        sa.Column("altitude_max_m", sa.Integer(), nullable=True),
        sa.Column("varieties", sa.JSON(), nullable=False),
        sa.Column("tasting_notes", sa.JSON(), nullable=False),
        sa.Column("decaf", sa.Boolean(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("review_flags", sa.JSON(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("missing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["roaster_id"], ["roasters.id"], name=op.f("fk_coffees_roaster_id_roasters"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coffees")),
        sa.UniqueConstraint(
            "roaster_id", "platform_product_id", name=op.f("uq_coffees_roaster_id_platform_product_id")
        ),
    )
    with op.batch_alter_table("coffees", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_coffees_country"), ["country"], unique=False)
        batch_op.create_index(batch_op.f("ix_coffees_is_coffee"), ["is_coffee"], unique=False)
        batch_op.create_index(batch_op.f("ix_coffees_process"), ["process"], unique=False)
        batch_op.create_index(batch_op.f("ix_coffees_region"), ["region"], unique=False)
        batch_op.create_index(batch_op.f("ix_coffees_roast_level"), ["roast_level"], unique=False)
        batch_op.create_index(batch_op.f("ix_coffees_roaster_id"), ["roaster_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_coffees_status"), ["status"], unique=False)

    op.create_table(
        "scrape_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("roaster_id", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("platform", sa.String(length=20), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pages_fetched", sa.Integer(), nullable=False),
        sa.Column("pages_not_modified", sa.Integer(), nullable=False),
        sa.Column("products_seen", sa.Integer(), nullable=False),
        sa.Column("products_new", sa.Integer(), nullable=False),
        sa.Column("products_updated", sa.Integer(), nullable=False),
        sa.Column("products_unchanged", sa.Integer(), nullable=False),
        sa.Column("products_quarantined", sa.Integer(), nullable=False),
        sa.Column("products_missing", sa.Integer(), nullable=False),
        sa.Column("price_changes", sa.Integer(), nullable=False),
        sa.Column("reviews_flagged", sa.Integer(), nullable=False),
        sa.Column("error_summary", sa.Text(), nullable=True),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["roaster_id"],
            ["roasters.id"],
            name=op.f("fk_scrape_runs_roaster_id_roasters"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scrape_runs")),
    )
    with op.batch_alter_table("scrape_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_scrape_runs_roaster_id"), ["roaster_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_scrape_runs_status"), ["status"], unique=False)

    op.create_table(
        "raw_artifacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("roaster_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("page", sa.Integer(), nullable=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("body_gz", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("elapsed_ms", sa.Float(), nullable=False),
        sa.Column("etag", sa.String(length=500), nullable=True),
        sa.Column("last_modified", sa.String(length=100), nullable=True),
        sa.Column("from_cache", sa.Boolean(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["roaster_id"],
            ["roasters.id"],
            name=op.f("fk_raw_artifacts_roaster_id_roasters"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["scrape_runs.id"],
            name=op.f("fk_raw_artifacts_run_id_scrape_runs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_raw_artifacts")),
    )
    with op.batch_alter_table("raw_artifacts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_raw_artifacts_run_id"), ["run_id"], unique=False)
        batch_op.create_index("ix_raw_artifacts_url_fetched", ["url", "fetched_at"], unique=False)

    op.create_table(
        "variants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("coffee_id", sa.Integer(), nullable=False),
        sa.Column("platform_variant_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("weight_g", sa.Integer(), nullable=True),
        sa.Column("pack_count", sa.Integer(), nullable=False),
        sa.Column("grind", sa.String(length=30), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("price_minor", sa.BigInteger(), nullable=False),
        sa.Column("compare_at_minor", sa.BigInteger(), nullable=True),
        sa.Column("in_stock", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["coffee_id"], ["coffees.id"], name=op.f("fk_variants_coffee_id_coffees"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_variants")),
        sa.UniqueConstraint("coffee_id", "platform_variant_id", name=op.f("uq_variants_coffee_id_platform_variant_id")),
    )
    with op.batch_alter_table("variants", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_variants_coffee_id"), ["coffee_id"], unique=False)

    op.create_table(
        "prices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("variant_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("price_minor", sa.BigInteger(), nullable=False),
        sa.Column("compare_at_minor", sa.BigInteger(), nullable=True),
        sa.Column("in_stock", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["scrape_runs.id"], name=op.f("fk_prices_run_id_scrape_runs"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["variant_id"], ["variants.id"], name=op.f("fk_prices_variant_id_variants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prices")),
    )
    with op.batch_alter_table("prices", schema=None) as batch_op:
        batch_op.create_index("ix_prices_variant_observed", ["variant_id", "observed_at"], unique=False)

    op.create_table(
        "quarantined_products",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("roaster_id", sa.Integer(), nullable=False),
        sa.Column("artifact_id", sa.Integer(), nullable=True),
        sa.Column("platform_product_id", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("raw", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["artifact_id"],
            ["raw_artifacts.id"],
            name=op.f("fk_quarantined_products_artifact_id_raw_artifacts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["roaster_id"],
            ["roasters.id"],
            name=op.f("fk_quarantined_products_roaster_id_roasters"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["scrape_runs.id"],
            name=op.f("fk_quarantined_products_run_id_scrape_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantined_products")),
    )
    with op.batch_alter_table("quarantined_products", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_quarantined_products_run_id"), ["run_id"], unique=False)

    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("coffee_id", sa.Integer(), nullable=False),
        sa.Column("variant_id", sa.Integer(), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["coffee_id"], ["coffees.id"], name=op.f("fk_reviews_coffee_id_coffees"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["scrape_runs.id"], name=op.f("fk_reviews_run_id_scrape_runs"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["variant_id"], ["variants.id"], name=op.f("fk_reviews_variant_id_variants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviews")),
    )
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reviews_coffee_id"), ["coffee_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reviews_coffee_id"))

    op.drop_table("reviews")
    with op.batch_alter_table("quarantined_products", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quarantined_products_run_id"))

    op.drop_table("quarantined_products")
    with op.batch_alter_table("prices", schema=None) as batch_op:
        batch_op.drop_index("ix_prices_variant_observed")

    op.drop_table("prices")
    with op.batch_alter_table("variants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_variants_coffee_id"))

    op.drop_table("variants")
    with op.batch_alter_table("raw_artifacts", schema=None) as batch_op:
        batch_op.drop_index("ix_raw_artifacts_url_fetched")
        batch_op.drop_index(batch_op.f("ix_raw_artifacts_run_id"))

    op.drop_table("raw_artifacts")
    with op.batch_alter_table("scrape_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_scrape_runs_status"))
        batch_op.drop_index(batch_op.f("ix_scrape_runs_roaster_id"))

    op.drop_table("scrape_runs")
    with op.batch_alter_table("coffees", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_coffees_status"))
        batch_op.drop_index(batch_op.f("ix_coffees_roaster_id"))
        batch_op.drop_index(batch_op.f("ix_coffees_roast_level"))
        batch_op.drop_index(batch_op.f("ix_coffees_region"))
        batch_op.drop_index(batch_op.f("ix_coffees_process"))
        batch_op.drop_index(batch_op.f("ix_coffees_is_coffee"))
        batch_op.drop_index(batch_op.f("ix_coffees_country"))

    op.drop_table("coffees")
    op.drop_table("roasters")
