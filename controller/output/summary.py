"""The one-line summary shared by every human-facing rendering."""

from __future__ import annotations

from controller.plan.items import Plan
from controller.words import count


def summary_line(plan: Plan) -> str:
    counts = plan.counts()
    failed = [n for n in plan.nodes if n.error]
    parts = [
        f"{counts['create']} to create",
        f"{counts['update']} to update",
        f"{counts['delete']} to delete",
        f"{counts['noop']} in sync",
    ]
    if counts["error"]:
        parts.append(f"{counts['error']} not comparable")
    if counts["unmanaged"]:
        parts.append(f"{counts['unmanaged']} unmanaged")
    if counts.get("unresolved"):
        parts.append(f"{counts['unresolved']} unresolved")
    text = f"Plan: {', '.join(parts)} on {count(len(plan.nodes), 'node')}"
    if failed:
        text += f"; {count(len(failed), 'node')} could not be read"
    return text + "."


SYMBOLS = {
    "create": "+",
    "update": "~",
    "delete": "-",
    "noop": "=",
    "error": "!",
    "unmanaged": "?",
    "unresolved": "*",  # no handler can make it so: left for the agent
}
