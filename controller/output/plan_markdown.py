"""The plan as markdown, for pull-request comments."""

from __future__ import annotations

import html
import json
from typing import Any

from controller.output import terminal
from controller.output.plan_text import policy_line, verdict_word
from controller.output.summary import SYMBOLS, summary_line
from controller.plan.diff import Action
from controller.plan.items import Plan, PlanItem
from controller.plan.verdicts import Effect, Verdict
from controller.source import revision as revisions


def render(plan: Plan) -> str:
    status = (
        "❌ trouble" if plan.has_errors else ("📝 changes" if plan.has_changes else "✅ in sync")
    )
    lines = [f"### FazAI plan: {status}", ""]
    revision = f" at `{revisions.short(plan.revision)}`" if plan.revision else ""
    lines += [f"Source: `{_cell(plan.source)}`{revision}", "", f"**{summary_line(plan)}**", ""]
    gate = policy_line(plan)
    if gate:
        lines += [f"**{'⛔' if plan.denied else '✋'} {gate}**", ""]
    lines += node_table(plan)
    lines.append("")
    for warning in plan.warnings:
        lines.append(f"> ⚠️ {_cell(str(warning))}")
    for node in plan.nodes:
        items = [i for i in node.items if i.action is not Action.NOOP]
        if not items:
            continue
        lines += ["", f"<details><summary><b>{node.node}</b>: {len(items)} change(s)</summary>", ""]
        for item in items:
            lines += item_lines(item)
        lines += ["", "</details>"]
    return terminal.clean("\n".join(lines) + "\n")


def item_lines(item: PlanItem, note: str = "", *, diffs: bool = True) -> list[str]:
    """One resource's change as a markdown list item, its field changes nested under it
    (with unified diffs unless ``diffs`` is False); ``note`` follows the action."""
    action = item.action.value
    subject = html.escape(_cell(f"{item.kind}/{item.name}"), quote=False)
    adopt = f" (adopt existing `{_value(item.adopt)}`)" if item.adopt else ""
    lines = [f"- `{SYMBOLS[action]}` **{subject}** {action}{adopt}{note}"]
    if item.error:
        lines.append(f"  - error: {html.escape(_cell(item.error), quote=False)}")
    if item.reason:
        lines.append(f"  - unresolved: {html.escape(_cell(item.reason), quote=False)}")
    lines.extend(verdict_line(v) for v in item.verdicts)
    for change in item.changes:
        lines.append(f"  - `{change.field}`: `{_value(change.live)}` → `{_value(change.desired)}`")
        if change.diff and diffs:
            fence = "````" if "```" in change.diff else "```"
            lines += [
                f"    {fence}diff",
                *("    " + ln for ln in change.diff.splitlines()),
                f"    {fence}",
            ]
    return lines


_MARKS = {Effect.DENY: "⛔", Effect.REQUIRE_APPROVAL: "✋", Effect.ALLOW: "✅"}


def verdict_line(verdict: Verdict) -> str:
    """A policy's word on an item, as a list item under it."""
    where = html.escape(_value(f"{verdict.policy}/{verdict.rule}"), quote=False)
    message = html.escape(_cell(verdict.message), quote=False)
    reason = (
        f" (reason: {html.escape(_cell(verdict.reason), quote=False)})" if verdict.reason else ""
    )
    word = verdict_word(verdict)
    return f"  - {_MARKS[verdict.effect]} policy **{word}** by `{where}`: {message}{reason}"


def node_table(plan: Plan) -> list[str]:
    """The per-node summary table (with an unresolved column when any item is)."""
    unresolved = bool(plan.unresolved)
    extra, rule = (" unresolved |", "---:|") if unresolved else ("", "")
    lines = [
        f"| node | platform | create | update | delete | in sync |{extra} status |",
        f"|---|---|---:|---:|---:|---:|{rule}---|",
    ]
    for node in plan.nodes:
        count = {a: sum(1 for i in node.items if i.action is a) for a in Action}
        status_cell = (
            f"⚠️ {html.escape(_cell(node.error), quote=False)}"
            if node.error
            else ("❗ errors" if node.failed else "ok")
        )
        lines.append(
            f"| {node.node} | {node.platform} | {count[Action.CREATE]} | {count[Action.UPDATE]} "
            f"| {count[Action.DELETE]} | {count[Action.NOOP]} |"
            + (f" {count[Action.UNRESOLVED]} |" if unresolved else "")
            + f" {status_cell} |"
        )
    return lines


def cell(text: str) -> str:
    """``text`` made safe for a table cell or a one-line list item."""
    return _cell(text)


def _value(value: Any) -> str:
    text = "(absent)" if value is None else value if isinstance(value, str) else json.dumps(value)
    # Inline code on one line: a backtick or a line break would end it early.
    return text.replace("`", "'").replace("\r", "").replace("\n", "\\n")


def _cell(text: str) -> str:
    # One line, and line breaks shown as \n: an error quoting node output must not pose
    # as list items or table rows of the plan.
    return terminal.clean(text, one_line=True).replace("|", "\\|")
