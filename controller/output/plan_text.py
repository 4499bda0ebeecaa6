"""The plan for people at a terminal: grouped by node, coloured, with a summary line."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.control import strip_control_codes
from rich.markup import escape
from rich.segment import Segment
from rich.style import Style
from rich.text import Span, Text

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
        held = sum(1 for n in plan.nodes for i in n.writes if i.approvals_needed)
        return (
            f"policy: {held} change(s) need approval "
            f"({plan.approvals_needed} approver(s)) before they are applied"
        )
    return ""


class _Lines:
    """The lines of one node's plan, rendered in one pass: a rich Text per line costs a
    wrap, a split into segments and a style merge each, and a plan of 300 creates has
    3,400 lines (0.13 s). These are yielded to the console as segments directly: one
    for the whole node when the console shows no colour, one per styled run when it does.
    Every piece is cleaned here (``Text.append``'s control-code strip, then
    :func:`terminal.clean`), so the text is as safe on a plain ``Console`` as on a
    ``SafeConsole``."""

    def __init__(self) -> None:
        self._pieces: list[tuple[str, str]] = []

    def line(self, *pieces: str | tuple[str, str], style: str = "") -> None:
        """One line of ``pieces`` (text, or text and its style); ``style`` for the pieces
        that have none of their own."""
        parts = [(p, style) if isinstance(p, str) else (p[0], p[1] or style) for p in pieces]
        if not terminal.is_clean("".join(text for text, _ in parts)):
            parts = [(terminal.clean(strip_control_codes(t)), s) for t, s in parts]
        self._pieces.extend(parts)
        self._pieces.append(("\n", ""))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        pieces = self._pieces
        if not options.no_wrap:
            # A console that wraps (not the CLI's, which soft-wraps): rich wraps the lines.
            yield self._text()
            return
        if console.color_system is None:
            yield Segment("".join(text for text, _ in pieces))
            return
        styles: dict[str, Style] = {}
        run: list[str] = []
        current = ""
        for text, style in pieces:
            if not text:
                continue
            if style != current and run:
                yield Segment("".join(run), styles.get(current) if current else None)
                run = []
            if current != style:
                current = style
                if style and style not in styles:
                    styles[style] = console.get_style(style)
            run.append(text)
        if run:
            yield Segment("".join(run), styles.get(current) if current else None)

    def _text(self) -> Text:
        spans: list[Span] = []
        at = 0
        for text, style in self._pieces:
            if style and text:
                spans.append(Span(at, at + len(text), style))
            at += len(text)
        return Text("".join(text for text, _ in self._pieces), spans=spans, end="")


def _node(node: NodePlan, show_noop: bool, note: Note | None = None) -> _Lines:
    out = _Lines()
    out.line((node.node, "bold"), f" ({node.platform}) ", (f"{node.seconds:.2f}s", "dim"))
    if node.error:
        # One line: an error quoting node output could pose as plan lines of its own.
        error = terminal.clean(f"{node.error_type}: {node.error}", one_line=True)
        out.line(f"  ! {error}", style="bold red")
        return out
    shown = [i for i in node.items if show_noop or i.action is not Action.NOOP]
    if not shown:
        out.line(f"  in sync ({len(node.items)} resources)", style="green")
    for item in shown:
        action = item.action.value
        out.line(
            f"  {SYMBOLS[action]} ",
            (f"{item.kind}/{item.name}", STYLES[action]),
            (f"  {action}", "dim"),
            (f"  adopt {item.adopt}" if item.adopt else "", "bold cyan"),
            (note(item) if note else "", "bold"),
        )
        if item.error:
            out.line(f"      {terminal.clean(item.error, one_line=True)}", style="red")
        if item.reason:
            reason = terminal.clean(item.reason, one_line=True)
            out.line(f"      unresolved: {reason}", style="yellow")
        if item.command:
            proposal = terminal.clean(item.command, one_line=True)
            out.line(f"      the agent proposes: {proposal}", style="magenta")
        for verdict in item.verdicts:
            out.line(*_verdict(verdict))
        if item.action is Action.UNMANAGED:
            continue  # listed so people know it is there; its fields are in --output json
        for change in item.changes:
            _change(change, out)
    return out


_VERDICT_STYLES = {
    Effect.DENY: "bold red",
    Effect.REQUIRE_APPROVAL: "bold yellow",
    Effect.ALLOW: "cyan",
}


def _verdict(verdict: Verdict) -> tuple[str | tuple[str, str], ...]:
    """One line under the item: the policy's word on it, and why."""
    where = terminal.clean(f"{verdict.policy}/{verdict.rule}", one_line=True)
    message = terminal.clean(verdict.message, one_line=True)
    reason = terminal.clean(f" (reason: {verdict.reason})", one_line=True) if verdict.reason else ""
    return (
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


def _change(change: Change, out: _Lines) -> None:
    out.line(
        f"      {change.field}: ",
        (_value(change.live), "red"),
        " → ",
        (_value(change.desired), "green"),
    )
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
            out.line("        " + line, style=style)


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
