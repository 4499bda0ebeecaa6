"""The drift report as plain text for a terminal (``fazai drift``)."""

from __future__ import annotations

from controller.output import terminal
from controller.reports.model import DriftReport
from controller.reports.render_markdown import sparkline
from controller.reports.values import short, show, when
from controller.words import count

VALUE_LIMIT = 200
_SYMBOL = {"create": "+", "update": "~", "delete": "-", "error": "!"}


def _line(value: str) -> str:
    """One line with no control character: a value holding terminal escape sequences
    (a file's content) must not drive the terminal it is printed on."""
    return "".join(
        "⏎" if ch == "\n" else ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in value
    )


def render(report: DriftReport) -> str:
    lines = [
        f"drift report {report.title}: {report.status}, "
        f"{count(report.drifted, 'drifted resource')} on {count(len(report.nodes), 'node')}, "
        f"generated {when(report.generated)}"
    ]
    for s in report.sources:
        lines.append(f"source {_line(s.name)} at {short(s.revision)}")
    lines.append("")
    for n in report.nodes:
        state = (
            f"unreadable: {_line(n.error)}"
            if n.error
            else f"+{n.create} ~{n.update} -{n.delete}" + (f" !{n.errors}" if n.errors else "")
        )
        lines.append(f"{_line(n.node)} ({n.platform or '?'}, {n.mode or '-'}): {state}")
        for r in (r for r in report.resources if r.node == n.node):
            lines.append(f"  {_SYMBOL[r.action]} {_line(r.kind)}/{_line(r.name)}")
            if r.error:
                lines.append(f"      error: {_line(r.error)}")
            for c in r.changes:
                lines.append(
                    f"      {_line(c.field)}: {_line(show(c.live, VALUE_LIMIT))} -> "
                    f"{_line(show(c.desired, VALUE_LIMIT))}"
                )
    if report.series:
        lines += ["", f"last {count(report.window_days, 'day')}: {sparkline(report.series)}"]
    return terminal.clean("\n".join(lines) + "\n")
