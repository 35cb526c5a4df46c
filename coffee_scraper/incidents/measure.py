"""Live measurements for the built-in watchdog: metric ring buffer, DB probes, host (psutil), catalog, Prometheus.

Lives here: everything the watchdog *reads* — each function measures one thing and returns plain data
(``Measurements`` and its parts); nothing here decides whether an alert fires (``incidents/watchdog.py`` does,
with the thresholds of ``incidents/alert_config.py``).
Does not live here: rule evaluation, alert events, the loop.

Windowed metrics and Prometheus. ``MetricBuffer`` keeps one sample of the in-process metric registry (or of
every process's values in multi-process mode, ``PROMETHEUS_MULTIPROC_DIR``) per evaluation, stamped with the
watchdog's clock. ``increase(key, window)`` is the counter's rise between the newest sample at or before
``now - window`` (or the oldest sample, when the buffer is younger than the window) and the newest sample, with
Prometheus's counter-reset rule (a drop means the counter restarted from 0). Prometheus computes the same
difference from the samples inside the range and extrapolates it to the range's edges; a *ratio* of two
increases over the same window (every error-share rule) is therefore the same number, and a *count* differs by at
most one evaluation interval's worth. ``histogram_quantile`` is Prometheus's algorithm (linear interpolation
inside the bucket, the highest finite bound when the rank falls into +Inf). With fewer than two samples a
windowed value has no data, exactly like ``rate()`` over a single point.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import Engine, and_, case, func, or_, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from coffee_scraper.catalog import db
from coffee_scraper.catalog.models import Coffee, Price, Roaster, ScrapeRun, Variant
from coffee_scraper.observability import metrics as m

# --- the metric ring buffer ---------------------------------------------------------------------------------

# sample name -> (buffer key prefix, label names that form the rest of the key)
_SAMPLED: dict[str, tuple[str, tuple[str, ...]]] = {
    f"{m.PREFIX}_storage_operations_total": ("storage", ("operation", "result")),
    f"{m.PREFIX}_fetch_requests_total": ("fetch", ("result",)),
    f"{m.PREFIX}_fetch_duration_seconds_bucket": ("fetch_le", ("le",)),
    f"{m.PREFIX}_products_processed_total": ("processed", ("outcome",)),
    f"{m.PREFIX}_notifications_total": ("notify", ("result",)),
}
_IN_PROCESS = (m.STORAGE_OPERATIONS, m.FETCH_REQUESTS, m.FETCH_DURATION, m.PRODUCTS_PROCESSED, m.NOTIFICATIONS)


def read_metric_values() -> dict[str, float]:
    """The counters the rules need, summed over the labels the rules do not look at (e.g. per roaster).

    Keys: ``storage:<operation>:<result>``, ``fetch:<result>``, ``fetch_le:<le>``, ``processed:<outcome>``,
    ``notify:<result>``. In multi-process mode the values of every process are read from the shared directory.
    """
    multiproc_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    families: Iterable[Any]
    if multiproc_dir:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=multiproc_dir)
        families = registry.collect()
    else:
        families = (family for metric in _IN_PROCESS for family in metric.collect())
    values: dict[str, float] = {}
    for family in families:
        for sample in family.samples:
            spec = _SAMPLED.get(sample.name)
            if spec is None:
                continue
            prefix, label_names = spec
            key = ":".join([prefix, *(str(sample.labels.get(name, "")) for name in label_names)])
            values[key] = values.get(key, 0.0) + float(sample.value)
    return values


def read_cpu_times() -> tuple[float, float]:
    """Host CPU seconds (busy, total) summed over all CPUs since boot (psutil)."""
    t = psutil.cpu_times()
    total = float(sum(t))
    idle = float(t.idle + getattr(t, "iowait", 0.0))
    return total - idle, total


def read_oom_kills() -> float | None:
    """The kernel's count of OOM kills since boot (``oom_kill`` in /proc/vmstat; Linux 4.13+), None elsewhere."""
    try:
        with open("/proc/vmstat", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("oom_kill "):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


@dataclass(frozen=True)
class MetricSample:
    at: datetime
    values: dict[str, float]


class MetricBuffer:
    """Samples of counters stamped with the watchdog's clock; windowed increases as Prometheus computes them."""

    def __init__(self, keep: timedelta) -> None:
        self.keep = keep
        self._samples: deque[MetricSample] = deque()
        self._lock = threading.Lock()

    def add(self, at: datetime, values: dict[str, float]) -> None:
        with self._lock:
            if self._samples and at < self._samples[-1].at:
                self._samples.clear()  # the clock went backwards (tests, restored state): start over
            if self._samples and at == self._samples[-1].at:
                self._samples.pop()  # one sample per instant: the newest reading wins
            self._samples.append(MetricSample(at, dict(values)))
            # keep one sample older than the longest window: it is the baseline of that window
            while len(self._samples) > 2 and self._samples[1].at <= at - self.keep:
                self._samples.popleft()

    def __len__(self) -> int:
        return len(self._samples)

    def samples(self) -> list[MetricSample]:
        with self._lock:
            return list(self._samples)

    def _span(self, window: timedelta, since: datetime | None = None) -> list[MetricSample]:
        """Samples from the baseline of ``window`` (newest at/before now-window, else the oldest) to the newest."""
        samples = self.samples()
        if len(samples) < 2:
            return []
        start = samples[-1].at - window
        if since is not None and since > start:
            start = since
        first = 0
        for i, sample in enumerate(samples):
            if sample.at <= start:
                first = i
            else:
                break
        span = samples[first:]
        return span if len(span) >= 2 else []

    def increase(
        self, keys: Callable[[str], bool], window: timedelta, *, since: datetime | None = None
    ) -> float | None:
        """Rise of the sum of matching counters over ``window``; None without two samples (no data)."""
        span = self._span(window, since)
        if not span:
            return None
        return sum(self._key_increase(span, key) for key in self._keys(span, keys))

    def increases_by_interval(self, keys: Callable[[str], bool], window: timedelta) -> list[tuple[datetime, float]]:
        """(end of interval, rise of the matching counters in it) for each sampling interval in ``window``."""
        span = self._span(window)
        selected = self._keys(span, keys)
        out: list[tuple[datetime, float]] = []
        for before, after in itertools.pairwise(span):
            out.append((after.at, sum(_rise(before.values.get(k, 0.0), after.values.get(k, 0.0)) for k in selected)))
        return out

    def bucket_increases(self, prefix: str, window: timedelta) -> dict[float, float] | None:
        """Per ``le`` bound: the histogram bucket's increase over the window (None without two samples)."""
        span = self._span(window)
        if not span:
            return None
        out: dict[float, float] = {}
        for key in self._keys(span, lambda k: k.startswith(prefix + ":")):
            le = key.split(":", 1)[1]
            out[math.inf if le == "+Inf" else float(le)] = self._key_increase(span, key)
        return out

    @staticmethod
    def _keys(span: list[MetricSample], keys: Callable[[str], bool]) -> set[str]:
        return {k for sample in span for k in sample.values if keys(k)}

    @staticmethod
    def _key_increase(span: list[MetricSample], key: str) -> float:
        return sum(
            _rise(before.values.get(key, 0.0), after.values.get(key, 0.0)) for before, after in itertools.pairwise(span)
        )


def _rise(before: float, after: float) -> float:
    """Prometheus's counter rule: a drop is a reset, so the whole new value is the rise."""
    return after - before if after >= before else after


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus's ``histogram_quantile`` over cumulative bucket counts (keys: upper bounds, +Inf included)."""
    if not buckets or math.inf not in buckets:
        return None
    bounds = sorted(buckets)
    total = buckets[math.inf]
    if total <= 0:
        return None
    rank = q * total
    previous_bound, previous_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == math.inf:
                finite = [b for b in bounds if b != math.inf]
                return finite[-1] if finite else None
            if bound == bounds[0] and bound <= 0:
                return bound
            in_bucket = count - previous_count
            if in_bucket <= 0:
                return bound
            return previous_bound + (bound - previous_bound) * (rank - previous_count) / in_bucket
        previous_bound, previous_count = bound, count
    return None


# --- probes of the catalog database -----------------------------------------------------------------------


@dataclass(frozen=True)
class DatabaseProbe:
    """One ``SELECT 1`` (and schema revision check) against a database, within a deadline."""

    ok: bool
    latency_ms: float | None = None
    error: str | None = None
    migrations_current: bool | None = None  # None: not checked (database unreachable)
    revision: str | None = None
    head: str | None = None


def probe_engine(url: str, timeout_s: float) -> Engine:
    """An engine for probes: a fresh connection per probe (no pool to hide a dead server), short timeouts."""
    url = db.normalize_url(url)
    kwargs: dict[str, Any] = {"poolclass": NullPool}
    if make_url(url).get_backend_name() == "postgresql":
        kwargs["connect_args"] = {
            "connect_timeout": max(1, math.ceil(timeout_s)),
            "options": f"-c statement_timeout={int(timeout_s * 1000)}",
        }
    else:
        kwargs["connect_args"] = {"timeout": timeout_s}
    return db.make_engine(url, **kwargs)


def _first_line(exc: BaseException) -> str:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {message}"[:300]


def run_with_deadline(fn: Callable[[], Any], deadline_s: float) -> Any:
    """Run a blocking call in a daemon thread; raise TimeoutError when it does not finish in time."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True, name="watchdog-probe")
    thread.start()
    thread.join(deadline_s)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {deadline_s:g} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def probe_database(engine: Engine, timeout_s: float) -> DatabaseProbe:
    """``SELECT 1`` then the Alembic revision vs the code's head; never raises."""

    def check() -> DatabaseProbe:
        started = time.perf_counter()
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            latency = round((time.perf_counter() - started) * 1000, 2)
            from alembic.runtime.migration import MigrationContext

            revision = MigrationContext.configure(conn).get_current_revision()
        head = db.head_revision()
        return DatabaseProbe(True, latency, None, revision == head, revision, head)

    try:
        result: DatabaseProbe = run_with_deadline(check, timeout_s)
        return result
    except Exception as exc:
        return DatabaseProbe(False, error=_first_line(exc))


# --- host (psutil) --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiskReading:
    path: str
    ratio: float | None
    error: str | None = None
    used_bytes: int | None = None
    total_bytes: int | None = None


def _existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def read_disks(paths: Iterable[str]) -> list[DiskReading]:
    """Used share of the filesystem holding each path (a path not created yet is measured on its parent).

    Paths on one filesystem are measured once, under the first of them (one disk, one alert).
    """
    readings: list[DiskReading] = []
    seen_devices: set[int] = set()
    for path in dict.fromkeys(paths):
        try:
            existing = _existing(Path(path))
            device = existing.stat().st_dev
            if device in seen_devices:
                continue
            usage = psutil.disk_usage(str(existing))
        except OSError as exc:
            readings.append(DiskReading(path, None, _first_line(exc)))
            continue
        seen_devices.add(device)
        ratio = usage.used / usage.total if usage.total else 0.0
        readings.append(DiskReading(path, ratio, None, int(usage.used), int(usage.total)))
    return readings


def read_memory_ratio() -> float:
    """Share of the host's memory in use: 1 - available/total (the same number as the exported gauge)."""
    vm = psutil.virtual_memory()
    return 1.0 - vm.available / vm.total if vm.total else 0.0


# --- signals derived from the catalog database (they work across any number of workers) ----------------------


@dataclass(frozen=True)
class RoasterNulls:
    roaster: str
    last_run_id: int | None
    coffees: int
    null_share: float | None


@dataclass(frozen=True)
class CatalogSignals:
    """What the rules read from the catalog tables at one instant."""

    validation_seen: int  # products seen by runs finished in the validation window
    validation_quarantined: int
    review_seen: int  # products seen by runs finished in the review window
    review_flagged: int
    active_roasters: int
    open_circuits: int
    stale: dict[str, float]  # roaster -> seconds since its last success (only those past the limit)
    nulls: list[RoasterNulls]
    row_counts: dict[str, int]


def read_catalog(
    session: Session,
    now: datetime,
    *,
    validation_window: timedelta,
    review_window: timedelta,
    stale_after_s: float,
) -> CatalogSignals:
    """Recent run totals, open circuits, stale roasters, null-field shares and row counts (read-only)."""

    def run_totals(window: timedelta, column: Any) -> tuple[int, int]:
        row = session.execute(
            select(func.coalesce(func.sum(ScrapeRun.products_seen), 0), func.coalesce(func.sum(column), 0)).where(
                ScrapeRun.finished_at.is_not(None), ScrapeRun.finished_at > now - window
            )
        ).one()
        return int(row[0]), int(row[1])

    v_seen, v_quarantined = run_totals(validation_window, ScrapeRun.products_quarantined)
    r_seen, r_flagged = run_totals(review_window, ScrapeRun.reviews_flagged)
    active, open_circuits = session.execute(
        select(func.count(), func.coalesce(func.sum(case((Roaster.circuit_state == "open", 1), else_=0)), 0)).where(
            Roaster.active.is_(True)
        )
    ).one()
    stale: dict[str, float] = {}
    limit = now - timedelta(seconds=stale_after_s)
    for name, last_success, created in session.execute(
        select(Roaster.name, Roaster.last_success_at, Roaster.created_at).where(
            Roaster.active.is_(True),
            or_(
                and_(Roaster.last_success_at.is_not(None), Roaster.last_success_at < limit),
                and_(Roaster.last_success_at.is_(None), Roaster.created_at < limit),
            ),
        )
    ):
        stale[str(name)] = (now - (last_success or created)).total_seconds()
    last_runs: dict[int, int] = dict(
        session.execute(  # type: ignore[arg-type]
            select(ScrapeRun.roaster_id, func.max(ScrapeRun.id))
            .where(ScrapeRun.status.in_(("ok", "partial")), ScrapeRun.mode == "full")
            .group_by(ScrapeRun.roaster_id)
        ).all()
    )
    missing_field = case((or_(Coffee.roast_level.is_(None), Coffee.process.is_(None)), 1), else_=0)
    shares = {
        rid: (int(n), int(nulls or 0))
        for rid, n, nulls in session.execute(
            select(Coffee.roaster_id, func.count(), func.sum(missing_field))
            .where(Coffee.is_coffee.is_(True), Coffee.status == "active")
            .group_by(Coffee.roaster_id)
        )
    }
    nulls: list[RoasterNulls] = []
    for rid, name in session.execute(select(Roaster.id, Roaster.name).where(Roaster.active.is_(True))):
        n, missing = shares.get(rid, (0, 0))
        nulls.append(RoasterNulls(str(name), last_runs.get(rid), n, (missing / n) if n else None))
    counts = {
        "coffees": int(session.scalar(select(func.count()).select_from(Coffee)) or 0),
        "variants": int(session.scalar(select(func.count()).select_from(Variant)) or 0),
        "prices": int(session.scalar(select(func.count()).select_from(Price)) or 0),
    }
    return CatalogSignals(
        v_seen, v_quarantined, r_seen, r_flagged, int(active), int(open_circuits or 0), stale, nulls, counts
    )


# --- Prometheus (only when a Prometheus URL is configured) -----------------------------------------------------


@dataclass(frozen=True)
class PrometheusReading:
    """The app's scrape target as Prometheus sees it: success share over 30 min and whether the target exists."""

    scrape_success_ratio: float | None  # avg_over_time(up[30m]) (lowest instance); None = no series
    target_present: bool


def query_prometheus(base_url: str, job: str, timeout_s: float) -> PrometheusReading:
    """Ask Prometheus's HTTP API about ``up{job=...}``; raises on connection/HTTP errors."""
    base = base_url.rstrip("/")

    def instant(promql: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{base}/api/v1/query", params={"query": promql}, timeout=timeout_s)
        response.raise_for_status()
        body = response.json()
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus query failed: {body.get('error', body)}")
        return list(body["data"]["result"])

    selector = f'up{{job="{job}"}}'
    present = bool(instant(selector))
    ratios = [float(r["value"][1]) for r in instant(f"avg_over_time({selector}[30m])")]
    return PrometheusReading(min(ratios) if ratios else None, present)


# --- files that expose secrets or data (the closest local signal of "data exposure") ------------------------

_SECRET_KEY = re.compile(r"^\s*(?:export\s+)?COFFEE_SCRAPER_\w*(TOKEN|PASSWORD|SECRET|DSN|WEBHOOK_URL)\w*\s*=\s*\S")


@dataclass(frozen=True)
class SecurityFinding:
    path: str
    problem: str


def find_exposed_files(env_files: Iterable[Path], database_files: Iterable[Path]) -> list[SecurityFinding]:
    """An env file holding a secret readable by other users; a database file writable by other users."""
    findings: list[SecurityFinding] = []
    for path in dict.fromkeys(env_files):
        try:
            mode = path.stat().st_mode
            if not mode & (stat.S_IROTH | stat.S_IWOTH):
                continue
            holds_secret = any(_SECRET_KEY.match(line) for line in path.read_text(errors="replace").splitlines())
        except OSError:
            continue
        if holds_secret:
            findings.append(
                SecurityFinding(str(path), f"holds secrets and is readable by every local user (mode {mode & 0o777:o})")
            )
    for path in dict.fromkeys(database_files):
        try:
            mode = path.stat().st_mode
        except OSError:
            continue
        if mode & stat.S_IWOTH:
            findings.append(
                SecurityFinding(str(path), f"database file writable by every local user (mode {mode & 0o777:o})")
            )
    return findings


def sqlite_file(url: str) -> Path | None:
    parsed = make_url(db.normalize_url(url))
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


# --- heartbeats ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Heartbeat:
    component: str
    instance: str
    last_beat_at: datetime


# --- everything one evaluation sees ---------------------------------------------------------------------------


@dataclass
class Measurements:
    """One evaluation's view of the system. ``None`` parts were not measurable; ``errors`` says why."""

    at: datetime
    metrics: MetricBuffer
    cpu: MetricBuffer
    database: DatabaseProbe | None = None
    probe_history: list[tuple[datetime, bool]] = field(default_factory=list)
    db_recovered_at: datetime | None = None  # the last probe failure -> success transition
    memory_ratio: float | None = None
    oom_kills_in: dict[str, float] = field(default_factory=dict)  # window label -> kills
    disks: list[DiskReading] = field(default_factory=list)
    catalog: CatalogSignals | None = None
    heartbeats: list[Heartbeat] | None = None
    prometheus: PrometheusReading | None = None
    security: list[SecurityFinding] | None = None
    data_loss: dict[str, int] | None = None  # table -> rows that disappeared since the high-water mark
    null_jumps: dict[str, tuple[float, float]] | None = None  # roaster -> (previous share, current share)
    errors: dict[str, str] = field(default_factory=dict)  # part -> why it could not be measured
