"""A pending approval for people at a terminal, from the plan JSON the API serves: per
node its counts (``fazai approvals``), and every change to apply (``fazai approve``, before
it asks)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from controller.output import terminal
from controller.output.summary import SYMBOLS
from controller.source import revision as revisions
from controller.words import count

ACTIONS = ("create", "update", "delete")
_FIELD_LIMIT = 160  # a long value is cut: the full plan is `fazai approvals -o json`


def printable(text: str) -> str:
    """A field on one line with its control characters shown, never sent raw (a field may
    carry terminal escapes, or a newline posing as a line of the plan)."""
    return terminal.clean(text, one_line=True)


def counts(plan: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """Node -> {create, update, delete} of the plan's changes; nodes in plan order."""
    out: dict[str, dict[str, int]] = {}
    for node in plan.get("nodes") or []:
        if isinstance(node, Mapping) and isinstance(node.get("node"), str):
            out[node["node"]] = dict.fromkeys(ACTIONS, 0)
    for change in plan.get("changes") or []:
        if not isinstance(change, Mapping):
            continue
        per = out.setdefault(str(change.get("node")), dict.fromkeys(ACTIONS, 0))
        action = change.get("action")
        if action in ACTIONS:
            per[action] += 1
    return out


def counts_text(per_node: Mapping[str, Mapping[str, int]]) -> str:
    """``web-1 +1 ~2 -0, fw +0 ~1 -0``."""
    return ", ".join(
        printable(node) + " " + " ".join(f"{SYMBOLS[a]}{n[a]}" for a in ACTIONS)
        for node, n in per_node.items()
    )


def lines(approval: Mapping[str, Any]) -> list[str]:
    """What approving will do: a header, then per node its changes with their fields."""
    plan = approval.get("plan") or {}
    per_node = counts(plan)
    total = {a: sum(n[a] for n in per_node.values()) for a in ACTIONS}
    revision = revisions.short(str(approval.get("revision") or ""))
    out = [
        f"approval {printable(str(approval.get('id')))}: {printable(str(approval.get('source')))}"
        + (f" at {printable(revision)}" if revision else "")
        + f", created {printable(str(approval.get('created', '')))}, {standing(approval)}",
    ]
    changes = [c for c in plan.get("changes") or [] if isinstance(c, Mapping)]
    for node in per_node:
        mine = [c for c in changes if str(c.get("node")) == node]
        if not mine:
            continue
        out.append(f"{printable(node)}:")
        for change in mine:
            action = str(change.get("action"))
            out.append(
                f"  {SYMBOLS.get(action, '?')} {printable(str(change.get('kind')))}/"
                f"{printable(str(change.get('name')))}  {printable(action)}"
            )
            for field in change.get("changes") or []:
                if isinstance(field, Mapping):
                    out.append(
                        f"      {printable(str(field.get('field')))}: "
                        f"{_value(field.get('live'))} → {_value(field.get('desired'))}"
                    )
    reasons = [r for r in approval.get("reasons") or [] if isinstance(r, str)]
    if reasons:
        out.append(f"A policy asks for {count(int(approval.get('required') or 1), 'approval')}:")
        out += [f"  {printable(reason)}" for reason in reasons]
    nodes = sum(1 for n in per_node.values() if any(n.values()))
    out.append(
        f"Approving applies {count(sum(total.values()), 'change')} ({total['create']} to "
        f"create, {total['update']} to update, {total['delete']} to delete) on "
        f"{count(nodes, 'node')}."
    )
    return out


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    text = printable(text)
    return text if len(text) <= _FIELD_LIMIT else text[: _FIELD_LIMIT - 1] + "…"


def standing(approval: Mapping[str, Any]) -> str:
    """``approvals 1/2 (by alice)``: what a pending approval has and needs."""
    by = [printable(str(name)) for name in approval.get("approvedBy") or []]
    text = f"approvals {len(by)}/{approval.get('required', 1)}"
    return text + (f" (by {', '.join(by)})" if by else "")
