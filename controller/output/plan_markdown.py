"""The plan as markdown, for pull-request comments."""

from __future__ import annotations

import json
from typing import Any

from controller.engine.diff import Action
from controller.engine.plan import Plan
from controller.output.summary import SYMBOLS, summary_line


def render(plan: Plan) -> str:
    status = (
        "❌ trouble" if plan.has_errors else ("📝 changes" if plan.has_changes else "✅ in sync")
    )
    lines = [f"### FazAI plan: {status}", ""]
    revision = f" at `{plan.revision[:12]}`" if plan.revision else ""
    lines += [f"Source: `{_cell(plan.source)}`{revision}", "", f"**{summary_line(plan)}**", ""]
    lines += [
        "| node | platform | create | update | delete | in sync | status |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for node in plan.nodes:
        count = {a: sum(1 for i in node.items if i.action is a) for a in Action}
        status_cell = (
            f"⚠️ {_cell(node.error)}" if node.error else ("❗ errors" if node.failed else "ok")
        )
        lines.append(
            f"| {node.node} | {node.platform} | {count[Action.CREATE]} | {count[Action.UPDATE]} "
            f"| {count[Action.DELETE]} | {count[Action.NOOP]} | {status_cell} |"
        )
    lines.append("")
    for warning in plan.warnings:
        lines.append(f"> ⚠️ {_cell(str(warning))}")
    for node in plan.nodes:
        items = [i for i in node.items if i.action is not Action.NOOP]
        if not items:
            continue
        lines += ["", f"<details><summary><b>{node.node}</b>: {len(items)} change(s)</summary>", ""]
        for item in items:
            action = item.action.value
            lines.append(f"- `{SYMBOLS[action]}` **{item.kind}/{item.name}** {action}")
            if item.error:
                lines.append(f"  - error: {_cell(item.error)}")
            for change in item.changes:
                lines.append(
                    f"  - `{change.field}`: `{_value(change.live)}` → `{_value(change.desired)}`"
                )
                if change.diff:
                    fence = "````" if "```" in change.diff else "```"
                    lines += [
                        f"    {fence}diff",
                        *("    " + ln for ln in change.diff.splitlines()),
                        f"    {fence}",
                    ]
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def _value(value: Any) -> str:
    text = "(absent)" if value is None else value if isinstance(value, str) else json.dumps(value)
    return text.replace("`", "'")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
