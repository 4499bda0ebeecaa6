"""The chart of drift over time as an inline SVG, drawn here so the HTML report needs no
script and no asset: one line per source (its runs at any ref; drifted resources per run), a
marker per run with its details as a tooltip, runs that met errors ringed in red. The
time axis spans the runs drawn, the legend names every line distinctly.

Every text that reaches the SVG (source names, revisions) is escaped; nothing in it is
executable. Thousands of runs are thinned to the highest point per pixel column, so the
page stays small whatever the history.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape

from controller.reports.model import SeriesPoint
from controller.reports.values import short, when
from controller.words import count

WIDTH, HEIGHT = 880, 280
LEFT, RIGHT, TOP, BOTTOM = 52, 16, 16, 58
COLOURS = ("#2563eb", "#d97706", "#059669", "#7c3aed", "#db2777", "#0891b2", "#65a30d")
ERROR = "#dc2626"
DASHES = ("4 2", "1 2", "6 2 1 2")
COLUMN_PX = 2.0  # at most one marker per source in this many pixels
LEGEND_CHARS = 48  # a longer source name is shortened in its middle
LEGEND_ROW = 16  # pixels per legend row; rows beyond the first make the chart taller
CHAR_PX = 6.8  # width of a legend character at the chart's 11px font, roughly
MIN_SPAN = timedelta(minutes=10)  # the narrowest time axis, for one run or a burst


@dataclass(frozen=True)
class Plotted:
    x: float
    y: float
    point: SeriesPoint


def nice_top(value: int) -> tuple[int, int]:
    """An axis maximum at or above ``value`` and its tick step (1, 2 or 5 times 10^k),
    with at most five steps."""
    if value <= 0:
        return 1, 1
    raw = value / 5
    magnitude = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    for factor in (1, 2, 5, 10):
        step = max(1, int(factor * magnitude))
        if step * 5 >= value:
            return step * math.ceil(value / step), step
    step = int(10 * magnitude)
    return step * math.ceil(value / step), step


def thin(points: Sequence[Plotted], column: float = COLUMN_PX) -> list[Plotted]:
    """Keep, per pixel column, the point with the most drift (errors win ties): the
    peaks a person looks for survive, the line keeps its shape."""
    kept: dict[int, Plotted] = {}
    for p in points:
        key = int(p.x // column)
        best = kept.get(key)
        rank = (p.point.drifted, p.point.errors, p.point.run_id)
        if best is None or rank > (best.point.drifted, best.point.errors, best.point.run_id):
            kept[key] = p
    return [kept[k] for k in sorted(kept)]


def series_key(source: str, revision: str | None) -> str:
    """The series a run belongs to: its source without the ``@ref`` a git source's
    description ends with (``/srv/infra@3f2a…`` and ``/srv/infra@main`` are one repository,
    one line).

    A directory source is recorded as its absolute path, whole, and may hold an ``@`` of
    its own (``/srv/infra@prod`` and ``/srv/infra@staging`` are two folders, two lines): a
    run with no revision read a plain folder (a git source always has a commit), and a
    recorded path that is a folder here was a working copy read as a folder, as
    ``fazai rollback`` takes it. A git ref cannot hold ``:``, so an ``@`` followed by one
    is the user of an scp-like URL (``git@host:repo``), not a ref."""
    if source.startswith("git::"):  # newer FazAI marks git sources; with or without: one line
        source = source.removeprefix("git::")
    elif revision is None or (os.path.isabs(source) and os.path.isdir(source)):
        return source
    head, sep, tail = source.rpartition("@")
    if sep and head and tail and ":" not in tail:
        return head
    return source


def legend_labels(keys: Sequence[str], limit: int = LEGEND_CHARS) -> list[str]:
    """Labels that tell the series apart: a long name keeps its start and its end (where
    paths differ) around an ellipsis, and labels still alike get a number."""
    labels = [_middle_clip(key, limit) for key in keys]
    seen: dict[str, int] = {}
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
    numbered: dict[str, int] = {}
    out = []
    for label in labels:
        if seen[label] > 1:
            numbered[label] = numbered.get(label, 0) + 1
            label = f"{label} ({numbered[label]})"
        out.append(label)
    return out


def render(points: Sequence[SeriesPoint], start: datetime, end: datetime) -> str:
    """The chart of ``points`` (oldest first) recorded between ``start`` and ``end``.

    The time axis spans the points themselves, not the whole window: a day of runs in a
    30-day window fills the width instead of piling up at its right edge."""
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    low, high = _time_domain(points, start, end)
    span = max((high - low).total_seconds(), 1.0)
    top, step = nice_top(max((p.drifted for p in points), default=0))
    # Each point's series once (a key may look at the disk: per point, not per pair).
    by_key: dict[str, list[SeriesPoint]] = {}
    for point in points:
        by_key.setdefault(series_key(point.source, point.revision), []).append(point)
    keys = sorted(by_key)
    labels = legend_labels(keys)
    rows = _legend_rows(labels)
    height = HEIGHT + LEGEND_ROW * max(0, len(rows) - 1)

    def x_of(moment: datetime) -> float:
        offset = (moment - low).total_seconds() / span
        return LEFT + plot_w * min(max(offset, 0.0), 1.0)

    def y_of(value: int) -> float:
        return TOP + plot_h * (1 - value / top)

    label = f"Drifted resources per run, {when(low)} to {when(high)}"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" '
        f'role="img" aria-label="{escape(label)}" class="chart">',
        f"<title>{escape(label)}</title>",
    ]
    for value in range(0, top + 1, step):
        y = y_of(value)
        out.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">{value}</text>'
        )
    ticks, pattern = time_ticks(low, high)
    for tick in ticks:
        x = x_of(tick)
        # A label at either end of the axis is anchored inward, so it is not cut off.
        anchor = "start" if x < LEFT + 24 else "end" if x > WIDTH - RIGHT - 24 else "middle"
        out.append(
            f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + plot_h}" class="grid"/>'
            f'<text x="{x:.1f}" y="{TOP + plot_h + 18}" text-anchor="{anchor}">'
            f"{tick.astimezone(UTC).strftime(pattern)}</text>"
        )
    out.append(
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}" '
        'class="axis"/>'
    )
    if not points:
        out.append(
            f'<text x="{LEFT + plot_w / 2:.1f}" y="{TOP + plot_h / 2:.1f}" '
            'text-anchor="middle" class="empty">no run recorded in this period</text>'
        )
    colours = {key: COLOURS[index % len(COLOURS)] for index, key in enumerate(keys)}
    dashes = {key: _dash(index) for index, key in enumerate(keys)}
    for key in keys:
        colour, dash = colours[key], dashes[key]
        plotted = thin([Plotted(x_of(p.time), y_of(p.drifted), p) for p in by_key[key]])
        path = " ".join(f"{p.x:.1f},{p.y:.1f}" for p in plotted)
        out.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash} '
            f'class="series"><title>{escape(key)}</title></polyline>'
        )
        for p in plotted:
            out.append(_marker(p, colour))
    legend_top = TOP + plot_h + 40
    for row_index, row in enumerate(rows):
        y = legend_top + LEGEND_ROW * row_index
        for x, index in row:
            colour, dash = colours[keys[index]], dashes[keys[index]]
            out.append(
                f'<line x1="{x:.0f}" y1="{y - 4}" x2="{x + 11:.0f}" y2="{y - 4}" '
                f'stroke="{colour}" stroke-width="3"{dash}/>'
                f'<text x="{x + 14:.0f}" y="{y}" class="legend">{escape(labels[index])}'
                f"<title>{escape(keys[index])}</title></text>"
            )
    out.append("</svg>")
    return "\n".join(out)


def _dash(index: int) -> str:
    """Past the palette colours repeat; a dash pattern keeps those lines (and their
    legend swatches) apart."""
    if index < len(COLOURS):
        return ""
    return f' stroke-dasharray="{DASHES[(index // len(COLOURS) - 1) % len(DASHES)]}"'


def _time_domain(
    points: Sequence[SeriesPoint], start: datetime, end: datetime
) -> tuple[datetime, datetime]:
    """The data's first and last moment, widened a little so markers do not sit on the
    frame; the whole window when there is nothing to draw."""
    if not points:
        return start, end
    first = min(p.time for p in points)
    last = max(p.time for p in points)
    if last - first < MIN_SPAN:
        middle = first + (last - first) / 2
        return middle - MIN_SPAN / 2, middle + MIN_SPAN / 2
    pad = (last - first) * 0.03
    return first - pad, last + pad


def _legend_rows(labels: Sequence[str]) -> list[list[tuple[float, int]]]:
    """Legend entries laid out left to right, wrapping to a new row when the next one
    would not fit: (x, index) per entry."""
    rows: list[list[tuple[float, int]]] = [[]]
    x = float(LEFT)
    for index, label in enumerate(labels):
        width = 14 + CHAR_PX * len(label) + 18
        if rows[-1] and x + width > WIDTH - RIGHT:
            rows.append([])
            x = float(LEFT)
        rows[-1].append((x, index))
        x += width
    return rows


def _marker(p: Plotted, colour: str) -> str:
    point = p.point
    tip = (
        f"run {point.run_id} ({point.command}, {point.trigger}) {when(point.time)}\n"
        f"{point.source} at {short(point.revision)}: {point.drifted} drifted"
        + (f", {count(point.errors, 'error')}" if point.errors else "")
        + "".join(f"\n  {node}: {count}" for node, count in point.nodes[:12])
    )
    ring = f' stroke="{ERROR}" stroke-width="2"' if point.errors else ""
    return (
        f'<circle cx="{p.x:.1f}" cy="{p.y:.1f}" r="3" fill="{colour}"{ring}>'
        f"<title>{escape(tip)}</title></circle>"
    )


_STEPS = (
    timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=15), timedelta(minutes=30),
    timedelta(hours=1), timedelta(hours=3), timedelta(hours=6), timedelta(hours=12),
    timedelta(days=1), timedelta(days=2), timedelta(days=3), timedelta(days=7), timedelta(days=14),
    timedelta(days=30), timedelta(days=60), timedelta(days=90), timedelta(days=180),
    timedelta(days=365),
)  # fmt: skip
MAX_TICKS = 8


def time_ticks(low: datetime, high: datetime) -> tuple[list[datetime], str]:
    """Round moments (UTC) spread over the whole of low to high, at most MAX_TICKS of
    them, and the strftime pattern that labels them: times of day for a short span, dates
    for a long one (with the year when the span crosses one), both when a short span
    crosses midnight."""
    span = high - low
    step = next((s for s in _STEPS if span / s <= MAX_TICKS), None)
    if step is None:  # years of runs: whole years, as few as fit
        year = timedelta(days=365)
        step = year * math.ceil(span / year / MAX_TICKS)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    seconds = step.total_seconds()
    first = epoch + timedelta(seconds=math.ceil((low - epoch).total_seconds() / seconds) * seconds)
    ticks: list[datetime] = []
    tick = first
    while tick <= high and len(ticks) < MAX_TICKS:
        ticks.append(tick)
        tick += step
    start, end = low.astimezone(UTC), high.astimezone(UTC)
    if step >= timedelta(days=1):
        pattern = "%m-%d" if start.year == end.year else "%Y-%m-%d"
    elif start.date() == end.date():
        pattern = "%H:%M"
    else:
        pattern = "%m-%d %H:%M"
    return ticks, pattern


def _middle_clip(value: str, limit: int) -> str:
    if len(value) <= limit:
        return value
    tail = (limit - 1) * 2 // 3
    return value[: limit - 1 - tail] + "…" + value[-tail:]
