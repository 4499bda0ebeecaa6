"""The plan for people at a terminal: grouped by node, coloured, with a summary line."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from rich.console import Console, Group
from rich.markup import escape
from rich.text import Text

from controller.output import terminal
from controller.output.summary import SYMBOLS, summary_line
from controller.plan.diff import Action, Change
from controller.plan.items import NodePlan, Plan, PlanItem
from controller.plan.verdicts import Effect, Verdict
from controller.source import revision as revisions

STYLES = {
    "create": "green",
    "update": "yellow",
    "delete": "red",
    "noop": "dim",
    "error": "bold red",
    "unmanaged": "magenta",
    "unresolved": "bold yellow",
}


Note = Callable[[PlanItem], str]
"""A few words after an item's action (a review's marking), or an empty string."""


def render(
    plan: Plan, console: Console, *, show_noop: bool = False, note: Note | None = None
) -> None:
    if revisions.is_dirty(plan.revision):
        console.print(
            Text(
                f"source {plan.source} at {revisions.short(plan.revision)}: "
                "planned with uncommitted changes, not as any commit",
                style="yellow",
            )
        )
    for warning in plan.warnings:
        console.print(f"[yellow]warning:[/] {escape(terminal.clean(str(warning), one_line=True))}")
    for node in plan.nodes:
        console.print(_node(node, show_noop, note))
    style = "red" if plan.has_errors else ("yellow" if plan.has_changes else "green")
    console.print(Text(summary_line(plan), style=f"bold {style}"))
    gate = policy_line(plan)
    if gate:
        console.print(Text(gate, style="bold red" if plan.denied else "bold yellow"))


def policy_line(plan: Plan) -> str:
    """What the policies' verdicts mean for applying the plan; empty when nothing."""
    if plan.denied:
        return f"policy: {len(plan.denied)} change(s) denied; nothing of this plan is applied"
    if plan.approvals_needed:
        held = sum(1 for n in plan.nodes for i in n.changed if i.approvals_needed)
        return (
            f"policy: {held} change(s) need approval "
            f"({plan.approvals_needed} approver(s)) before they are applied"
        )
    return ""


def _node(node: NodePlan, show_noop: bool, note: Note | None = None) -> Group:
    header = Text.assemble(
        (node.node, "bold"), f" ({node.platform}) ", (f"{node.seconds:.2f}s", "dim")
    )
    lines: list[Any] = [header]
    if node.error:
        # One line: an error quoting node output could pose as plan lines of its own.
        error = terminal.clean(f"{node.error_type}: {node.error}", one_line=True)
        lines.append(Text(f"  ! {error}", style="bold red"))
        return Group(*lines)
    shown = [i for i in node.items if show_noop or i.action is not Action.NOOP]
    if not shown:
        lines.append(Text(f"  in sync ({len(node.items)} resources)", style="green"))
    for item in shown:
        action = item.action.value
        lines.append(
            Text.assemble(
                f"  {SYMBOLS[action]} ",
                (f"{item.kind}/{item.name}", STYLES[action]),
                (f"  {action}", "dim"),
                (f"  adopt {item.adopt}" if item.adopt else "", "bold cyan"),
                (note(item) if note else "", "bold"),
            )
        )
        if item.error:
            lines.append(Text(f"      {terminal.clean(item.error, one_line=True)}", style="red"))
        lines.extend(_verdict(v) for v in item.verdicts)
        if item.action is Action.UNMANAGED:
            continue  # listed so people know it is there; its fields are in --output json
        for change in item.changes:
            lines.extend(_change(change))
    return Group(*lines)


_VERDICT_STYLES = {
    Effect.DENY: "bold red",
    Effect.REQUIRE_APPROVAL: "bold yellow",
    Effect.ALLOW: "cyan",
}


def _verdict(verdict: Verdict) -> Text:
    """One line under the item: the policy's word on it, and why."""
    where = terminal.clean(f"{verdict.policy}/{verdict.rule}", one_line=True)
    message = terminal.clean(verdict.message, one_line=True)
    reason = terminal.clean(f" (reason: {verdict.reason})", one_line=True) if verdict.reason else ""
    return Text.assemble(
        "      policy ",
        (verdict_word(verdict), _VERDICT_STYLES[verdict.effect]),
        f" by {where}: {message}{reason}",
    )


def verdict_word(verdict: Verdict) -> str:
    if verdict.effect is Effect.DENY:
        return "denied"
    if verdict.effect is Effect.REQUIRE_APPROVAL:
        n = verdict.approvals
        return "needs approval" if n == 1 else f"needs {n} approvals"
    return "allowed"


def _change(change: Change) -> list[Text]:
    out = [
        Text.assemble(
            f"      {change.field}: ",
            (_value(change.live), "red"),
            " → ",
            (_value(change.desired), "green"),
        )
    ]
    if change.diff:
        for line in change.diff.splitlines():
            style = (
                "green"
                if line.startswith("+")
                else "red"
                if line.startswith("-")
                else "cyan"
                if line.startswith("@@")
                else ""
            )
            out.append(Text("        " + line, style=style))
    return out


def _value(value: Any) -> str:
    if value is None:
        return "(absent)"
    if isinstance(value, str):
        # Digests identify contents; a prefix is enough to tell them apart on screen.
        # One line: a newline in a value could pose as a line of the plan.
        return (
            value[:19] + "…"
            if value.startswith("sha256:")
            else terminal.clean(value, one_line=True)
        )
    return terminal.clean(json.dumps(value, ensure_ascii=False), one_line=True)
