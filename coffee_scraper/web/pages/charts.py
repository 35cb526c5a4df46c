"""Chart geometry for server-rendered SVG: step/line charts over time and stacked bar charts.

Only numbers and labels are computed here; ``templates/_charts.html`` draws them (autoescaped, so labels taken
from shops are text). No JavaScript, no chart library: the pages work offline and under a strict CSP.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

PALETTE_SIZE = 8  # CSS classes s0..s7 colour the series


@dataclass(frozen=True)
class Series:
    """One line: (time, value) points in time order; ``label`` may be shop text (it is escaped when drawn)."""

    label: str
    points: Sequence[tuple[datetime, float]]


@dataclass
class Tick:
    pos: float
    label: str


@dataclass
class Marker:
    x: float
    y: float
    title: str


@dataclass
class ChartLine:
    label: str
    css: str
    d: str  # SVG path data: numbers and M/H/V/L commands only
    markers: list[Marker]


@dataclass
class LineChart:
    width: int
    height: int
    left: int
    top: int
    plot_w: int
    plot_h: int
    title: str
    y_label: str
    lines: list[ChartLine] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.lines


def nice_step(span: float, target_ticks: int = 5) -> float:
    """A 1/2/5 × 10^n step giving about ``target_ticks`` ticks over ``span``."""
    if span <= 0:
        return 1.0
    raw = span / max(target_ticks, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * magnitude:
            return float(factor * magnitude)
    return float(10 * magnitude)


def _y_range(values: Sequence[float]) -> tuple[float, float, float]:
    low, high = min(values), max(values)
    if high == low:
        pad = abs(high) * 0.1 or 1.0
        low, high = low - pad, high + pad
    step = nice_step(high - low)
    low = math.floor(low / step) * step
    high = math.ceil(high / step) * step
    if low < 0 <= min(values):
        low = 0.0
    return low, high, step


def _fmt_number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 or value == int(value) else f"{value:,.2f}"


def _date_ticks(start: datetime, end: datetime, count: int = 5) -> list[datetime]:
    if end <= start:
        return [start]
    step = (end - start) / max(count - 1, 1)
    return [start + step * i for i in range(count)]


def _time_label(t: datetime, span: timedelta) -> str:
    if span > timedelta(days=2):
        return f"{t:%d %b}"
    if span > timedelta(hours=1):
        return f"{t:%d %b %H:%M}"
    return f"{t:%H:%M:%S}"


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    y_label: str,
    now: datetime,
    step: bool = True,
    width: int = 720,
    height: int = 280,
    fmt: Callable[[float], str] = _fmt_number,
) -> LineChart:
    """A chart of values over time; ``step`` holds each value until the next point (and the last until now)."""
    left, right, top, bottom = 64, 16, 16, 36
    chart = LineChart(width, height, left, top, width - left - right, height - top - bottom, title, y_label)
    drawn = [s for s in series if s.points]
    if not drawn:
        return chart
    times = [t for s in drawn for t, _ in s.points]
    values = [v for s in drawn for _, v in s.points]
    t0 = min(times)
    t1 = max(max(times), now) if step else max(times)
    if t1 <= t0:
        t0, t1 = t0 - timedelta(days=1), t0 + timedelta(days=1)
    y0, y1, y_step = _y_range(values)
    span = (t1 - t0).total_seconds()

    def x_of(t: datetime) -> float:
        return round(left + (t - t0).total_seconds() / span * chart.plot_w, 1)

    def y_of(v: float) -> float:
        return round(top + (1 - (v - y0) / (y1 - y0)) * chart.plot_h, 1)

    for index, s in enumerate(drawn):
        points = sorted(s.points, key=lambda p: p[0])
        parts = [f"M{x_of(points[0][0])} {y_of(points[0][1])}"]
        for t, v in points[1:]:
            parts.append(f"H{x_of(t)} V{y_of(v)}" if step else f"L{x_of(t)} {y_of(v)}")
        if step:
            parts.append(f"H{x_of(t1)}")
        markers = [Marker(x_of(t), y_of(v), f"{t:%Y-%m-%d %H:%M} UTC: {fmt(v)}") for t, v in points]
        chart.lines.append(ChartLine(s.label, f"s{index % PALETTE_SIZE}", " ".join(parts), markers))
    ticks = round((y1 - y0) / y_step)
    chart.y_ticks = [Tick(y_of(y0 + i * y_step), fmt(y0 + i * y_step)) for i in range(ticks + 1)]
    chart.x_ticks = [Tick(x_of(t), _time_label(t, t1 - t0)) for t in _date_ticks(t0, t1)]
    return chart


@dataclass
class BarSegment:
    key: str
    css: str
    y: float
    h: float
    value: int


@dataclass
class Bar:
    label: str
    x: float
    w: float
    total: int
    segments: list[BarSegment]


@dataclass
class BarChart:
    width: int
    height: int
    left: int
    top: int
    plot_w: int
    plot_h: int
    title: str
    y_label: str
    keys: list[tuple[str, str]]  # (key, css class) for the legend
    bars: list[Bar] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not any(b.total for b in self.bars)


def stacked_bar_chart(
    buckets: Sequence[tuple[str, dict[str, int]]],
    *,
    keys: Sequence[str],
    css: dict[str, str] | None = None,
    title: str,
    y_label: str,
    width: int = 720,
    height: int = 240,
    label_every: int = 1,
) -> BarChart:
    """Bars per bucket (e.g. a day or week), each stacked by ``keys`` (e.g. run status or severity)."""
    left, right, top, bottom = 48, 16, 16, 36
    classes = [(k, (css or {}).get(k, f"s{i % PALETTE_SIZE}")) for i, k in enumerate(keys)]
    chart = BarChart(width, height, left, top, width - left - right, height - top - bottom, title, y_label, classes)
    if not buckets:
        return chart
    peak = max((sum(counts.get(k, 0) for k in keys) for _, counts in buckets), default=0)
    step = max(1.0, nice_step(float(peak or 1), 4))
    y_max = max(step, math.ceil((peak or 1) / step) * step)
    slot = chart.plot_w / len(buckets)
    bar_w = round(max(1.0, slot * 0.7), 1)
    for i, (label, counts) in enumerate(buckets):
        x = round(left + i * slot + (slot - bar_w) / 2, 1)
        base = float(top + chart.plot_h)
        segments = []
        for key, cls in classes:
            value = counts.get(key, 0)
            if value <= 0:
                continue
            h = value / y_max * chart.plot_h
            base -= h
            segments.append(BarSegment(key, cls, round(base, 1), round(h, 1), value))
        chart.bars.append(Bar(label, x, bar_w, sum(counts.get(k, 0) for k in keys), segments))
        if i % max(label_every, 1) == 0:
            chart.x_ticks.append(Tick(round(x + bar_w / 2, 1), label))
    ticks = round(y_max / step)
    chart.y_ticks = [
        Tick(round(top + (1 - i * step / y_max) * chart.plot_h, 1), _fmt_number(i * step)) for i in range(ticks + 1)
    ]
    return chart
