"""Tables of the scheduler: due times per roaster and mode, the queue's pause switch, heartbeats.

Only table definitions live here; every query on them is in ``jobs/service.py``. Procrastinate's own tables
(``procrastinate_*``, PostgreSQL only) come from migration 0002 and are not modelled here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from coffee_scraper.catalog.models import Base, utcnow


class JobSchedule(Base):
    """When a roaster's next run of one mode is due, and whether a claimed run of it is still unfinished.

    A process that wants to start (or enqueue) a due run claims it with a compare-and-set on ``next_due_at``
    (``service.claim``): exactly one process wins a tick. ``pending_since``/``claimed_by`` stay set from the
    claim until the run finished, so a restart knows which claimed runs were interrupted.
    """

    __tablename__ = "job_schedules"
    __table_args__ = (UniqueConstraint("roaster_id", "mode"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    roaster_id: Mapped[int] = mapped_column(ForeignKey("roasters.id", ondelete="CASCADE"))
    mode: Mapped[str] = mapped_column(String(10))  # full | price
    cadence: Mapped[str] = mapped_column(String(100))  # the cron next_due_at was computed from
    next_due_at: Mapped[datetime] = mapped_column(index=True)
    pending_since: Mapped[datetime | None] = mapped_column(default=None)  # claimed, not finished yet
    claimed_by: Mapped[str | None] = mapped_column(String(64), default=None)  # session id of the claimer
    trigger: Mapped[str | None] = mapped_column(String(20), default=None)  # schedule | manual | resume
    last_enqueued_at: Mapped[datetime | None] = mapped_column(default=None)
    last_finished_at: Mapped[datetime | None] = mapped_column(default=None)
    last_status: Mapped[str | None] = mapped_column(String(20), default=None)
    last_run_id: Mapped[int | None] = mapped_column(Integer, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # storage failures in a row (backoff)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class QueueState(Base):
    """The one row (id 1) that pauses every scheduled and queued run: by an operator or by the storage guard."""

    __tablename__ = "job_queue_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    paused_at: Mapped[datetime | None] = mapped_column(default=None)
    paused_by: Mapped[str | None] = mapped_column(String(200), default=None)
    resumed_at: Mapped[datetime | None] = mapped_column(default=None)


class Heartbeat(Base):
    """The last sign of life of a scheduler or worker process: the dead-man's switch reads its absence."""

    __tablename__ = "heartbeats"
    __table_args__ = (UniqueConstraint("component", "instance"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    component: Mapped[str] = mapped_column(String(50))  # scheduler | worker
    instance: Mapped[str] = mapped_column(String(200))  # host:pid, or the worker's --name
    session_id: Mapped[str] = mapped_column(String(64))  # new at each process start (claims refer to it)
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_beat_at: Mapped[datetime] = mapped_column(default=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column(default=None)  # set by a clean stop: not stale
    info: Mapped[dict[str, Any]] = mapped_column(default=dict)
