"""jobs scheduling and heartbeats

Scheduler tables on both backends (job_schedules, job_queue_state, heartbeats), ``roasters.paused_at``, and on
PostgreSQL only procrastinate's schema (``procrastinate_*`` tables, types, functions, triggers) exactly as
the installed procrastinate ships it (``SchemaManager.get_schema()``).

Upgrading procrastinate later: its schema changes ship as SQL files (``procrastinate schema
--migrations-path``); apply the ones newer than the version installed here in a new Alembic revision.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 06:55:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text  # noqa: F401  (autogenerate may render bare Text())

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("roasters", schema=None) as batch_op:
        batch_op.add_column(sa.Column("paused_at", TS, nullable=True))

    op.create_table(
        "job_schedules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("roaster_id", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(length=10), nullable=False),
        sa.Column("cadence", sa.String(length=100), nullable=False),
        sa.Column("next_due_at", TS, nullable=False),
        sa.Column("pending_since", TS, nullable=True),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("trigger", sa.String(length=20), nullable=True),
        sa.Column("last_enqueued_at", TS, nullable=True),
        sa.Column("last_finished_at", TS, nullable=True),
        sa.Column("last_status", sa.String(length=20), nullable=True),
        sa.Column("last_run_id", sa.Integer(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["roaster_id"], ["roasters.id"], name=op.f("fk_job_schedules_roaster_id_roasters"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_schedules")),
        sa.UniqueConstraint("roaster_id", "mode", name=op.f("uq_job_schedules_roaster_id_mode")),
    )
    with op.batch_alter_table("job_schedules", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_job_schedules_next_due_at"), ["next_due_at"], unique=False)

    queue_state = op.create_table(
        "job_queue_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("paused_at", TS, nullable=True),
        sa.Column("paused_by", sa.String(length=200), nullable=True),
        sa.Column("resumed_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_queue_state")),
    )
    op.bulk_insert(queue_state, [{"id": 1, "paused": False}])

    op.create_table(
        "heartbeats",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("component", sa.String(length=50), nullable=False),
        sa.Column("instance", sa.String(length=200), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("last_beat_at", TS, nullable=False),
        sa.Column("stopped_at", TS, nullable=True),
        sa.Column("info", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_heartbeats")),
        sa.UniqueConstraint("component", "instance", name=op.f("uq_heartbeats_component_instance")),
    )

    if op.get_bind().dialect.name == "postgresql":
        from procrastinate.schema import SchemaManager

        _execute_raw(SchemaManager.get_schema())


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _execute_raw(_DROP_PROCRASTINATE)
    op.drop_table("heartbeats")
    op.drop_table("job_queue_state")
    with op.batch_alter_table("job_schedules", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_schedules_next_due_at"))
    op.drop_table("job_schedules")
    with op.batch_alter_table("roasters", schema=None) as batch_op:
        batch_op.drop_column("paused_at")


def _execute_raw(sql: str) -> None:
    """Run SQL text on the migration's own psycopg connection (same transaction), without parameters, so
    neither SQLAlchemy nor psycopg parses procrastinate's '%' and ':' as placeholders."""
    dbapi_connection = op.get_bind().connection.dbapi_connection
    assert dbapi_connection is not None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(sql)
    finally:
        cursor.close()


# Every object procrastinate's schema.sql creates: its tables (with their triggers and indexes), then its
# functions and types, found by their procrastinate_ prefix so a newer procrastinate's extra ones go too.
_DROP_PROCRASTINATE = """
DROP TABLE IF EXISTS procrastinate_events, procrastinate_periodic_defers, procrastinate_jobs,
    procrastinate_workers CASCADE;
DO $$
DECLARE fn record;
BEGIN
    FOR fn IN SELECT p.oid::regprocedure AS signature FROM pg_proc p
              JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname = current_schema() AND p.proname LIKE 'procrastinate\\_%'
    LOOP
        EXECUTE 'DROP ROUTINE IF EXISTS ' || fn.signature || ' CASCADE';
    END LOOP;
END $$;
DROP TYPE IF EXISTS procrastinate_job_to_defer_v1, procrastinate_job_event_type, procrastinate_job_status CASCADE;
"""
