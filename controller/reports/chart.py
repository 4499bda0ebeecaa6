"""The chart of drift over time as an inline SVG, drawn here so the HTML report needs no
script and no asset: one line per source (drifted resources per run), a marker per run
with its details as a tooltip, runs that met errors ringed in red.

Every text that reaches the SVG (source names, revisions) is escaped; nothing in it is
executable. Thousands of runs are thinned to the highest point per pixel column, so the
page stays small whatever the history.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape

from controller.reports.model import SeriesPoint
from controller.reports.values import short, when

WIDTH, HEIGHT = 880, 280
LEFT, RIGHT, TOP, BOTTOM = 52, 16, 16, 58
COLOURS = ("#2563eb", "#d97706", "#059669", "#7c3aed", "#db2777", "#0891b2", "#65a30d")
ERROR = "#dc2626"
COLUMN_PX = 2.0  # at most one marker per source in this many pixels


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


def render(points: Sequence[SeriesPoint], start: datetime, end: datetime) -> str:
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    span = max((end - start).total_seconds(), 1.0)
    top, step = nice_top(max((p.drifted for p in points), default=0))

    def x_of(moment: datetime) -> float:
        offset = (moment - start).total_seconds() / span
        return LEFT + plot_w * min(max(offset, 0.0), 1.0)

    def y_of(value: int) -> float:
        return TOP + plot_h * (1 - value / top)

    label = f"Drifted resources per run, {when(start)} to {when(end)}"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{escape(label)}" class="chart">',
        f"<title>{escape(label)}</title>",
    ]
    for value in range(0, top + 1, step):
        y = y_of(value)
        out.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">{value}</text>'
        )
    for tick in _time_ticks(start, end):
        x = x_of(tick)
        out.append(
            f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + plot_h}" class="grid"/>'
            f'<text x="{x:.1f}" y="{TOP + plot_h + 18}" text-anchor="middle">'
            f"{tick:%m-%d}</text>"
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
    sources = sorted({p.source for p in points})
    for index, source in enumerate(sources):
        colour = COLOURS[index % len(COLOURS)]
        plotted = thin(
            [Plotted(x_of(p.time), y_of(p.drifted), p) for p in points if p.source == source]
        )
        path = " ".join(f"{p.x:.1f},{p.y:.1f}" for p in plotted)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for p in plotted:
            out.append(_marker(p, colour))
        legend_y = HEIGHT - 14
        legend_x = LEFT + 170 * index
        out.append(
            f'<rect x="{legend_x}" y="{legend_y - 9}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{legend_x + 14}" y="{legend_y}">{escape(_clip(source, 22))}</text>'
        )
    out.append("</svg>")
    return "\n".join(out)


def _marker(p: Plotted, colour: str) -> str:
    point = p.point
    tip = (
        f"run {point.run_id} ({point.command}, {point.trigger}) {when(point.time)}\n"
        f"{point.source} at {short(point.revision)}: {point.drifted} drifted"
        + (f", {point.errors} error(s)" if point.errors else "")
        + "".join(f"\n  {node}: {count}" for node, count in point.nodes[:12])
    )
    ring = f' stroke="{ERROR}" stroke-width="2"' if point.errors else ""
    return (
        f'<circle cx="{p.x:.1f}" cy="{p.y:.1f}" r="3" fill="{colour}"{ring}>'
        f"<title>{escape(tip)}</title></circle>"
    )


def _time_ticks(start: datetime, end: datetime) -> list[datetime]:
    """Midnights (UTC) between start and end, at most eight of them evenly spread."""
    first = start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if first < start:
        first += timedelta(days=1)
    days = max(0, (end - first).days)
    every = max(1, math.ceil((days + 1) / 8))
    return [first + timedelta(days=d) for d in range(0, days + 1, every)]


def _clip(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"
