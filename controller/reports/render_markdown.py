"""The drift report as markdown: for a reports branch, a pull request or an issue.

Every name and value comes from the nodes or the documents, so none is trusted as markup:
plain text has markdown and HTML characters escaped, values sit in code spans whose fence
is longer than any backtick run inside, and table cells never carry a raw ``|`` or line
break (GitHub's tables split on both).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from controller.output import terminal
from controller.reports.model import DriftedResource, DriftReport, SeriesPoint
from controller.reports.values import short, show, when
from controller.words import count

VALUE_LIMIT = 300  # characters of a value shown inline; the diff and the JSON keep it all
SPARK = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 48

_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~>])")
_BADGE = {"in sync": "✅ in sync", "drift": "📝 drift", "trouble": "❌ trouble"}
_SYMBOL = {"create": "+", "update": "~", "delete": "-", "error": "!"}


def text(value: str) -> str:
    """Plain text: HTML and markdown characters escaped, on one line."""
    escaped = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _SPECIAL.sub(r"\\\1", escaped).replace("\r", " ").replace("\n", " ")


def code(value: str) -> str:
    """An inline code span that no content can close early, safe in a table cell."""
    if value == "":
        return '`""`'  # an empty string, told apart from an absent value
    flat = value.replace("\r", " ").replace("\n", "⏎").replace("|", "\\|")
    longest = max((len(m) for m in re.findall(r"`+", flat)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") or not flat.strip() else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


def render(report: DriftReport) -> str:
    lines = [f"# FazAI drift report: {text(report.title)}", ""]
    lines += [
        f"**{_BADGE[report.status]}**: {count(report.drifted, 'drifted resource')} on "
        f"{sum(1 for n in report.nodes if n.drifted)} of {count(len(report.nodes), 'node')}"
        + (f", {count(report.failed_nodes, 'node')} unreadable" if report.failed_nodes else "")
        + ".",
        "",
        f"Generated {when(report.generated)}.",
        "",
    ]
    if report.sources:
        lines += ["## Sources", "", "| source | location | branch | revision | last sync |"]
        lines.append("|---|---|---|---|---|")
        for s in report.sources:
            error = f" ⚠️ {text(s.error)}" if s.error else ""
            lines.append(
                f"| {code(s.name)} | {code(s.location)} | {code(s.branch or '-')} "
                f"| {code(short(s.revision))} | {when(s.last_sync)}{error} |"
            )
        lines.append("")
    lines += _nodes(report)
    lines += _history(report.series, report.window_days)
    lines += _resources(report.resources)
    return terminal.clean("\n".join(lines).rstrip("\n") + "\n")


def _nodes(report: DriftReport) -> list[str]:
    lines = [
        "## Nodes",
        "",
        "| node | platform | mode | create | update | delete | errors | checked | revision "
        "| status |",
        "|---|---|---|---:|---:|---:|---:|---|---|---|",
    ]
    for n in report.nodes:
        if n.error:
            status = f"⚠️ {text(n.error)}"
        else:
            status = "in sync" if n.in_sync else ("drift" if n.drifted else "errors")
        lines.append(
            f"| {code(n.node)} | {text(n.platform or '-')} | {text(n.mode or '-')} | {n.create} "
            f"| {n.update} | {n.delete} | {n.errors} | {when(n.checked)} "
            f"| {code(short(n.revision))} | {status} |"
        )
    if not report.nodes:
        lines.append("| (no node) | | | | | | | | | |")
    return [*lines, ""]


def sparkline(points: Sequence[SeriesPoint], width: int = SPARK_WIDTH) -> str:
    """The drift counts as block characters, the highest of each bucket when there are
    more points than ``width``."""
    if not points:
        return ""
    values = [p.drifted for p in points]
    if len(values) > width:
        size = len(values) / width
        values = [max(values[int(i * size) : int((i + 1) * size)]) for i in range(width)]
    top = max(values)
    if top == 0:
        return SPARK[0] * len(values)
    return "".join(SPARK[round(v / top * (len(SPARK) - 1))] for v in values)


def _history(points: Sequence[SeriesPoint], days: int) -> list[str]:
    lines = [f"## Drift over the last {count(days, 'day')}", ""]
    if not points:
        return [*lines, "No run recorded in this period.", ""]
    latest = points[-1]
    lines += [
        f"`{sparkline(points)}` {count(len(points), 'run')}; "
        f"most {max(p.drifted for p in points)}, "
        f"latest {latest.drifted} (run {latest.run_id}, {when(latest.time)}).",
        "",
    ]
    return lines


def _resources(resources: Sequence[DriftedResource]) -> list[str]:
    if not resources:
        return ["## Drifted resources", "", "None: every node read matches its documents.", ""]
    lines = ["## Drifted resources", ""]
    node = None
    for r in resources:
        if r.node != node:
            node = r.node
            count = sum(1 for x in resources if x.node == node)
            lines += [f"### {text(node)} ({count})", ""]
        lines.append(f"- `{_SYMBOL[r.action]}` {code(f'{r.kind}/{r.name}')} {r.action}")
        if r.error:
            lines.append(f"  - error: {text(r.error)}")
        for change in r.changes:
            lines.append(
                f"  - {code(change.field)}: {code(show(change.live, VALUE_LIMIT))} → "
                f"{code(show(change.desired, VALUE_LIMIT))}"
            )
            if change.diff:
                longest = max((len(m) for m in re.findall(r"`{3,}", change.diff)), default=0)
                fence = "`" * max(3, longest + 1)
                lines += [
                    f"    {fence}diff",
                    *("    " + ln for ln in change.diff.splitlines()),
                    f"    {fence}",
                ]
        lines.append("")
    return lines
