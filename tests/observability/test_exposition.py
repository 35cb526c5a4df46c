"""observability.exposition renders exactly what prometheus_client.generate_latest renders, byte for byte."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import pytest
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    Histogram,
    Info,
    Summary,
    disable_created_metrics,
    enable_created_metrics,
    generate_latest,
)
from prometheus_client import metrics as pc_metrics
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
    StateSetMetricFamily,
    SummaryMetricFamily,
    UnknownMetricFamily,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from coffee_scraper.observability.exposition import TextWriter, float_to_go_string, generate_text

ROOT = Path(__file__).resolve().parents[2]

VALUES = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    3.0,
    42.0,
    123456.0,
    999999.0,
    1e6,
    1234567.0,
    12345678.9,
    50_000_000.0,
    1e15,
    1e16,
    1.5e22,
    1e300,
    1.7976931348623157e308,
    5e-324,
    1e-7,
    0.1,
    0.3333333333333333,
    2.5e-5,
    -1e6,
    -1234567.0,
    -1e22,
    -2.5e-5,
    float("inf"),
    float("-inf"),
    float("nan"),
    7,
    10**20,
    True,
    1762000000.123,
    1762000000.0,
]
LABEL_VALUES = ["plain", 'quote"d', "back\\slash", "new\nline", 'all\\"\n', "", "ünïcödé ☕", "a,b=c}{"]


def test_float_formatting_matches_prometheus_client() -> None:
    for v in VALUES:
        assert float_to_go_string(v) == floatToGoString(v), v


class _Custom:
    """A custom collector yielding every metric family type, timestamps and odd values."""

    def collect(self) -> Iterable[Metric]:
        c = CounterMetricFamily("custom_things", "Custom counter with \\ and\nnewline in help.", labels=["k"])
        for i, v in enumerate(LABEL_VALUES):
            c.add_metric([v], VALUES[i % len(VALUES)], timestamp=1762000000.5 + i)
        yield c
        g = GaugeMetricFamily("custom_gauge", "Custom gauge.", labels=["a", "b"])
        for i, v in enumerate(VALUES):
            g.add_metric([f"a{i}", LABEL_VALUES[i % len(LABEL_VALUES)]], v)
        yield g
        yield GaugeMetricFamily("custom_plain", "No labels.", value=float("nan"))
        yield HistogramMetricFamily(
            "custom_hist", "Hist.", buckets=[("0.1", 1.0), ("1.0", 3.0), ("+Inf", 4.0)], sum_value=2.5
        )
        yield GaugeHistogramMetricFamily("custom_ghist", "GHist.", buckets=[("1.0", 1.0), ("+Inf", 2.0)], gsum_value=3)
        yield SummaryMetricFamily("custom_summary", "Summary.", count_value=3, sum_value=1e-9)
        yield InfoMetricFamily("custom_build", "Info.", value={"version": '1."2"', "z": "\\"})
        yield StateSetMetricFamily("custom_state", "StateSet.", value={"a": True, "b": False})
        yield UnknownMetricFamily("custom_unknown", "Unknown.", value=1e-300)


def _registry() -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=True)
    counter = Counter("t_requests", "Requests.", ["roaster", "result"], registry=reg)
    gauge = Gauge("t_state", "State.", ["roaster"], registry=reg)
    hist = Histogram("t_latency_seconds", "Latency.", ["roaster"], buckets=(0.05, 1, 2.5, 1e6, 5e7), registry=reg)
    neg = Histogram("t_delta", "Negative buckets.", ["z_after_le", "a"], buckets=(-5, 0, 5), registry=reg)
    for i, lv in enumerate(LABEL_VALUES):
        v = VALUES[i % len(VALUES)]
        counter.labels(lv, "ok").inc(abs(v) if v == v and abs(v) != float("inf") else 1)
        counter.labels(lv, "error").inc(i * 1_000_003)
        gauge.labels(lv).set(VALUES[(i * 7) % len(VALUES)])
        for x in VALUES[i : i + 6]:
            hist.labels(lv).observe(float(x))
            neg.labels(lv, "x").observe(float(x))
    Counter("t_plain", "No labels.", registry=reg).inc(2.5)
    Gauge("t_plain_gauge", "No labels.", registry=reg).set(-3)
    fn = Gauge("t_fn", "Function gauge.", ["k"], registry=reg)
    fn.labels("x").set_function(lambda: 17.25)
    Summary("t_summary", "Summary.", ["k"], registry=reg).labels("s").observe(0.25)
    Info("t_build", "Build info.", registry=reg).info({"version": "1.2.3"})
    Enum("t_mode", "Mode.", states=["a", "b"], registry=reg).state("b")
    reg.register(_Custom())
    return reg


@pytest.mark.parametrize("created", [False, True])
def test_writer_output_is_byte_identical_to_generate_latest(created: bool) -> None:
    was = pc_metrics._use_created
    (enable_created_metrics if created else disable_created_metrics)()
    try:
        reg = _registry()
        writer = TextWriter()
        for _ in range(2):  # cold caches, then warm ones
            assert writer.generate(reg) == generate_latest(reg)
        reg.set_target_info({"env": "test"})
        assert writer.generate(reg) == generate_latest(reg)
    finally:
        (enable_created_metrics if was else disable_created_metrics)()


def test_values_are_live_and_removed_series_disappear() -> None:
    reg = _registry()
    writer = TextWriter()
    counter = Counter("t_live", "Live.", ["roaster"], registry=reg)
    hist = Histogram("t_live_seconds", "Live.", ["roaster"], buckets=(1, 2), registry=reg)
    counter.labels("a").inc()
    hist.labels("a").observe(1.5)
    first = writer.generate(reg)
    assert b't_live_total{roaster="a"} 1.0\n' in first
    counter.labels("a").inc(2)
    hist.labels("a").observe(0.5)
    counter.labels("b").inc()
    second = writer.generate(reg)
    assert second == generate_latest(reg)
    assert b't_live_total{roaster="a"} 3.0\n' in second
    assert b't_live_seconds_bucket{le="1.0",roaster="a"} 1.0\n' in second
    counter.remove("a")
    hist.clear()
    reg.unregister(reg._names_to_collectors["t_state"])
    third = writer.generate(reg)
    assert third == generate_latest(reg)
    assert b'roaster="a"' not in third.split(b"t_live_total", 1)[1]
    assert b"t_state" not in third


def test_writer_output_parses_as_prometheus_text() -> None:
    reg = _registry()
    families = {f.name: f for f in text_string_to_metric_families(generate_text(reg).decode())}
    assert families["t_requests"].type == "counter"
    assert families["t_latency_seconds"].type == "histogram"
    assert any(s.labels.get("roaster") == 'quote"d' for s in families["t_requests"].samples)


def test_app_registry_is_byte_identical() -> None:
    """The app's own REGISTRY (minus the live psutil readings, which change between two renderings)."""
    from coffee_scraper.observability import metrics as m

    m.FETCH_REQUESTS.labels("exposition-test", "shopify", "ok").inc(3)
    m.FETCH_DURATION.labels("exposition-test").observe(0.2)

    def stable(body: bytes) -> list[bytes]:
        live = (b"coffee_scraper_process_", b"coffee_scraper_host_")
        return [line for line in body.splitlines() if not line.startswith(live)]

    assert stable(generate_text(m.REGISTRY)) == stable(generate_latest(m.REGISTRY))


MULTIPROC_SCRIPT = """
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from coffee_scraper.observability.exposition import TextWriter

c = Counter("mp_requests", "Requests.", ["roaster"])
g = Gauge("mp_state", "State.", ["roaster"], multiprocess_mode="livesum")
h = Histogram("mp_latency_seconds", "Latency.", ["roaster"], buckets=(0.1, 1))
for i, name in enumerate(["a", 'q"', "b\\\\s"]):
    c.labels(name).inc(i + 0.5)
    g.labels(name).set(i * 1e7)
    h.labels(name).observe(i / 3)
reg = CollectorRegistry()
MultiProcessCollector(reg)
writer = TextWriter()
assert writer.generate(reg) == generate_latest(reg), (writer.generate(reg), generate_latest(reg))
assert writer.generate(reg) == generate_latest(reg)
assert b"mp_requests_total" in generate_latest(reg)
print("same")
"""


def test_multiprocess_collector_output_is_byte_identical(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", MULTIPROC_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "same"
    assert time.monotonic() - started < 60
