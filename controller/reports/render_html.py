"""The drift report as one self-contained HTML page: inline CSS, an inline SVG chart, no
script, no external asset, so it opens from a mail attachment or a git hosting's raw view.

Every value is escaped with :func:`html.escape` (quotes included), and the page declares a
Content-Security-Policy that allows no script at all: a resource named ``<script>`` shows
as text, and even a missed escape could not run.
"""

from __future__ import annotations

from datetime import timedelta
from html import escape

from controller.reports import chart
from controller.reports.model import DriftedResource, DriftReport, NodeSummary
from controller.reports.values import short, show, when
from controller.words import count

CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'"
)

_CSS = """
:root { color-scheme: light; --ink: #1f2937; --muted: #6b7280; --line: #e5e7eb; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink);
       margin: 0 auto; max-width: 1100px; padding: 24px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
h3 { font-size: 15px; margin: 20px 0 6px; }
.muted { color: var(--muted); }
.badge { display: inline-block; padding: 2px 10px; border-radius: 999px; font-weight: 600; }
.s0 { background: #dcfce7; color: #166534; } .s1 { background: #fef3c7; color: #92400e; }
.s2 { background: #fee2e2; color: #991b1b; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; margin: 16px 0; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; min-width: 130px; }
.card b { display: block; font-size: 22px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line);
         vertical-align: top; }
th { font-weight: 600; background: #f9fafb; } td.n { text-align: right; }
tr.bad td { background: #fef2f2; }
table.changes { table-layout: fixed; } table.changes th:first-child { width: 22%; }
code, pre { font: 12.5px/1.4 ui-monospace, SFMono-Regular, Menlo, monospace; }
code { background: #f3f4f6; padding: 0 3px; border-radius: 3px; overflow-wrap: anywhere; }
pre { background: #f9fafb; border: 1px solid var(--line); padding: 8px; overflow-x: auto;
      white-space: pre-wrap; overflow-wrap: anywhere; margin: 4px 0; }
details { border: 1px solid var(--line); border-radius: 6px; margin: 6px 0; padding: 4px 10px; }
summary { cursor: pointer; }
.a-create { color: #15803d; } .a-update { color: #b45309; } .a-delete { color: #b91c1c; }
.a-error { color: #7f1d1d; }
.chart { width: 100%; height: auto; font: 11px system-ui, sans-serif; fill: var(--ink); }
.chart .grid { stroke: var(--line); } .chart .axis { stroke: #9ca3af; }
.chart .empty { fill: var(--muted); font-size: 13px; }
"""


def e(value: object) -> str:
    return escape(str(value), quote=True)


def render(report: DriftReport) -> str:
    start = report.generated - timedelta(days=report.window_days)
    nodes_drifted = sum(1 for n in report.nodes if n.drifted)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{e(CSP)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>FazAI drift report: {e(report.title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>FazAI drift report: {e(report.title)}</h1>",
        f'<p><span class="badge s{report.exit_code}">{e(report.status)}</span> '
        f'<span class="muted">generated {e(when(report.generated))}</span></p>',
        '<div class="cards">',
        _card("drifted resources", report.drifted),
        _card("nodes drifted", f"{nodes_drifted} / {len(report.nodes)}"),
        _card("nodes unreadable", report.failed_nodes),
        _card("runs in chart", len(report.series)),
        "</div>",
    ]
    parts += _sources(report)
    parts += _nodes(report.nodes)
    parts += [
        f"<h2>Drift over the last {count(report.window_days, 'day')}</h2>",
        chart.render(report.series, start, report.generated),
    ]
    parts += _resources(report.resources)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _card(label: str, value: object) -> str:
    return f'<div class="card"><b>{e(value)}</b><span class="muted">{e(label)}</span></div>'


def _sources(report: DriftReport) -> list[str]:
    if not report.sources:
        return []
    rows = [
        "<h2>Sources</h2><table><thead><tr><th>source</th><th>location</th><th>branch</th>"
        "<th>revision</th><th>last sync</th><th>error</th></tr></thead><tbody>"
    ]
    for s in report.sources:
        rows.append(
            f"<tr{' class=bad' if s.error else ''}><td>{e(s.name)}</td>"
            f"<td><code>{e(s.location)}</code></td><td>{e(s.branch or '-')}</td>"
            f'<td><code title="{e(s.revision or "")}">{e(short(s.revision))}</code></td>'
            f"<td>{e(when(s.last_sync))}</td><td>{e(s.error or '')}</td></tr>"
        )
    rows.append("</tbody></table>")
    return rows


def _nodes(nodes: tuple[NodeSummary, ...]) -> list[str]:
    rows = [
        "<h2>Nodes</h2><table><thead><tr><th>node</th><th>platform</th><th>mode</th>"
        "<th>create</th><th>update</th><th>delete</th><th>errors</th><th>checked</th>"
        "<th>revision</th><th>status</th></tr></thead><tbody>"
    ]
    for n in nodes:
        status = n.error or ("in sync" if n.in_sync else "drift" if n.drifted else "errors")
        bad = " class=bad" if n.error or n.errors else ""
        rows.append(
            f"<tr{bad}><td><b>{e(n.node)}</b></td><td>{e(n.platform or '-')}</td>"
            f"<td>{e(n.mode or '-')}</td><td class=n>{n.create}</td><td class=n>{n.update}</td>"
            f"<td class=n>{n.delete}</td><td class=n>{n.errors}</td><td>{e(when(n.checked))}</td>"
            f'<td><code title="{e(n.revision or "")}">{e(short(n.revision))}</code></td>'
            f"<td>{e(status)}</td></tr>"
        )
    if not nodes:
        rows.append('<tr><td colspan="10" class="muted">no node</td></tr>')
    rows.append("</tbody></table>")
    return rows


def _resources(resources: tuple[DriftedResource, ...]) -> list[str]:
    out = ["<h2>Drifted resources</h2>"]
    if not resources:
        return [*out, '<p class="muted">None: every node read matches its documents.</p>']
    node = None
    for r in resources:
        if r.node != node:
            node = r.node
            count = sum(1 for x in resources if x.node == node)
            out.append(f"<h3>{e(node)} <span class=muted>({count})</span></h3>")
        out.append(
            f'<details open><summary><b class="a-{e(r.action)}">{e(r.action)}</b> '
            f"<code>{e(r.kind)}/{e(r.name)}</code></summary>"
        )
        if r.error:
            out.append(f"<p>error: {e(r.error)}</p>")
        if r.changes:
            out.append(
                '<table class="changes"><thead><tr><th>field</th><th>live</th><th>desired</th>'
                "</tr></thead><tbody>"
            )
            for c in r.changes:
                out.append(
                    f"<tr><td><code>{e(c.field)}</code></td><td><pre>{e(show(c.live))}</pre></td>"
                    f"<td><pre>{e(show(c.desired))}</pre></td></tr>"
                )
                if c.diff:
                    out.append(f'<tr><td></td><td colspan="2"><pre>{e(c.diff)}</pre></td></tr>')
            out.append("</tbody></table>")
        out.append("</details>")
    return out
