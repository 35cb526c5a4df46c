"""incidents alerts timeline silences

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 06:55:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text  # noqa: F401  (autogenerate may render bare Text())

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("severity", sa.String(length=2), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("resolve_pending_since", TS, nullable=True),
        sa.Column("category", sa.String(length=200), nullable=True),
        sa.Column("rule", sa.String(length=200), nullable=True),
        sa.Column("component", sa.String(length=200), nullable=True),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("is_drill", sa.Boolean(), nullable=False),
        sa.Column("impact", sa.Text(), nullable=True),
        sa.Column("owner", sa.String(length=200), nullable=True),
        sa.Column("eta", sa.Text(), nullable=True),
        sa.Column("actions_taken", sa.Text(), nullable=True),
        sa.Column("next_steps", sa.Text(), nullable=True),
        sa.Column("root_cause", sa.Text(), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.Column("prevention", sa.Text(), nullable=True),
        sa.Column("opened_at", TS, nullable=False),
        sa.Column("acknowledged_at", TS, nullable=True),
        sa.Column("acknowledged_by", sa.String(length=200), nullable=True),
        sa.Column("working_at", TS, nullable=True),
        sa.Column("resolved_at", TS, nullable=True),
        sa.Column("last_status_update_at", TS, nullable=True),
        sa.Column("last_alert_at", TS, nullable=True),
        sa.Column("response_due_at", TS, nullable=False),
        sa.Column("response_breached_at", TS, nullable=True),
        sa.Column("escalation_level", sa.Integer(), nullable=False),
        sa.Column("next_escalation_at", TS, nullable=True),
        sa.Column("next_reminder_at", TS, nullable=True),
        sa.Column("severity_reason", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
    )
    op.create_index("ix_incidents_opened_at", "incidents", ["opened_at"], unique=False)
    op.create_index("ix_incidents_status_rule_component", "incidents", ["status", "rule", "component"], unique=False)
    op.create_table(
        "incident_day_counters",
        sa.Column("day", sa.String(length=8), nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_incident_day_counters")),
    )
    op.create_table(
        "incident_alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("incident_id", sa.String(length=32), nullable=True),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("severity", sa.String(length=2), nullable=False),
        sa.Column("alertname", sa.String(length=200), nullable=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("annotations", sa.JSON(), nullable=False),
        sa.Column("links", sa.JSON(), nullable=False),
        sa.Column("starts_at", TS, nullable=True),
        sa.Column("ends_at", TS, nullable=True),
        sa.Column("first_received_at", TS, nullable=False),
        sa.Column("last_received_at", TS, nullable=False),
        sa.Column("resolved_at", TS, nullable=True),
        sa.Column("resolved_by", sa.String(length=10), nullable=True),
        sa.Column("receive_count", sa.Integer(), nullable=False),
        sa.Column("flap_count", sa.Integer(), nullable=False),
        sa.Column("silenced_by", sa.String(length=40), nullable=True),
        sa.Column("raw", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["incidents.id"], name=op.f("fk_incident_alerts_incident_id_incidents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_alerts")),
        sa.UniqueConstraint("source", "fingerprint", name=op.f("uq_incident_alerts_source_fingerprint")),
    )
    op.create_index(op.f("ix_incident_alerts_incident_id"), "incident_alerts", ["incident_id"], unique=False)
    op.create_index("ix_incident_alerts_status_ends_at", "incident_alerts", ["status", "ends_at"], unique=False)
    op.create_table(
        "incident_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.String(length=32), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["incidents.id"], name=op.f("fk_incident_events_incident_id_incidents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_events")),
    )
    op.create_index("ix_incident_events_incident_id_id", "incident_events", ["incident_id", "id"], unique=False)
    op.create_table(
        "silences",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("matchers", sa.JSON(), nullable=False),
        sa.Column("starts_at", TS, nullable=False),
        sa.Column("ends_at", TS, nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_silences")),
    )
    op.create_index("ix_silences_ends_at", "silences", ["ends_at"], unique=False)
    op.create_table(
        "maintenance_windows",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("starts_at", TS, nullable=False),
        sa.Column("ends_at", TS, nullable=False),
        sa.Column("components", sa.JSON(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_maintenance_windows")),
    )
    op.create_index("ix_maintenance_windows_ends_at", "maintenance_windows", ["ends_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_maintenance_windows_ends_at", table_name="maintenance_windows")
    op.drop_table("maintenance_windows")
    op.drop_index("ix_silences_ends_at", table_name="silences")
    op.drop_table("silences")
    op.drop_index("ix_incident_events_incident_id_id", table_name="incident_events")
    op.drop_table("incident_events")
    op.drop_index("ix_incident_alerts_status_ends_at", table_name="incident_alerts")
    op.drop_index(op.f("ix_incident_alerts_incident_id"), table_name="incident_alerts")
    op.drop_table("incident_alerts")
    op.drop_table("incident_day_counters")
    op.drop_index("ix_incidents_status_rule_component", table_name="incidents")
    op.drop_index("ix_incidents_opened_at", table_name="incidents")
    op.drop_table("incidents")
