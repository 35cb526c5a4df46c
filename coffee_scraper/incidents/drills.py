"""Drills (runbook "Training and Preparation"): a real, reversible fault in the running system, drill-marked, scored.

Lives here: ``SCENARIOS`` (db-outage, storage-errors, roaster-5xx, roaster-429, disk, memory, channel-down), the
fault injectors (connections to the catalog database refused / 60% of its writes failing at the database client
of this process; a drill shop answering 5xx/429; a disk or memory threshold placed just below the measured
usage, with real memory held for the memory drill; the Slack webhook pointed at a closed port), the drill
marking (while a drill runs, and for a cool-down after it, the watchdogs of this process label their alerts of the
scenario's rules ``drill="true"``, and ``flows`` opens drill incidents for such alerts: ``is_drill``, title
"DRILL: ..."; ``marked_rules`` is what the watchdog asks), the stand-in roster that keeps real people from
being paged unless ``page`` is asked for, and ``Drill`` which injects, watches the system respond (its own
watchdog pass over the scenario's rules; ``fast`` sets their ``for`` to zero), plays the responder (acknowledge,
remediate, resolve) and scores every step against the runbook's targets into a scorecard (``drill_runs`` + the
incident's timeline). ``DrillService`` runs drills in the background of ``serve`` for the API.
Does not live here: the rules (``alert_config.py``), the watchdog (``watchdog.py``), notifications (``notify/``),
printing (``ops_commands.py``), HTTP (``ops_views.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import Engine, event, exc, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import Pool

from coffee_scraper.catalog import db
from coffee_scraper.catalog.models import Roaster
from coffee_scraper.incidents import flows, followup, remediation, store
from coffee_scraper.incidents.alert_config import AlertRule, AlertSettings, load_alert_config
from coffee_scraper.incidents.models import Incident, IncidentEvent
from coffee_scraper.incidents.ops_models import ChecklistItem, DrillRun, Postmortem, RemediationRun
from coffee_scraper.observability import instrument
from coffee_scraper.observability.logging import get_logger
from coffee_scraper.settings import Settings

DRILL_ACTOR = "drill"
EXEMPT_APPLICATION = "coffee-scraper-drill"
FAST_WINDOW = timedelta(seconds=10)  # fast drills: rate windows this short, so recovery shows in seconds
REMEDIATE_AFTER_REVERT = ("db-outage", "channel-down")  # their remediation only helps once the fault is gone
log = get_logger("incidents")


@dataclass(frozen=True)
class Scenario:
    name: str
    fault: str  # what is injected
    expected: str  # what the system should do
    rules: tuple[str, ...]  # evaluated by the drill's watchdog; the first one is the expected detection
    severity: str
    collateral: tuple[str, ...] = ()  # other rules whose incidents opened during the drill are drills too
    remediation: str | None = None  # what the drill (as responder) runs, audited


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "db-outage",
            "connections from the app to the catalog database are refused (the server itself is not touched)",
            "P0 Database Failure (DatabaseDown)",
            ("DatabaseDown", "DatabaseReadinessFailing"),
            "P0",
            ("DatabaseConnectionIssues", "HighRPCErrorRate", "HighErrorRate", "SystemDown", "HeartbeatMissing"),
            "reconnect-db",
        ),
        Scenario(
            "storage-errors",
            "60% of the app's writes to the catalog fail at the database client; the drill writes to make load",
            "P0 High RPC Error Rate (HighRPCErrorRate)",
            ("HighRPCErrorRate",),
            "P0",
            ("DatabaseConnectionIssues", "HighErrorRate", "DatabaseDown"),
            "pause-queue",
        ),
        Scenario(
            "roaster-5xx",
            "a drill roaster whose shop answers 503 to every request",
            "P1 External Service Failures (its circuit opens)",
            ("ExternalServiceFailures",),
            "P1",
            ("HighErrorRate", "HighRPCErrorRate", "ServiceDegradation"),
            "close-circuit",
        ),
        Scenario(
            "roaster-429",
            "a drill roaster whose shop answers 429 with Retry-After to every request",
            "P1 External Service Failures (its circuit opens)",
            ("ExternalServiceFailures",),
            "P1",
            ("HighErrorRate", "HighRPCErrorRate", "ServiceDegradation"),
            "close-circuit",
        ),
        Scenario(
            "disk",
            "the disk-usage threshold is placed just below the measured usage of the watched paths (no disk is filled)",
            "P0 Disk Usage Critical",
            ("DiskUsageCritical",),
            "P0",
            ("DiskUsageWarning",),
            "clean-temp",
        ),
        Scenario(
            "memory",
            "the drill holds real memory and the memory-pressure threshold is placed just below the measured usage",
            "P2 Resource Constraints (MemoryPressure)",
            ("MemoryPressure",),
            "P2",
            ("MemoryUsageHigh", "MemoryExhaustion"),
        ),
        Scenario(
            "channel-down",
            "the Slack webhook is pointed at a closed port and the drill sends messages through it",
            "P2 Monitoring Issues (AlertNotificationFailures); Slack's circuit opens, its messages wait",
            ("AlertNotificationFailures",),
            "P2",
            remediation="close-circuit",  # after the fix: Slack's circuit closed by hand, the waiting messages go
        ),
    )
}


class DrillError(ValueError):
    """A drill cannot run as asked; the message says what to do."""


# --- drill marking: alerts of a running drill's rules carry drill="true", so their incidents are drills ---------

_marking_lock = threading.Lock()
_marking: dict[str, tuple[frozenset[str], float]] = {}  # drill token -> (rules, until monotonic time)


def marked_rules() -> frozenset[str]:
    """Rules under a drill marking now (a drill runs, or its cool-down): the watchdog labels their alerts
    ``drill="true"`` (``flows.DRILL_LABEL``), which makes their incidents drills."""
    now = time.monotonic()
    with _marking_lock:
        return frozenset().union(*(r for r, until in _marking.values() if until > now)) if _marking else frozenset()


def _set_marking(token: str, rules: frozenset[str], seconds: float) -> None:
    with _marking_lock:
        _marking[token] = (rules, time.monotonic() + seconds)
        for key in [k for k, (_, until) in _marking.items() if until < time.monotonic()]:
            _marking.pop(key, None)


def clear_marking() -> None:
    """Forget every drill marking, cool-downs included (tests; a restart does the same)."""
    with _marking_lock:
        _marking.clear()


def marking_active() -> dict[str, list[str]]:
    now = time.monotonic()
    with _marking_lock:
        return {k: sorted(r) for k, (r, until) in _marking.items() if until > now}


# --- database faults (this process's connections to the catalog database) -----------------------------------


class ExemptConnection(sqlite3.Connection):
    """The drill's own SQLite connections: the injected faults leave them alone."""


def _target_of_url(url: str) -> tuple[str, ...]:
    parsed = make_url(db.normalize_url(url))
    if parsed.get_backend_name() == "sqlite":
        return ("sqlite", str(Path(parsed.database or "").absolute()))
    return ("postgresql", parsed.host or "localhost", str(parsed.port or 5432), parsed.database or "")


def _target_of_connect(dialect: Any, cargs: Any, cparams: dict[str, Any]) -> tuple[tuple[str, ...], bool]:
    if dialect.name == "sqlite":
        database = cargs[0] if cargs else cparams.get("database", "")
        exempt = cparams.get("factory") is ExemptConnection
        return ("sqlite", str(Path(str(database)).absolute())), exempt
    host = cparams.get("host") or "localhost"
    exempt = cparams.get("application_name") == EXEMPT_APPLICATION
    return ("postgresql", str(host), str(cparams.get("port") or 5432), str(cparams.get("dbname") or "")), exempt


class DatabaseFault:
    """Refuse this process's connections to one database (``refuse``) or fail a share of its writes."""

    def __init__(self, url: str, *, refuse: bool = False, write_failure: float = 0.0, exempt: Engine | None = None):
        self.target = _target_of_url(url)
        self.refuse = refuse
        self.write_failure = write_failure
        self.exempt = exempt
        self.writes = 0
        self.failed = 0
        self._lock = threading.Lock()
        self.active = False

    def _do_connect(self, dialect: Any, _rec: Any, cargs: Any, cparams: dict[str, Any]) -> None:
        if not (self.active and self.refuse):
            return
        target, exempt = _target_of_connect(dialect, cargs, cparams)
        if target == self.target and not exempt:
            if dialect.name == "sqlite":
                raise sqlite3.OperationalError("drill: connections to the catalog database are refused")
            import psycopg

            raise psycopg.OperationalError("drill: connections to the catalog database are refused")

    def _checkout(self, _dbapi: Any, record: Any, _proxy: Any) -> None:
        if not (self.active and self.refuse):
            return
        dbapi = record.dbapi_connection
        if isinstance(dbapi, ExemptConnection):
            return
        if isinstance(dbapi, sqlite3.Connection):
            try:
                row = dbapi.execute("PRAGMA database_list").fetchone()
            except sqlite3.Error:
                return
            target: tuple[str, ...] = ("sqlite", str(Path(row[2]).absolute())) if row and row[2] else ("sqlite", "")
        else:
            info = getattr(dbapi, "info", None)  # psycopg
            if info is None or getattr(info, "host", None) is None:
                return
            params = info.get_parameters() if hasattr(info, "get_parameters") else {}
            if params.get("application_name") == EXEMPT_APPLICATION:
                return
            target = ("postgresql", str(info.host), str(info.port), str(info.dbname))
        if target == self.target:
            raise exc.DisconnectionError("drill: the catalog database is unavailable")

    def _before_execute(self, conn: Any, _cursor: Any, statement: str, _params: Any, _ctx: Any, _many: bool) -> None:
        if not self.active or self.write_failure <= 0:
            return
        engine = conn.engine
        if engine is self.exempt or _target_of_url(engine.url.render_as_string(hide_password=False)) != self.target:
            return
        verb = statement.lstrip().split(" ", 1)[0].upper()
        if verb not in ("INSERT", "UPDATE", "DELETE"):
            return
        with self._lock:
            self.writes += 1
            # deterministic share: fail while the failures so far are below the wanted share
            fail = self.failed < self.write_failure * self.writes
            if fail:
                self.failed += 1
        if fail:
            raise exc.OperationalError(statement, None, Exception("drill: injected storage write error"))

    def install(self) -> None:
        event.listen(Engine, "do_connect", self._do_connect)
        event.listen(Pool, "checkout", self._checkout)
        event.listen(Engine, "before_cursor_execute", self._before_execute)
        self.active = True

    def remove(self) -> None:
        self.active = False
        with contextlib.suppress(Exception):
            event.remove(Engine, "do_connect", self._do_connect)
        with contextlib.suppress(Exception):
            event.remove(Pool, "checkout", self._checkout)
        with contextlib.suppress(Exception):
            event.remove(Engine, "before_cursor_execute", self._before_execute)


def exempt_engine(url: str) -> Engine:
    """An engine whose connections the drill's database faults leave alone (the drill's own bookkeeping)."""
    parsed = make_url(db.normalize_url(url))
    if parsed.get_backend_name() == "sqlite":
        return db.make_engine(url, connect_args={"factory": ExemptConnection, "check_same_thread": False})
    return db.make_engine(url, connect_args={"application_name": EXEMPT_APPLICATION, "connect_timeout": 3})


# --- the scorecard --------------------------------------------------------------------------------------------


@dataclass
class Step:
    name: str
    status: str  # pass | fail | skip | pending
    detail: str = ""
    at: datetime | None = None
    elapsed_s: float | None = None  # from the step's reference point (see ``since``)
    target_s: float | None = None
    since: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "detail": self.detail,
            "at": self.at.isoformat() if self.at else None,
            "elapsed_s": self.elapsed_s,
            "target_s": self.target_s,
            "since": self.since,
        }


STEP_ORDER = (
    "fault",
    "detection",
    "classification",
    "notification",
    "escalation",
    "diagnostics",
    "remediation",
    "recovery",
    "resolution",
    "checklists",
    "postmortem",
    "cleanup",
)


@dataclass
class DrillOptions:
    fast: bool = False  # the scenario rules' ``for`` set to zero (CI, first try); real drills use the real rules
    page: bool = False  # notify the real roster (default: stand-ins, nobody real is paged)
    timeout_s: float = 900.0  # give up waiting for a step after this long
    tick_s: float | None = None  # evaluation interval (default: fast 0.5 s, else watchdog_interval_s)
    actor: str = "cli"
    cooldown_s: float | None = None  # drill-marking after the drill (default: longest window + for)
    run_loops: bool = True  # run the recovery loop's pass each tick (off in serve when its own loop runs)


def _timed(elapsed: float, target: float) -> str:
    return f"{elapsed:.1f} s (target ≤ {target:g} s)"


class Drill:
    """One drill run: inject, watch, respond, revert, score. ``run()`` blocks until it is done."""

    def __init__(
        self,
        scenario: str,
        settings: Settings,
        *,
        options: DrillOptions | None = None,
        incidents_factory: sessionmaker[Session] | None = None,
        catalog_factory: sessionmaker[Session] | None = None,
        now: Callable[[], datetime] | None = None,
        drive: Callable[[], object] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        if scenario not in SCENARIOS:
            raise DrillError(f"unknown drill scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
        self.scenario = SCENARIOS[scenario]
        self.settings = settings
        self.options = options or DrillOptions()
        self.now = now or (lambda: datetime.now(UTC))
        self.drive = drive  # extra work per tick (tests: the incident runner's pass)
        self.stop = stop or threading.Event()
        self.incidents_url = store.incidents_url(settings)
        self._own_engines: list[Engine] = []
        if incidents_factory is None:
            engine = exempt_engine(self.incidents_url)
            self._own_engines.append(engine)
            incidents_factory = db.session_factory(engine)
        self.incidents = incidents_factory
        if catalog_factory is None:
            engine = db.make_engine(settings.database_url)
            self._own_engines.append(engine)
            catalog_factory = db.session_factory(engine)
        self.catalog = catalog_factory
        self.exempt_bind: Engine = self.incidents.kw["bind"]
        self.steps: dict[str, Step] = {n: Step(n, "pending") for n in STEP_ORDER}
        self.run_id: int | None = None
        self.token = uuid.uuid4().hex
        self.incident_id: str | None = None
        self.fault_info: dict[str, Any] = {}
        self._revert: list[Callable[[], None]] = []  # removes the fault
        self._teardown: list[Callable[[], None]] = []  # removes what the drill set up (after scoring)
        self._tmp = Path(tempfile.mkdtemp(prefix="coffee-scraper-drill-", dir=settings.temp_dir or None))
        self.tick_s = self.options.tick_s or (0.5 if self.options.fast else settings.watchdog_interval_s)
        self._prev_notify: Any = None
        self.alert_settings = AlertSettings()
        self.rules = self._rules()
        self._workload: threading.Thread | None = None
        self._workload_stop = threading.Event()
        self.loop = followup.RecoveryLoop(
            settings, incidents_factory=self.incidents, catalog_factory=self.catalog, now=self.now
        )

    # --- setup ------------------------------------------------------------------------------------------------

    def _rules(self) -> list[AlertRule]:
        config = load_alert_config(self.alert_settings)
        rules = [config.rule(r) for r in self.scenario.rules]
        if self.options.fast:
            from coffee_scraper.incidents.watchdog import parse_duration

            rules = [
                replace(r, for_="0s", window=f"{min(parse_duration(r.window), FAST_WINDOW).total_seconds():g}s")
                for r in rules
            ]
        return rules

    def _watchdog(self) -> Any:
        from coffee_scraper.incidents.watchdog import Watchdog

        s = self.settings.model_copy(
            update={
                "watchdog_state_file": self._tmp / "watchdog-state.json",
                "watchdog_spool_file": self._tmp / "spool.jsonl",
                "watchdog_interval_s": self.tick_s,
            }
        )
        return Watchdog(
            s,
            alert_settings=self.alert_settings,
            now=self.now,
            rules=self.rules,
            incidents_factory=self.incidents,
            load_state=False,
        )

    def record_start(self) -> None:
        with db.session_scope(self.incidents) as session:
            row = DrillRun(
                scenario=self.scenario.name,
                status="running",
                actor=self.options.actor,
                fault={"fault": self.scenario.fault, "fast": self.options.fast, "page": self.options.page},
                scorecard={},
                started_at=self.now(),
            )
            session.add(row)
            session.flush()
            self.run_id = row.id

    def _save(self, status: str | None = None, finished: bool = False) -> None:
        with db.session_scope(self.incidents) as session:
            row = session.get(DrillRun, self.run_id)
            if row is None:
                return
            row.scorecard = self.scorecard()
            row.incident_id = self.incident_id
            row.fault = {**(row.fault or {}), **self.fault_info}
            if status:
                row.status = status
            if self.steps["cleanup"].status != "pending" and row.fault_reverted_at is None:
                row.fault_reverted_at = self.steps["cleanup"].at
            if finished:
                row.finished_at = self.now()

    # --- notifications: stand-ins instead of real people ------------------------------------------------------

    def _stand_in_roster(self) -> None:
        from coffee_scraper.incidents.notify import config as notify_config
        from coffee_scraper.incidents.oncall import ROLE_TITLES, ROLES, Person, Roster

        prev = notify_config.current()
        self._prev_notify = prev
        if self.options.page:
            return
        people = {
            f"drill-{r}": Person(f"drill-{r}", f"Drill stand-in for {ROLE_TITLES[r]}", slack=f"@drill-{r}")
            for r in ROLES
        }
        roster = Roster(people=people, roles={r: f"drill-{r}" for r in ROLES}, source="drill stand-ins")
        notify_config.configure(prev.settings, roster)

    def _restore_notify(self) -> None:
        from coffee_scraper.incidents.notify import config as notify_config

        prev = self._prev_notify
        if prev is None:
            return
        if prev.roster.source:
            notify_config.configure(prev.settings)
        else:
            notify_config.configure(prev.settings, prev.roster)

    # --- faults ---------------------------------------------------------------------------------------------------

    def _inject(self) -> None:
        name = self.scenario.name
        if name in ("db-outage", "storage-errors"):
            fault = DatabaseFault(
                self.settings.database_url,
                refuse=name == "db-outage",
                write_failure=0.6 if name == "storage-errors" else 0.0,
                exempt=self.exempt_bind,
            )
            if name == "db-outage":
                for engine in remediation.registered_engines().values():
                    engine.dispose()  # pooled connections go too: the outage starts now
            fault.install()
            self._revert.append(fault.remove)
            self.fault_info = {"refuse_connections": fault.refuse, "write_failure_share": fault.write_failure}
            if name == "storage-errors":
                self._start_writes(fault)
        elif name in ("roaster-5xx", "roaster-429"):
            self._drill_shop(429 if name == "roaster-429" else 503)
        elif name == "disk":
            self._threshold_disk()
        elif name == "memory":
            self._memory_pressure()
        elif name == "channel-down":
            self._channel_down()

    def _start_writes(self, fault: DatabaseFault) -> None:
        """Real write transactions on the catalog (counted as storage operations), every tick/4 seconds."""

        def loop() -> None:
            while not self._workload_stop.is_set():
                with (
                    contextlib.suppress(Exception),
                    instrument.storage_operation("drill_write"),
                    db.session_scope(self.catalog) as session,
                ):
                    session.execute(update(Roaster).where(Roaster.id == -1).values(paused_reason=None))
                self._workload_stop.wait(max(0.05, self.tick_s / 4))

        self._workload = threading.Thread(target=loop, daemon=True, name="drill-writes")
        self._workload.start()

        def stop() -> None:
            self._workload_stop.set()
            if self._workload is not None:
                self._workload.join(timeout=5)
            self.fault_info.update(writes=fault.writes, writes_failed=fault.failed)

        self._teardown.append(stop)

    def _drill_shop(self, status: int) -> None:
        from coffee_scraper.catalog import service as catalog_service
        from coffee_scraper.demo.server import DemoServer, DemoShop, Fault

        def fault(prefix: str) -> Fault:  # robots.txt stays fine: the shop is up, its catalog answers fail
            if status == 429:
                return Fault("retry_after", path_prefix=prefix, retry_after="1", times=-1)
            return Fault("status", path_prefix=prefix, status=status, times=-1)

        shop = DemoShop("drill", "shopify", [], faults=[fault("/meta"), fault("/products")])
        server = DemoServer([shop]).start()
        name = f"drill-{self.scenario.name}-{self.run_id}"
        with db.session_scope(self.catalog) as session:
            catalog_service.add_roaster(session, name, server.url("drill"), platform="shopify", currency="INR")
        self.fault_info = {"roaster": name, "shop": server.url("drill"), "status": status}
        self._drill_roaster = name
        self._drill_server = server

        def stop() -> None:
            with db.session_scope(self.catalog) as session:
                session.execute(
                    update(Roaster).where(Roaster.name == name).values(active=False, paused_reason="drill finished")
                )
                roaster = session.scalar(select(Roaster).where(Roaster.name == name))
                if roaster is not None:
                    session.delete(roaster)
            server.stop()

        self._revert.append(lambda: server.clear_faults("drill"))
        self._teardown.append(stop)

    def _run_drill_roaster(self) -> None:
        """One run of the drill roaster with quick politeness (the shop is local): real fetches, real breaker."""
        from coffee_scraper.pipeline.run import run_many

        s = self.settings.model_copy(
            update={
                "allow_private_addresses": True,
                "request_delay_s": 0.01,
                "request_jitter_s": 0.0,
                "max_attempts": 1,
                "backoff_base_s": 0.01,
                "breaker_failure_threshold": 2,
                "read_timeout_s": 5.0,
            }
        )
        with contextlib.suppress(Exception):
            asyncio.run(run_many([self._drill_roaster], "full", settings=s, factory=self.catalog))

    def _threshold_disk(self) -> None:
        from coffee_scraper.incidents import measure as ms
        from coffee_scraper.observability.system import watched_paths

        paths = list(self.settings.watchdog_disk_paths) or watched_paths(self.settings)
        usage = max((d.ratio for d in ms.read_disks(paths) if d.ratio is not None), default=0.0)
        threshold = max(0.0, usage - 0.01)
        self.alert_settings = self.alert_settings.model_copy(
            update={"disk_critical_ratio": threshold, "disk_warning_ratio": max(0.0, threshold - 0.01)}
        )
        self.rules = self._rules()
        self.fault_info = {"paths": paths, "measured_usage": round(usage, 4), "critical_threshold": round(threshold, 4)}

        def stop() -> None:
            self.alert_settings = AlertSettings()
            self.rules = self._rules()

        self._revert.append(stop)

    def _memory_pressure(self) -> None:
        vm = psutil.virtual_memory()
        size = int(min(256 * 1024 * 1024, vm.total * 0.02))
        block = bytearray(size)
        for i in range(0, size, 4096):  # touch every page: real resident memory
            block[i] = 1
        vm_after = psutil.virtual_memory()
        usage = 1.0 - vm_after.available / vm_after.total
        threshold = max(0.0, usage - 0.005)
        self.alert_settings = self.alert_settings.model_copy(
            update={"memory_pressure_ratio": threshold, "memory_high_ratio": 0.999, "memory_exhaustion_ratio": 0.9999}
        )
        self.rules = self._rules()
        self.fault_info = {
            "held_bytes": size,
            "measured_usage": round(usage, 4),
            "pressure_threshold": round(threshold, 4),
        }
        self._held = block

        def stop() -> None:
            self._held = bytearray()
            self.alert_settings = AlertSettings()
            self.rules = self._rules()

        self._revert.append(stop)

    def _channel_down(self) -> None:
        """Point Slack at a closed local port (real connection failures) and send drill messages through it."""
        import socket

        from pydantic import SecretStr

        from coffee_scraper.incidents.notify import config as notify_config

        with socket.socket() as sock:  # a port that was free a moment ago and is closed now
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        cfg = notify_config.current()
        broken = cfg.settings.model_copy(update={"slack_webhook_url": SecretStr(f"http://127.0.0.1:{port}/drill")})
        notify_config.configure(broken, cfg.roster)
        self.fault_info = {"slack_webhook": f"http://127.0.0.1:{port}/drill (closed)"}
        self._channel_port = port

        def stop() -> None:
            from coffee_scraper.incidents.notify.models import NotificationOutbox

            with db.session_scope(self.incidents) as session:  # failed drill messages are never retried elsewhere
                session.execute(
                    update(NotificationOutbox)
                    .where(NotificationOutbox.kind == "drill", NotificationOutbox.status.not_in(("sent", "dead")))
                    .values(status="dead", last_error="drill: channel-down fault reverted")
                )
            notify_config.configure(cfg.settings, cfg.roster)  # the real channel again (stand-ins stay until the end)
            self._send_drill_message("🧪 Drill message (channel-down drill): delivery restored")

        self._revert.append(stop)

    def _send_drill_message(self, text: str = "🧪 Drill message (channel-down drill)") -> None:
        from coffee_scraper.incidents.notify import config as notify_config
        from coffee_scraper.incidents.notify.outbox import enqueue
        from coffee_scraper.incidents.templates import Message, render_slack

        s = notify_config.current().settings
        msg = Message("reminder", "DRILL", text, (("Drill", str(self.run_id)),))
        with db.session_scope(self.incidents) as session:
            enqueue(
                session,
                incident_id=None,
                event_id=None,
                channel="slack",
                target=s.slack_channel,
                kind="drill",
                payload=render_slack(msg, s.slack_channel) | {"template": "reminder"},
                now=self.now(),
            )

    # --- the run ------------------------------------------------------------------------------------------------

    def _step(
        self,
        name: str,
        status: str,
        detail: str = "",
        *,
        elapsed: float | None = None,
        target: float | None = None,
        since: str = "",
    ) -> None:
        self.steps[name] = Step(
            name, status, detail, self.now(), None if elapsed is None else round(elapsed, 2), target, since
        )
        log.info("drill_step", drill=self.run_id, step=name, status=status, detail=detail)
        with contextlib.suppress(Exception):
            self._save()

    def _tick(self, watchdog: Any) -> None:
        if self.scenario.name in ("roaster-5xx", "roaster-429") and self.steps["cleanup"].status == "pending":
            self._run_drill_roaster()
        if self.scenario.name == "channel-down" and self.steps["cleanup"].status == "pending":
            with contextlib.suppress(Exception):
                self._send_drill_message()
        watchdog.rules = tuple(self.rules)
        watchdog.alert_settings = self.alert_settings
        evaluation = watchdog.evaluate()
        watchdog.emit(evaluation)
        if self.drive is not None:
            with contextlib.suppress(Exception):
                self.drive()
        if self.options.run_loops:
            with contextlib.suppress(Exception):
                self.loop.run_once()

    def _wait(self, watchdog: Any, check: Callable[[], Any], timeout_s: float) -> Any:
        deadline = time.monotonic() + timeout_s
        while not self.stop.is_set():
            found = check()
            if found:
                return found
            if time.monotonic() >= deadline:
                return None
            self._tick(watchdog)
            self.stop.wait(self.tick_s)
        return None

    def _incident(self) -> Incident | None:
        with self.incidents() as session:
            if self.incident_id:
                return session.get(Incident, self.incident_id)
            return session.scalars(
                select(Incident)
                .where(
                    Incident.is_drill.is_(True),
                    Incident.rule == self.scenario.rules[0],
                    Incident.opened_at >= self._t0 - timedelta(seconds=1),
                )
                .order_by(Incident.opened_at)
            ).first()

    def _events(self, kind: str) -> list[IncidentEvent]:
        with self.incidents() as session:
            return list(
                session.scalars(
                    select(IncidentEvent)
                    .where(IncidentEvent.incident_id == self.incident_id, IncidentEvent.kind == kind)
                    .order_by(IncidentEvent.id)
                )
            )

    def _seconds(self, a: datetime, b: datetime) -> float:
        return (b - a).total_seconds()

    def run(self) -> dict[str, Any]:
        """Run the drill to the end (or ``timeout_s`` per step, or ``stop``); returns the scorecard."""
        if self.run_id is None:
            self.record_start()
        assert self.run_id is not None
        self._t0 = self.now()
        cooldown = self.options.cooldown_s
        if cooldown is None:
            from coffee_scraper.incidents.watchdog import parse_duration

            config = load_alert_config(self.alert_settings)
            rules = [config.rule(r) for r in (*self.scenario.rules, *self.scenario.collateral)]
            cooldown = max((parse_duration(r.window) + parse_duration(r.for_)).total_seconds() for r in rules)
        _set_marking(
            self.token,
            frozenset((*self.scenario.rules, *self.scenario.collateral)),
            self.options.timeout_s * 8 + cooldown,
        )
        queue_was_paused = self._queue_paused()
        status = "failed"
        try:
            self._stand_in_roster()
            self._inject()
            self._step(
                "fault", "pass", f"{self.scenario.fault}; " + ", ".join(f"{k}={v}" for k, v in self.fault_info.items())
            )
            watchdog = self._watchdog()
            try:
                status = self._respond(watchdog, queue_was_paused)
            finally:
                watchdog.close()
        except Exception as exc:
            log.exception("drill_failed", drill=self.run_id)
            self._step("cleanup", "fail", f"the drill itself failed: {type(exc).__name__}: {exc}")
        finally:
            self._cleanup(queue_was_paused)
            _set_marking(self.token, frozenset((*self.scenario.rules, *self.scenario.collateral)), cooldown)
            passed = all(s.status in ("pass", "skip") for s in self.steps.values())
            final = "aborted" if self.stop.is_set() else ("passed" if passed and status != "failed" else "failed")
            self._save(final, finished=True)
            self._on_timeline()
            for engine in self._own_engines:
                engine.dispose()
        return self.scorecard()

    def _queue_paused(self) -> bool | None:
        from coffee_scraper.jobs import service as jobs

        try:
            with self.catalog() as session:
                return jobs.queue_paused(session)[0]
        except Exception:
            return None

    def _respond(self, watchdog: Any, queue_was_paused: bool | None) -> str:
        from coffee_scraper.incidents.watchdog import parse_duration

        sc, timeout = self.scenario, self.options.timeout_s
        rule = self.rules[0]
        detect_target = parse_duration(rule.for_).total_seconds() + 2 * self.tick_s + 30
        incident = self._wait(watchdog, self._incident, timeout)
        if incident is None:
            seen = "; ".join(
                f"{r['rule']} {r['state']}: {r['value_text']} (threshold {r['threshold']}) {r.get('detail') or ''}"
                for r in watchdog.status_rows()
                if r["rule"] == rule.id
            )
            self._step(
                "detection",
                "fail",
                f"no drill incident for {rule.id} within {timeout:g} s; the watchdog saw: {seen or 'nothing'}",
                target=detect_target,
            )
            return "failed"
        self.incident_id = incident.id
        elapsed = self._seconds(self._t0, incident.opened_at)
        ok = elapsed <= detect_target
        self._step(
            "detection",
            "pass" if ok else "fail",
            f"{incident.id} opened by {incident.source} for {rule.id}: " + _timed(elapsed, detect_target),
            elapsed=elapsed,
            target=detect_target,
            since="fault",
        )
        self._step(
            "classification",
            "pass" if incident.severity == sc.severity else "fail",
            f"{incident.severity} ({incident.category}); expected {sc.severity}",
        )
        with flows.write_lock(self.exempt_bind), db.session_scope(self.incidents) as session:
            flows.ack(session, incident.id, actor=DRILL_ACTOR, now=self.now(), message="acknowledged by the drill")
        self._check_notification(watchdog, incident)
        self._check_escalation(incident)
        self._check_diagnostics(watchdog, incident)
        if sc.name not in REMEDIATE_AFTER_REVERT:
            self._remediate(incident)
        revert_at = self.now()
        self._revert_fault()
        self._step("cleanup", "pass", "fault reverted", since="fault")
        if sc.name in ("roaster-5xx", "roaster-429"):
            self._run_drill_roaster()  # the shop answers again: a run closes the circuit
        if sc.name in REMEDIATE_AFTER_REVERT:
            self._remediate(incident)
        recover_target = parse_duration(rule.window).total_seconds() + 2 * self.tick_s + 30

        def recovered() -> Incident | None:
            current = self._incident()
            if current is None:
                return None
            if current.resolve_pending_since is not None or current.status == "resolved":
                return current
            return None

        current = self._wait(watchdog, recovered, timeout)
        if current is None:
            self._step(
                "recovery",
                "fail",
                f"the alert did not resolve within {timeout:g} s of reverting the fault",
                target=recover_target,
            )
        else:
            at = current.resolve_pending_since or current.resolved_at or self.now()
            elapsed = self._seconds(revert_at, at)
            self._step(
                "recovery",
                "pass" if elapsed <= recover_target else "fail",
                "every alert resolved: " + _timed(elapsed, recover_target),
                elapsed=elapsed,
                target=recover_target,
                since="revert",
            )
        self._resolve(incident)
        self._check_followup(watchdog)
        return "done"

    def _revert_fault(self) -> None:
        while self._revert:
            fn = self._revert.pop()
            try:
                fn()
            except Exception as exc:
                log.warning("drill_revert_failed", drill=self.run_id, error=f"{type(exc).__name__}: {exc}")

    def _check_notification(self, watchdog: Any, incident: Incident) -> None:
        from coffee_scraper.incidents.notify import config as notify_config

        channels = [c for c, on in notify_config.current().channels().items() if on]
        runner_s = getattr(self.settings, "incident_runner_interval_s", 2.0)
        target = 2 * runner_s + 60
        if self.scenario.name == "channel-down":
            failed = self._wait(watchdog, lambda: self._failed_deliveries(), self.options.timeout_s)
            self._step(
                "notification",
                "pass" if failed else "fail",
                f"{failed or 0} failed Slack deliveries recorded (metric, outbox) and the P2 opened"
                if failed
                else "no failed delivery was recorded",
                since="detection",
            )
            return
        if not channels:
            self._step(
                "notification",
                "fail",
                "no notification channel is configured: nobody would be told "
                "(set COFFEE_SCRAPER_SLACK_WEBHOOK_URL, GITHUB_REPO/TOKEN or SMTP_HOST)",
            )
            return
        sent = self._wait(watchdog, lambda: self._events("notification_sent"), min(self.options.timeout_s, target * 3))
        if not sent:
            self._step(
                "notification",
                "fail",
                f"nothing delivered ({', '.join(channels)}) within {target * 3:g} s",
                target=target,
            )
            return
        elapsed = self._seconds(incident.opened_at, sent[0].at)
        self._step(
            "notification",
            "pass" if elapsed <= target else "fail",
            f"{sent[0].message}: " + _timed(elapsed, target),
            elapsed=elapsed,
            target=target,
            since="detection",
        )

    def _failed_deliveries(self) -> int:
        from coffee_scraper.incidents.notify.models import NotificationOutbox

        with self.incidents() as session:
            rows = session.scalars(select(NotificationOutbox).where(NotificationOutbox.kind == "drill"))
            return sum(1 for r in rows if (r.attempts or 0) > 0 and r.status != "sent")

    def _check_escalation(self, incident: Incident) -> None:
        from coffee_scraper.incidents.notify import config as notify_config
        from coffee_scraper.incidents.notify.models import NotificationOutbox

        config = load_alert_config(self.alert_settings)
        policy = config.severities[incident.severity]  # type: ignore[index]
        cfg = notify_config.current()
        if incident.severity == "P0":
            manager = cfg.roster.who("engineering_manager", self.now())
            if manager is None:
                self._step("escalation", "fail", "P0 goes to the Engineering Manager at once, but the roster has none")
                return
            with self.incidents() as session:
                rows = list(
                    session.scalars(
                        select(NotificationOutbox).where(
                            NotificationOutbox.incident_id == incident.id, NotificationOutbox.kind == "opened"
                        )
                    )
                )
            reached = [
                r.channel
                for r in rows
                if manager.handle in str(r.payload.get("text", "")) or (manager.email and r.target == manager.email)
            ]
            real = self._prev_notify.roster.who("engineering_manager", self.now()) if self._prev_notify else None
            who = f"{manager.handle}" + (
                "" if self.options.page else f" (stand-in for {real.handle if real else 'nobody'})"
            )
            if not rows:
                self._step("escalation", "fail", f"{policy.escalation}: no opening message was queued")
            elif real is None and not self.options.page:
                self._step("escalation", "fail", f"{policy.escalation}: the real roster has no engineering_manager")
            else:
                self._step(
                    "escalation",
                    "pass" if reached else "fail",
                    f"{policy.escalation}: {who} named in the opening {', '.join(reached) or 'messages: no'} message",
                    elapsed=0.0,
                    target=policy.response_time.total_seconds(),
                    since="detection",
                )
            return
        if not policy.time_escalation:
            self._step("escalation", "skip", f"{incident.severity}: {policy.escalation} (no time-based escalation)")
            return
        current = self._incident()
        due = current.next_escalation_at if current else None
        expected = incident.opened_at + config.escalation_levels[1].starts_after
        ok = due is not None and abs((due - expected).total_seconds()) < 1
        self._step(
            "escalation",
            "pass" if ok else "fail",
            f"{policy.escalation}; level 2 ({config.escalation_levels[1].role}) due {due:%H:%M:%S} UTC"
            if due
            else f"{policy.escalation}; no escalation timer set",
        )

    def _check_diagnostics(self, watchdog: Any, incident: Incident) -> None:
        target = max(self.settings.recovery_interval_s, self.tick_s) + self.settings.diagnostics_timeout_s + 30

        def found() -> list[IncidentEvent]:
            return [e for e in self._events("diagnostic") if (e.data or {}).get("type") == "diagnostics"]

        entries = self._wait(watchdog, found, self.options.timeout_s)
        if not entries:
            self._step("diagnostics", "fail", "no diagnostics on the incident's timeline", target=target)
            return
        elapsed = self._seconds(incident.opened_at, entries[0].at)
        self._step(
            "diagnostics",
            "pass" if elapsed <= target else "fail",
            f"{entries[0].message}: " + _timed(elapsed, target),
            elapsed=elapsed,
            target=target,
            since="detection",
        )

    def _remediate(self, incident: Incident) -> None:
        action = self.scenario.remediation
        automatic = self._automatic_runs()
        auto_text = ("automatic: " + ", ".join(f"{r.action} {r.status}" for r in automatic) + "; ") if automatic else ""
        if action is None:
            self._step("remediation", "skip", auto_text + "no remediation for this scenario")
            return
        params: dict[str, Any] = {"reason": f"drill {self.run_id}"}
        target = None
        if action == "close-circuit" and self.scenario.name == "channel-down":
            params["channel"] = "slack"
        elif action == "close-circuit":
            target = getattr(self, "_drill_roaster", None)
        dry = action == "clean-temp"  # the drill never removes files
        record = None
        for _ in range(5):  # storage errors: the write may be among the failing ones
            record = remediation.remediate(
                action,
                settings=self.settings,
                catalog_factory=self.catalog,
                incidents_factory=self.incidents,
                target=target,
                dry_run=dry,
                actor=DRILL_ACTOR,
                incident_id=incident.id,
                now=self.now,
                params=params,
            )
            if record.status != "failed":
                break
        assert record is not None
        ok = record.status in ("ok", "planned", "skipped")
        self._step(
            "remediation",
            "pass" if ok else "fail",
            auto_text + f"{action}{' (dry run)' if dry else ''}: {record.status} — {record.summary}",
        )

    def _automatic_runs(self) -> list[RemediationRun]:
        with self.incidents() as session:
            return list(
                session.scalars(
                    select(RemediationRun).where(
                        RemediationRun.incident_id == self.incident_id, RemediationRun.automatic.is_(True)
                    )
                )
            )

    def _resolve(self, incident: Incident) -> None:
        current = self._incident()
        if current is not None and current.status != "resolved":
            with flows.write_lock(self.exempt_bind), db.session_scope(self.incidents) as session:
                flows.resolve(
                    session,
                    incident.id,
                    actor=DRILL_ACTOR,
                    now=self.now(),
                    root_cause=f"Drill {self.scenario.name}: {self.scenario.fault}",
                    resolution="the drill reverted the fault",
                    prevention="none needed: a drill",
                )
        current = self._incident()
        assert current is not None and current.resolved_at is not None
        elapsed = self._seconds(current.opened_at, current.resolved_at)
        target = followup.RESOLUTION_TARGET.total_seconds()
        self._step(
            "resolution",
            "pass" if elapsed <= target else "fail",
            f"resolved by {DRILL_ACTOR}: " + _timed(elapsed, target),
            elapsed=elapsed,
            target=target,
            since="detection",
        )

    def _check_followup(self, watchdog: Any) -> None:
        current = self._incident()
        assert current is not None and current.resolved_at is not None
        resolved_at = current.resolved_at
        target = max(self.settings.recovery_interval_s, self.tick_s) + 30

        def items() -> int:
            with self.incidents() as session:
                return len(followup.checklist(session, current.id))

        count = self._wait(watchdog, items, self.options.timeout_s)
        if not count:
            self._step("checklists", "fail", "no post-incident checklists were created", target=target)
        else:
            with self.incidents() as session:
                first = min(
                    i.created_at
                    for i in session.scalars(select(ChecklistItem).where(ChecklistItem.incident_id == current.id))
                )
            elapsed = self._seconds(resolved_at, first)
            self._step(
                "checklists",
                "pass" if elapsed <= target else "fail",
                f"{count} items (immediate due +1 h): " + _timed(elapsed, target),
                elapsed=elapsed,
                target=target,
                since="resolution",
            )

        def drafted() -> Postmortem | None:
            with self.incidents() as session:
                pm = session.get(Postmortem, current.id)
                return pm if pm is not None and (pm.markdown or not pm.required) else None

        pm = self._wait(watchdog, drafted, self.options.timeout_s)
        if pm is None:
            self._step("postmortem", "fail", "no postmortem decision/draft", target=target)
        elif not pm.required:
            self._step("postmortem", "pass", "not required by the criteria (no draft needed)")
        else:
            assert pm.drafted_at is not None
            elapsed = self._seconds(resolved_at, pm.drafted_at)
            self._step(
                "postmortem",
                "pass" if elapsed <= target else "fail",
                f"draft ready ({'; '.join(pm.reasons)}): " + _timed(elapsed, target),
                elapsed=elapsed,
                target=target,
                since="resolution",
            )

    def _cleanup(self, queue_was_paused: bool | None) -> None:
        self._revert_fault()
        while self._teardown:
            fn = self._teardown.pop()
            try:
                fn()
            except Exception as exc:
                log.warning("drill_teardown_failed", drill=self.run_id, error=f"{type(exc).__name__}: {exc}")
        if self.steps["cleanup"].status == "pending":
            self._step("cleanup", "pass", "fault reverted")
        if queue_was_paused is False and self._queue_paused():
            with contextlib.suppress(Exception):
                remediation.remediate(
                    "resume-queue",
                    settings=self.settings,
                    catalog_factory=self.catalog,
                    incidents_factory=self.incidents,
                    actor=DRILL_ACTOR,
                    incident_id=self.incident_id,
                    now=self.now,
                )
        self._restore_notify()
        for name, step in self.steps.items():
            if step.status == "pending":
                self.steps[name] = Step(
                    name,
                    "fail" if not self.stop.is_set() else "skip",
                    "not reached" if not self.stop.is_set() else "aborted",
                )
        with contextlib.suppress(Exception):
            import shutil

            shutil.rmtree(self._tmp, ignore_errors=True)

    def _on_timeline(self) -> None:
        if not self.incident_id:
            return
        card = self.scorecard()
        with (
            contextlib.suppress(Exception),
            flows.write_lock(self.exempt_bind),
            db.session_scope(self.incidents) as session,
        ):
            incident = session.get(Incident, self.incident_id)
            if incident is not None:
                from coffee_scraper.incidents import events

                events.record(
                    session,
                    incident,
                    "comment",
                    now=self.now(),
                    actor=DRILL_ACTOR,
                    message=f"drill {self.run_id} ({self.scenario.name}) {card['status']}: "
                    + ", ".join(f"{s['name']} {s['status']}" for s in card["steps"]),
                    data={"type": "drill_scorecard", **card},
                )

    def scorecard(self) -> dict[str, Any]:
        steps = [self.steps[n].to_dict() for n in STEP_ORDER]
        passed = all(s["status"] in ("pass", "skip") for s in steps)
        status = "running" if any(s["status"] == "pending" for s in steps) else ("passed" if passed else "failed")
        return {
            "drill_id": self.run_id,
            "scenario": self.scenario.name,
            "expected": self.scenario.expected,
            "fault": self.scenario.fault,
            "fast": self.options.fast,
            "page": self.options.page,
            "incident_id": self.incident_id,
            "status": status,
            "passed": passed,
            "steps": steps,
        }


# --- running drills in the background of serve ------------------------------------------------------------------


class DrillService:
    """At most one drill at a time, in a background thread of this process (``serve``)."""

    def __init__(
        self,
        settings: Settings,
        *,
        now: Callable[[], datetime] | None = None,
        drive: Callable[[], object] | None = None,
    ) -> None:
        self.settings = settings
        self.now = now
        self.drive = drive
        self._lock = threading.Lock()
        self._current: Drill | None = None
        self._thread: threading.Thread | None = None

    def start(self, scenario: str, options: DrillOptions) -> int:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                raise DrillError(
                    f"drill {self._current.run_id if self._current else '?'} is still running; wait for "
                    "it or abort it first"
                )
            drill = Drill(scenario, self.settings, options=options, now=self.now, drive=self.drive)
            drill.record_start()  # the caller gets the run's id at once
            self._current = drill
            self._thread = threading.Thread(target=drill.run, daemon=True, name=f"drill-{drill.run_id}")
            self._thread.start()
            assert drill.run_id is not None
            return drill.run_id

    def abort(self) -> bool:
        with self._lock:
            if self._current is None or self._thread is None or not self._thread.is_alive():
                return False
            self._current.stop.set()
            return True

    def running(self) -> int | None:
        with self._lock:
            if self._current is not None and self._thread is not None and self._thread.is_alive():
                return self._current.run_id
            return None

    def close(self) -> None:
        self.abort()
        if self._thread is not None:
            self._thread.join(timeout=30)


def run_rows(session: Session, limit: int = 20) -> list[dict[str, Any]]:
    return [drill_dict(r) for r in session.scalars(select(DrillRun).order_by(DrillRun.id.desc()).limit(limit))]


def drill_dict(row: DrillRun) -> dict[str, Any]:
    return {
        "id": row.id,
        "scenario": row.scenario,
        "status": row.status,
        "actor": row.actor,
        "incident_id": row.incident_id,
        "fault": row.fault,
        "scorecard": row.scorecard,
        "started_at": row.started_at.isoformat(),
        "fault_reverted_at": row.fault_reverted_at.isoformat() if row.fault_reverted_at else None,
        "finished_at": row.finished_at.isoformat() if row.finished_at else None,
    }
