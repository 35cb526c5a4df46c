"""diagnostics remediation audit checklists drills

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 06:55:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text  # noqa: F401  (autogenerate may render bare Text())

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "remediation_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=50), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("automatic", sa.Boolean(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("incident_id", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_remediation_runs")),
    )
    op.create_index("ix_remediation_runs_started", "remediation_runs", ["started_at"], unique=False)
    op.create_index(op.f("ix_remediation_runs_incident_id"), "remediation_runs", ["incident_id"], unique=False)
    op.create_table(
        "deployments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("component", sa.String(length=50), nullable=False),
        sa.Column("version", sa.String(length=50), nullable=False),
        sa.Column("git_revision", sa.String(length=64), nullable=True),
        sa.Column("settings_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("settings_hashes", sa.JSON(), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployments")),
    )
    op.create_index("ix_deployments_started", "deployments", ["started_at"], unique=False)
    op.create_table(
        "incident_checklist_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.String(length=32), nullable=False),
        sa.Column("phase", sa.String(length=20), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=True),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("auto_check", sa.String(length=40), nullable=True),
        sa.Column("item_type", sa.String(length=20), nullable=True),
        sa.Column("ticket_url", sa.Text(), nullable=True),
        sa.Column("done_at", TS, nullable=True),
        sa.Column("done_by", sa.String(length=200), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("reminders", sa.Integer(), nullable=False),
        sa.Column("last_reminded_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["incidents.id"], name=op.f("fk_incident_checklist_items_incident_id_incidents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_checklist_items")),
        sa.UniqueConstraint(
            "incident_id", "phase", "position", name=op.f("uq_incident_checklist_items_incident_id_phase_position")
        ),
    )
    op.create_index("ix_incident_checklist_items_due", "incident_checklist_items", ["done_at", "due_at"], unique=False)
    op.create_index(
        op.f("ix_incident_checklist_items_incident_id"), "incident_checklist_items", ["incident_id"], unique=False
    )
    op.create_table(
        "postmortems",
        sa.Column("incident_id", sa.String(length=32), nullable=False),
        sa.Column("required", sa.Boolean(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("data_loss", sa.Boolean(), nullable=False),
        sa.Column("detected_by", sa.String(length=20), nullable=False),
        sa.Column("due_at", TS, nullable=True),
        sa.Column("markdown", sa.Text(), nullable=True),
        sa.Column("drafted_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"], name=op.f("fk_postmortems_incident_id_incidents")),
        sa.PrimaryKeyConstraint("incident_id", name=op.f("pk_postmortems")),
    )
    op.create_table(
        "drill_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scenario", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("incident_id", sa.String(length=32), nullable=True),
        sa.Column("fault", sa.JSON(), nullable=False),
        sa.Column("scorecard", sa.JSON(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("fault_reverted_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"], name=op.f("fk_drill_runs_incident_id_incidents")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drill_runs")),
    )
    op.create_index("ix_drill_runs_started", "drill_runs", ["started_at"], unique=False)
    op.create_index(op.f("ix_drill_runs_incident_id"), "drill_runs", ["incident_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_drill_runs_incident_id"), table_name="drill_runs")
    op.drop_index("ix_drill_runs_started", table_name="drill_runs")
    op.drop_table("drill_runs")
    op.drop_table("postmortems")
    op.drop_index(op.f("ix_incident_checklist_items_incident_id"), table_name="incident_checklist_items")
    op.drop_index("ix_incident_checklist_items_due", table_name="incident_checklist_items")
    op.drop_table("incident_checklist_items")
    op.drop_index("ix_deployments_started", table_name="deployments")
    op.drop_table("deployments")
    op.drop_index(op.f("ix_remediation_runs_incident_id"), table_name="remediation_runs")
    op.drop_index("ix_remediation_runs_started", table_name="remediation_runs")
    op.drop_table("remediation_runs")
