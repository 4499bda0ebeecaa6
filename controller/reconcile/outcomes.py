"""The outcome lines of ``fazai serve``'s log: what each reconcile did, not only that it
started. Fed by the event bus, like the metrics, so neither the engine nor the loop
logs the same thing twice:

    run 42 (apply, infra@1a2b3c4d5e6f) started
    node web-1: applied 3 changes (run 42)
    node edge-fw: drift found, 2 items, mode detect (run 41)
    node db-1: failed because connection refused (run 42)
    node web-2: rolled back because verify failed: ... (run 42)
    run 42 (apply) finished partial in 4.1 s

Each record carries ``run_id``, ``source``, ``node`` and ``event`` as structured fields
(see controller.logformat) for ``--log-format json``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from controller import words
from controller.events import Event, EventBus, EventType
from controller.logformat import FIELDS
from controller.output import terminal
from controller.source import revision as revisions

log = logging.getLogger("fazai.outcome")


def line(event: Event) -> tuple[int, str] | None:
    """The level and text of ``event``'s log line; None for events logged elsewhere (a
    source's errors, refused signatures) or too chatty (each change, tokens). Every value
    is written on one line: a reason or error comes from a node's or firewall's output,
    and a newline in it would forge a log line of its own."""
    data = {key: _one_line(value) for key, value in event.data.items()}
    node = data.get("node")
    run = f" (run {data['run_id']})" if data.get("run_id") is not None else ""
    kind = event.type
    if kind is EventType.RUN_STARTED:
        revision = revisions.short(str(data.get("revision") or ""))
        where = f", {data.get('source')}@{revision}" if revision else ""
        return logging.INFO, f"run {data.get('run_id')} ({data.get('command')}{where}) started"
    if kind is EventType.NODE_READ and data.get("error"):
        return logging.WARNING, f"node {node}: cannot be read: {data['error']}{run}"
    if kind is EventType.DRIFT_DETECTED:
        count = int(data.get("changes") or 0)
        mode = data.get("mode")
        return (
            logging.INFO,
            f"node {node}: drift found, {words.count(count, 'item')}, mode {mode}{run}",
        )
    if kind is EventType.NODE_VERIFIED:
        count = int(data.get("changes") or 0)
        return logging.INFO, f"node {node}: applied {words.count(count, 'change')}{run}"
    if kind is EventType.NODE_ROLLED_BACK:
        return logging.WARNING, f"node {node}: rolled back because {data.get('reason')}{run}"
    if kind is EventType.NODE_FAILED:
        return logging.ERROR, f"node {node}: failed because {data.get('reason')}{run}"
    if kind is EventType.APPROVAL_PENDING:
        nodes = ", ".join(str(n) for n in data.get("nodes") or ())
        approval = data.get("approval_id")
        return (
            logging.INFO,
            f"approval {approval} waits for nodes {nodes} (fazai approve {approval})",
        )
    if kind is EventType.RUN_FINISHED:
        seconds = data.get("seconds")
        took = f" in {seconds} s" if seconds is not None else ""
        status = data.get("status")
        level = logging.INFO if status in ("succeeded", "converged") else logging.WARNING
        return level, f"run {data.get('run_id')} ({data.get('command')}) finished {status}{took}"
    return None


def _one_line(value: Any) -> Any:
    if isinstance(value, str):
        return terminal.clean(value, one_line=True)
    if isinstance(value, list | tuple):
        return [_one_line(item) for item in value]
    return value


def fields(event: Event) -> dict[str, Any]:
    out: dict[str, Any] = {"event": event.type.value, "event_id": event.id}
    for key in ("run_id", "source", "node", "revision", "mode", "status", "changes"):
        value = event.data.get(key)
        if value is not None:
            out[key] = value
    return out


def write(event: Event) -> None:
    found = line(event)
    if found is not None:
        level, text = found
        log.log(level, "%s", text, extra={FIELDS: fields(event)})


async def follow(bus: EventBus, subscribed: asyncio.Event | None = None) -> None:
    """Log the outcome of every event until cancelled; what is still queued then is
    logged before returning (the last apply's results at shutdown)."""
    async with bus.subscribe() as queue:
        if subscribed is not None:
            subscribed.set()
        try:
            while True:
                write(await queue.get())
        finally:
            while not queue.empty():
                write(queue.get_nowait())
