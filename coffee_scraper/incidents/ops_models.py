"""Tables of investigation, recovery and learning: remediation audit, start-up records, checklists, postmortems, drills.

Lives here: table definitions only (``remediation_runs``, ``deployments``; the follow-up and drill tables below).
Does not live here: the incident record and its timeline (``incidents/models.py``), queries and flows
(``remediation.py``, ``diagnostics.py``, ``followup.py``, ``drills.py``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from coffee_scraper.catalog.models import Base, utcnow


class RemediationRun(Base):
    """One remediation action run (or dry run): who ran what, on what, with which result. Never updated after."""

    __tablename__ = "remediation_runs"
    __table_args__ = (Index("ix_remediation_runs_started", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    action: Mapped[str] = mapped_column(String(50))
    target: Mapped[str | None] = mapped_column(String(200), default=None)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    automatic: Mapped[bool] = mapped_column(Boolean, default=False)
    actor: Mapped[str | None] = mapped_column(String(200), default=None)
    incident_id: Mapped[str | None] = mapped_column(String(40), default=None, index=True)
    status: Mapped[str] = mapped_column(String(20))  # ok | failed | skipped | planned (dry run)
    summary: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime] = mapped_column(default=utcnow)


class Deployment(Base):
    """A process start: code revision and settings fingerprint, so diagnostics can show what changed and when."""

    __tablename__ = "deployments"
    __table_args__ = (Index("ix_deployments_started", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    component: Mapped[str] = mapped_column(String(50))  # serve | worker | scheduler | cli
    version: Mapped[str] = mapped_column(String(50))
    git_revision: Mapped[str | None] = mapped_column(String(64), default=None)
    settings_fingerprint: Mapped[str] = mapped_column(String(64))
    settings_hashes: Mapped[dict[str, Any]] = mapped_column(default=dict)  # setting name -> short hash of its value
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)


class ChecklistItem(Base):
    """One post-incident checklist item (the runbook's four lists) or postmortem action item, with owner and due."""

    __tablename__ = "incident_checklist_items"
    __table_args__ = (
        UniqueConstraint("incident_id", "phase", "position"),
        Index("ix_incident_checklist_items_due", "done_at", "due_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"), index=True)
    phase: Mapped[str] = mapped_column(String(20))  # immediate | documentation | postmortem | followup | action
    position: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    owner: Mapped[str | None] = mapped_column(String(200), default=None)
    due_at: Mapped[datetime]
    auto_check: Mapped[str | None] = mapped_column(String(40), default=None)  # checked from diagnostics
    item_type: Mapped[str | None] = mapped_column(String(20), default=None)  # action items: mitigate|prevent|...
    ticket_url: Mapped[str | None] = mapped_column(Text, default=None)
    done_at: Mapped[datetime | None] = mapped_column(default=None)
    done_by: Mapped[str | None] = mapped_column(String(200), default=None)
    note: Mapped[str | None] = mapped_column(Text, default=None)
    reminders: Mapped[int] = mapped_column(Integer, default=0)
    last_reminded_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Postmortem(Base):
    """Whether an incident needs a postmortem (and why), and its blameless draft (Markdown)."""

    __tablename__ = "postmortems"

    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"), primary_key=True)
    required: Mapped[bool] = mapped_column(Boolean, default=False)
    reasons: Mapped[list[Any]] = mapped_column(default=list)
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending | draft | in_review | final
    data_loss: Mapped[bool] = mapped_column(Boolean, default=False)
    detected_by: Mapped[str] = mapped_column(String(20), default="system")  # system | human
    due_at: Mapped[datetime | None] = mapped_column(default=None)  # review meeting within 1-7 days
    markdown: Mapped[str | None] = mapped_column(Text, default=None)
    drafted_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class DrillRun(Base):
    """One drill: the fault injected, its drill-marked incident, the scorecard of every runbook step."""

    __tablename__ = "drill_runs"
    __table_args__ = (Index("ix_drill_runs_started", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scenario: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20), default="running")  # running | passed | failed | aborted
    actor: Mapped[str | None] = mapped_column(String(200), default=None)
    incident_id: Mapped[str | None] = mapped_column(ForeignKey("incidents.id"), default=None, index=True)
    fault: Mapped[dict[str, Any]] = mapped_column(default=dict)
    scorecard: Mapped[dict[str, Any]] = mapped_column(default=dict)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    fault_reverted_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
