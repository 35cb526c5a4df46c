"""A faster Prometheus text exposition, byte-identical to ``prometheus_client.generate_latest``.

``generate_latest`` spends ~5 µs a sample: every scrape it rebuilds a ``Sample`` with a fresh label dict per
series, sorts and escapes the labels and formats every float. With 500 roasters that is ~17,500 samples and
~90 ms. ``TextWriter`` produces the same bytes with two savings:

* the rendered line prefix of a series (``name{label="value",...} ``) is cached per (metric, label values),
  since label sets repeat every scrape; only the values are formatted per scrape;
* for prometheus_client's own ``Counter``/``Gauge``/``Histogram`` with labels (in-process values, no
  ``_created`` series, no ``set_function`` gauges) the values are read from the children directly instead of
  through ``collect()``; every other collector (the psutil ``SystemCollector``, ``MultiProcessCollector``,
  anything custom) goes through ``collect()`` like ``generate_latest`` does.

Values are always read at scrape time; nothing but label strings is cached. The format follows
prometheus_client 0.26's ``generate_latest`` with the default escaping (``underscores``); the tests compare
the two byte for byte.
"""

from __future__ import annotations

import math
import threading
from typing import Any

from prometheus_client import metrics as pc_metrics
from prometheus_client.metrics import Counter, Gauge, Histogram
from prometheus_client.openmetrics.exposition import escape_label_name, escape_metric_name
from prometheus_client.registry import Collector, CollectorRegistry

_INF = float("inf")
_MINUS_INF = float("-inf")
_OM_SUFFIXES = ("_created", "_gsum", "_gcount")
_TYPE_MUNGING = {"info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram", "unknown": "untyped"}
_MAX_GENERIC_CACHE = 200_000  # prefixes of collect()-path series; cleared when exceeded (label churn)


def float_to_go_string(d: Any) -> str:
    """``prometheus_client.utils.floatToGoString``, same output."""
    d = float(d)
    s = repr(d)
    if d > 0:
        if d == _INF:
            return "+Inf"
        dot = s.find(".")
        if dot > 6:  # Go switches to exponents sooner than Python
            mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1 :]}".rstrip("0.")
            return f"{mantissa}e+{dot - 1:02d}"
        return s
    if d == _MINUS_INF:
        return "-Inf"
    if math.isnan(d):
        return "NaN"
    return s


def _escape_label_value(v: str) -> str:
    return v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _escape_help(doc: str) -> str:
    return doc.replace("\\", r"\\").replace("\n", r"\n")


def _line_prefix(name: str, labels: dict[str, str] | tuple[tuple[str, str], ...]) -> str:
    """``name{k="v",...} `` with labels sorted by name, as generate_latest's ``sample_line`` renders it."""
    items = labels.items() if isinstance(labels, dict) else labels
    if items:
        block = ",".join(f'{escape_label_name(k)}="{_escape_label_value(v)}"' for k, v in sorted(items))
        return f"{escape_metric_name(name)}{{{block}}} "
    return f"{escape_metric_name(name)} "


def _header(name: str, documentation: str, mtype: str) -> str:
    escaped = escape_metric_name(name)
    return f"# HELP {escaped} {_escape_help(documentation)}\n# TYPE {escaped} {mtype}\n"


class TextWriter:
    """Renders a registry in the Prometheus text format; keep one per registry to reuse its caches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # collector -> {label values: [line prefix per sample of one child]}
        self._child_prefixes: dict[Any, dict[tuple[str, ...], list[str]]] = {}
        # (sample name, label items) -> line prefix, for the collect() path
        self._generic: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}

    def generate(self, registry: CollectorRegistry | Collector) -> bytes:
        with self._lock:  # the caches are plain dicts; scrapes are rare enough to serialise
            out: list[str] = []
            seen: set[Any] = set()
            for collector in self._collectors(registry):
                mark = len(out)
                try:
                    fast = self._fast(collector, out, seen)
                except AttributeError:  # prometheus_client internals not as expected: use collect()
                    del out[mark:]
                    fast = False
                if not fast:
                    for metric in collector.collect():
                        self._write_metric(metric, out)
            for key in [k for k in self._child_prefixes if k not in seen]:
                del self._child_prefixes[key]  # unregistered collectors
            if len(self._generic) > _MAX_GENERIC_CACHE:
                self._generic.clear()
            return "".join(out).encode("utf-8")

    @staticmethod
    def _collectors(registry: CollectorRegistry | Collector) -> list[Any]:
        """What ``registry.collect()`` iterates, in its order (target_info first)."""
        if type(registry) is not CollectorRegistry:
            return [registry]  # a RestrictedRegistry or any other collector: its own collect()
        with registry._lock:
            collectors: list[Any] = list(registry._collector_to_names)
            ti = registry._target_info_metric() if registry._target_info else None
        if ti is not None:
            collectors.insert(0, _Fixed(ti))
        return collectors

    # --- fast path: prometheus_client's own metric wrappers -----------------------------------------------
    def _fast(self, c: Any, out: list[str], seen: set[Any]) -> bool:
        kind = type(c)
        if kind not in (Counter, Gauge, Histogram) or pc_metrics._use_created or not c._is_parent():
            return False
        with c._lock:
            children = list(c._metrics.items())
        if kind is Gauge and any("_child_samples" in child.__dict__ for _, child in children):
            return False  # set_function() gauges compute their value in _child_samples
        metric = c._get_metric()
        name = metric.name
        key = c  # the object itself (identity hash), not id(): a recycled id must not reuse stale prefixes
        seen.add(key)
        cache = self._child_prefixes.get(key)
        if cache is None:
            cache = self._child_prefixes[key] = {}
        elif len(cache) > 2 * len(children) + 16:  # removed series: keep only the current ones
            cache = self._child_prefixes[key] = {lv: cache[lv] for lv, _ in children if lv in cache}
        labelnames = c._labelnames
        fmt = float_to_go_string
        if kind is Counter:
            out.append(_header(name + "_total", metric.documentation, "counter"))
            for lv, child in children:
                p = cache.get(lv)
                if p is None:
                    p = cache[lv] = [_line_prefix(name + "_total", tuple(zip(labelnames, lv, strict=True)))]
                out.append(f"{p[0]}{fmt(child._value.get())}\n")
        elif kind is Gauge:
            out.append(_header(name, metric.documentation, "gauge"))
            for lv, child in children:
                p = cache.get(lv)
                if p is None:
                    p = cache[lv] = [_line_prefix(name, tuple(zip(labelnames, lv, strict=True)))]
                out.append(f"{p[0]}{fmt(child._value.get())}\n")
        else:
            out.append(_header(name, metric.documentation, "histogram"))
            for lv, child in children:
                bounds = child._upper_bounds
                p = cache.get(lv)
                if p is None:
                    series = tuple(zip(labelnames, lv, strict=True))
                    p = [_line_prefix(name + "_bucket", (*series, ("le", fmt(b)))) for b in bounds]
                    p.append(_line_prefix(name + "_count", series))
                    p.append(_line_prefix(name + "_sum", series))
                    cache[lv] = p
                acc = 0.0
                for i, bucket in enumerate(child._buckets):
                    acc += bucket.get()
                    out.append(f"{p[i]}{fmt(acc)}\n")
                out.append(f"{p[-2]}{fmt(acc)}\n")
                if bounds[0] >= 0:
                    out.append(f"{p[-1]}{fmt(child._sum.get())}\n")
        return True

    # --- generic path: any Metric from collect() ----------------------------------------------------------
    def _write_metric(self, metric: Any, out: list[str]) -> None:
        try:
            mname, mtype = metric.name, metric.type
            if mtype == "counter":
                mname += "_total"
            elif mtype == "info":
                mname += "_info"
            mtype = _TYPE_MUNGING.get(mtype, mtype)
            out.append(_header(mname, metric.documentation, mtype))
            om_samples: dict[str, list[str]] = {}
            for s in metric.samples:
                for suffix in _OM_SUFFIXES:
                    if s.name == metric.name + suffix:
                        om_samples.setdefault(suffix, []).append(self._sample_line(s))
                        break
                else:
                    out.append(self._sample_line(s))
        except Exception as exception:
            exception.args = (exception.args or ("",)) + (metric,)
            raise
        for suffix, lines in sorted(om_samples.items()):
            out.append(_header(metric.name + suffix, metric.documentation, "gauge"))
            out.extend(lines)

    def _sample_line(self, s: Any) -> str:
        key = (s.name, tuple(s.labels.items()))
        prefix = self._generic.get(key)
        if prefix is None:
            prefix = self._generic[key] = _line_prefix(s.name, s.labels)
        if s.timestamp is not None:
            return f"{prefix}{float_to_go_string(s.value)} {int(float(s.timestamp) * 1000):d}\n"
        return f"{prefix}{float_to_go_string(s.value)}\n"


class _Fixed:
    """A collector yielding one prepared metric (the registry's target_info)."""

    def __init__(self, metric: Any) -> None:
        self._metric = metric

    def collect(self) -> list[Any]:
        return [self._metric]


# One shared writer: its caches are keyed by collector object and by rendered content, so any registry
# (the app's, or a fresh multi-process one per scrape) can use it.
WRITER = TextWriter()


def generate_text(registry: CollectorRegistry | Collector, writer: TextWriter | None = None) -> bytes:
    """``generate_latest(registry)``, faster (same bytes)."""
    return (writer or WRITER).generate(registry)
