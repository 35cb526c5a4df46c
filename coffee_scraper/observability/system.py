"""Live process and host gauges (psutil), read at scrape time by a custom prometheus_client collector.

``metrics.py`` registers one ``SystemCollector`` on ``REGISTRY``; it measures "/" until ``watch_paths`` adds
the data directory of the SQLite database and the log directory (the web app does that from its settings).
These are the numbers the runbook's "Memory Usage High" and "Disk Usage Warning/Critical" rules look at.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import psutil
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.engine import make_url

from coffee_scraper.settings import Settings


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing ancestor (a data dir not created yet sits on its parent's disk)."""
    path = path.absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def watched_paths(settings: Settings) -> list[str]:
    """The SQLite database's directory (if the catalog is SQLite), the log directory and "/"."""
    paths: list[str] = []
    if settings.is_sqlite:
        database = make_url(settings.database_url).database
        if database and database != ":memory:":
            paths.append(str(Path(database).absolute().parent))
    paths.append(str(settings.log_dir.absolute()))
    paths.append("/")
    return list(dict.fromkeys(paths))


class SystemCollector(Collector):
    """Yields process RSS and CPU seconds, host memory ratio and disk usage ratio per watched path."""

    def __init__(self, prefix: str = "coffee_scraper", paths: Iterable[str] = ("/",)) -> None:
        self.prefix = prefix
        self._paths = list(paths)
        self._lock = threading.Lock()
        self._process: psutil.Process | None = None
        self._pid = -1

    def watch_paths(self, paths: Iterable[str]) -> None:
        with self._lock:
            self._paths = list(dict.fromkeys(paths))

    def _proc(self) -> psutil.Process:
        pid = os.getpid()  # a forked worker must measure itself, not its parent
        if self._process is None or self._pid != pid:
            self._process, self._pid = psutil.Process(pid), pid
        return self._process

    def collect(self) -> Iterator[Metric]:
        p = self.prefix
        proc = self._proc()
        rss = GaugeMetricFamily(f"{p}_process_resident_memory_bytes", "Resident memory of this process (bytes).")
        rss.add_metric([], float(proc.memory_info().rss))
        yield rss
        cpu = proc.cpu_times()
        cpu_total = CounterMetricFamily(
            f"{p}_process_cpu_seconds", "User plus system CPU time of this process (seconds)."
        )
        cpu_total.add_metric([], float(cpu.user + cpu.system))
        yield cpu_total
        memory = GaugeMetricFamily(
            f"{p}_host_memory_usage_ratio",
            "Share of the host's memory in use (0..1, from psutil: 1 - available/total).",
        )
        vm = psutil.virtual_memory()
        memory.add_metric([], 1.0 - vm.available / vm.total if vm.total else 0.0)
        yield memory
        disk = GaugeMetricFamily(
            f"{p}_host_disk_usage_ratio",
            "Share of the filesystem holding each path that is used (0..1).",
            labels=["path"],
        )
        with self._lock:
            paths = list(self._paths)
        for path in paths:
            try:
                usage = psutil.disk_usage(str(_existing(Path(path))))
            except OSError:
                continue  # an unreadable mount is no reason to fail the whole scrape
            disk.add_metric([path], usage.used / usage.total if usage.total else 0.0)
        yield disk
