"""How ``fazai watch`` shows an event: one line, coloured by its type.

Lines are rich ``Text`` built from plain strings, never markup, so nothing in an event
(a node name, a failure message) can restyle or hide the rest of the line.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from rich.text import Text

from controller.events import EventType
from controller.output import terminal
from controller.source import revision as revisions
from controller.words import count

STYLES: dict[str, str] = {
    EventType.RECONCILE_QUEUED: "dim",
    EventType.RUN_STARTED: "cyan",
    EventType.NODE_READ: "blue",
    EventType.DRIFT_DETECTED: "magenta",
    EventType.APPROVAL_PENDING: "bold yellow",
    EventType.CHANGE_APPLIED: "green",
    EventType.NODE_VERIFIED: "bold green",
    EventType.NODE_ROLLED_BACK: "yellow",
    EventType.NODE_FAILED: "bold red",
    EventType.RUN_FINISHED: "cyan",
    EventType.SOURCE_ERROR: "red",
    EventType.SIGNATURE_REFUSED: "bold red",
    EventType.AGENT_TOKEN: "dim",
    EventType.AGENT_ACTION: "bold",
    EventType.AGENT_OBSERVATION: "cyan",
    EventType.AGENT_FINISHED: "bold magenta",
}
_RUN_STATUS_STYLES = {"succeeded": "bold green", "partial": "yellow", "failed": "bold red"}
_TYPE_WIDTH = max(len(t) for t in STYLES)


def style(event: Mapping[str, Any]) -> str:
    kind = str(event.get("type", ""))
    if kind == EventType.RUN_FINISHED:
        return _RUN_STATUS_STYLES.get(str(event.get("data", {}).get("status")), "red")
    return STYLES.get(kind, "")


def line(event: Mapping[str, Any]) -> Text:
    data: Mapping[str, Any] = event.get("data") or {}
    text = Text()
    text.append(_clock(event.get("time")) + "  ", style="dim")
    text.append(f"{event.get('type', '?'):<{_TYPE_WIDTH}}", style=style(event) or None)
    # One line per event: a newline in a message must not pose as another event.
    details = "  ".join(_subject(data) + _details(str(event.get("type")), data))
    text.append("  " + terminal.clean(details, one_line=True))
    return text


def _subject(data: Mapping[str, Any]) -> list[str]:
    """Where it happened: source, run, node, resource."""
    parts = []
    if data.get("source"):
        parts.append(str(data["source"]))
    if data.get("run_id") is not None:
        parts.append(f"run {data['run_id']}")
    if data.get("node"):
        parts.append(str(data["node"]))
    if data.get("kind") and data.get("name"):
        parts.append(f"{data['kind']}/{data['name']}")
    if data.get("action"):
        parts.append(str(data["action"]))
    return parts


def _details(kind: str, data: Mapping[str, Any]) -> list[str]:
    parts = []
    if kind == EventType.AGENT_TOKEN:
        return [str(data.get("text", ""))]
    if kind == EventType.AGENT_OBSERVATION:
        return [f"Goal/{data.get('goal')}", str(data.get("text", ""))[:300]]
    if kind == EventType.AGENT_FINISHED:
        return [f"Goal/{data.get('goal')}", f"{data.get('outcome')} ({data.get('path')})",
                str(data.get("reason", ""))]  # fmt: skip
    if data.get("command"):
        parts.append(str(data["command"]))
    if data.get("revision"):
        parts.append(revisions.short(str(data["revision"])))
    if data.get("trigger"):
        parts.append(f"({data['trigger']})")
    if data.get("mode"):
        parts.append(f"mode={data['mode']}")
    if data.get("status"):
        parts.append(str(data["status"]))
    if isinstance(data.get("seconds"), int | float):
        parts.append(f"{data['seconds']:.2f}s")
    if isinstance(data.get("changes"), int):
        parts.append(count(data["changes"], "change"))
    elif isinstance(data.get("items"), list):
        parts.append(count(len(data["items"]), "change"))
    if data.get("approval_id"):
        parts.append(f"approval {data['approval_id']}")
        if data.get("nodes"):
            parts.append("nodes " + ",".join(str(n) for n in data["nodes"]))
    for key in ("reason", "error", "message"):
        if data.get(key):
            parts.append(f"{key}: {data[key]}")
    if data.get("retry_in") is not None:
        parts.append(f"retry in {data['retry_in']}s")
    return parts


def _clock(value: Any) -> str:
    try:
        return datetime.fromisoformat(str(value)).astimezone().strftime("%H:%M:%S")
    except ValueError:
        return "--:--:--"
