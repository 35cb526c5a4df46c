"""Who this process is to the scheduler (component, instance, session) and which scheduler mode is in force.

Lives here: ``Identity`` and ``resolve_mode``. Not here: heartbeats' storage (``jobs/service.py``).
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from typing import Literal

from coffee_scraper.settings import Settings

SchedulerMode = Literal["embedded", "distributed", "off"]
MODES = ("auto", "embedded", "distributed", "off")


class ModeError(ValueError):
    """The scheduler mode cannot work with this database; the message says what to change."""


def resolve_mode(settings: Settings) -> SchedulerMode:
    """``scheduler_mode`` with 'auto' decided: embedded on SQLite, distributed on PostgreSQL.

    On PostgreSQL the migrations always install procrastinate's schema, so 'distributed' can work as soon as
    `coffee-scraper worker` runs; set ``COFFEE_SCRAPER_SCHEDULER_MODE=embedded`` to keep one process instead.
    """
    mode = settings.scheduler_mode.strip().lower()
    if mode not in MODES:
        raise ModeError(f"COFFEE_SCRAPER_SCHEDULER_MODE={settings.scheduler_mode!r} is not one of {', '.join(MODES)}")
    if mode == "auto":
        return "embedded" if settings.is_sqlite else "distributed"
    if mode == "distributed" and settings.is_sqlite:
        raise ModeError(
            "COFFEE_SCRAPER_SCHEDULER_MODE=distributed needs PostgreSQL (procrastinate keeps its queue there); "
            "with SQLite use 'embedded' (the scheduler runs inside `coffee-scraper serve`)"
        )
    return mode  # type: ignore[return-value]


def _new_session() -> str:
    return uuid.uuid4().hex[:16]


@dataclass(frozen=True)
class Identity:
    """One scheduler or worker process: ``instance`` is stable (host:pid or --name), ``session_id`` is new
    at every start, so claims made by a process that has since died can be told apart from our own."""

    component: str  # scheduler | worker
    instance: str
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    session_id: str = field(default_factory=_new_session)

    @classmethod
    def for_process(cls, component: str, name: str | None = None) -> Identity:
        host = socket.gethostname()
        return cls(component=component, instance=name or f"{host}:{os.getpid()}", host=host)

    @property
    def metric_label(self) -> str:
        """The ``component`` label of the heartbeat metric: 'scheduler', or 'worker-<instance>'."""
        return self.component if self.component == "scheduler" else f"{self.component}-{self.instance}"
