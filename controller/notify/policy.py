"""Which events become notices, and which are not worth repeating.

| event              | notice                          | said again when                     |
|--------------------|---------------------------------|-------------------------------------|
| drift.detected     | drift on a node                 | its set of (kind, name, action,     |
|                    |                                 | field changes) differs              |
| run.finished       | resolved, for each node with a  | -                                   |
|                    | notified drift now in sync      |                                     |
| run.finished apply | applied: what changed, per node | every apply that changed something  |
|                    |                                 | or did not succeed                  |
| node.failed,       | failed / rolled back, the reason| the reason differs, or after the    |
| node.rolled_back   |                                 | node converged once                 |
| signature.refused  | refused head of a source        | another head is refused             |

A node that an apply converged closes its drift and failure silently: the applied notice
says so. Everything else (run.started, node.read...) is not notified.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from controller.errors import PlanFormatError
from controller.events import Event, EventType
from controller.notify.dedup import DedupState, OpenIssue, digest, fingerprint
from controller.notify.notice import NodeOutcome, Notice
from controller.notify.settings import NoticeKind
from controller.plan import plan_json
from controller.plan.items import PlanItem
from controller.reconcile.handle import ControllerHandle
from controller.reports.build import drifted_resources
from controller.reports.model import DriftedResource
from controller.reports.values import short, show

log = logging.getLogger(__name__)

LINES = 12  # resources listed in a notice's text; the JSON payload carries them all
VALUE_LIMIT = 120
_SYMBOL = {"create": "+", "update": "~", "delete": "-", "error": "!"}


class Policy:
    def __init__(self, handle: ControllerHandle, state: DedupState) -> None:
        self.handle = handle
        self.state = state

    async def notices(self, event: Event) -> list[Notice]:
        data = event.data
        if event.type is EventType.DRIFT_DETECTED:
            return self._drift(event, data)
        if event.type is EventType.RUN_FINISHED:
            return await self._run_finished(event, data)
        if event.type in (EventType.NODE_FAILED, EventType.NODE_ROLLED_BACK):
            return self._failure(event, data)
        if event.type is EventType.SIGNATURE_REFUSED:
            return self._signature(event, data)
        return []

    # drift ------------------------------------------------------------------------------

    def _drift(self, event: Event, data: Mapping[str, Any]) -> list[Notice]:
        node = str(data.get("node", ""))
        source = str(data.get("source", ""))
        resources = drifted_resources(node, source, _typed(data.get("items") or ()))
        key = f"drift/{source}/{node}"
        if not resources:
            closed = self.state.close(key)
            return (
                [self._resolved(event, closed, source, node, data.get("revision"))]
                if closed
                else []
            )
        mark = fingerprint(resources)
        before = self.state.get(key)
        if before is not None and before.fingerprint == mark:
            return []
        revision = data.get("revision")
        self.state.open(
            OpenIssue(
                key,
                mark,
                event.time.isoformat(),
                revision,
                tuple(f"{r.kind}/{r.name} {r.action}" for r in resources[:50]),
            )
        )
        mode = data.get("mode")
        if mode == "auto":
            # The apply that follows says what changed (or why it failed) in one notice;
            # a "drift" notice before it would be noise at every commit.
            return []
        counts = _counts(resources)
        verb = "Drift changed" if before is not None else "Drift"
        title = f"{verb} on {node}: {counts}"
        head = (
            f"{node} differs from its documents in source {source} at commit {short(revision)}"
            + (f" (mode {mode})" if mode else "")
            + ":"
        )
        return [
            Notice(
                kind=NoticeKind.DRIFT,
                title=title,
                text="\n".join([head, *_lines(resources)]),
                time=event.time,
                event_id=event.id,
                source=source,
                node=node,
                revision=revision,
                mode=str(mode) if mode else None,
                changed=before is not None,
                resources=resources,
            )
        ]

    def _resolved(
        self, event: Event, issue: OpenIssue, source: str, node: str, revision: str | None
    ) -> Notice:
        listed = list(issue.lines[:LINES])
        more = len(issue.lines) - len(listed)
        return Notice(
            kind=NoticeKind.RESOLVED,
            title=f"Drift resolved on {node}",
            text="\n".join(
                [
                    f"{node} matches its documents in source {source} again"
                    f" (commit {short(revision)}); drifted since {issue.since}:",
                    *(f"  {line}" for line in listed),
                    *([f"  and {more} more"] if more > 0 else []),
                ]
            ),
            time=event.time,
            event_id=event.id,
            source=source,
            node=node,
            revision=revision,
        )

    # runs -------------------------------------------------------------------------------

    async def _run_finished(self, event: Event, data: Mapping[str, Any]) -> list[Notice]:
        source = str(data.get("source", ""))
        out: list[Notice] = []
        if data.get("command") == "apply":
            applied = await self._applied(event, data, source)
            if applied is not None:
                out.append(applied)
        if data.get("status") == "succeeded":
            closed = self.state.close(f"signature/{source}")
            if closed is not None:
                out.append(
                    Notice(
                        kind=NoticeKind.RESOLVED,
                        title=f"Source {source} reconciles again",
                        text=f"A run of {source} at commit {short(data.get('revision'))} "
                        f"succeeded; commit {short(closed.revision)} had been refused.",
                        time=event.time,
                        event_id=event.id,
                        source=source,
                        revision=data.get("revision"),
                    )
                )
        for drift in self.handle.drift():
            if drift.source != source or drift.drifted or drift.error is not None:
                continue
            closed = self.state.close(f"drift/{source}/{drift.node}")
            if closed is not None:
                out.append(self._resolved(event, closed, source, drift.node, drift.revision))
        return out

    async def _applied(self, event: Event, data: Mapping[str, Any], source: str) -> Notice | None:
        run_id = data.get("run_id")
        run = None
        if isinstance(run_id, int):
            try:
                run = await asyncio.to_thread(self.handle.store.get_run, run_id)
            except Exception as exc:  # the store is another engineer's; never stop notifying
                log.warning("notifications: cannot read run %s: %s", run_id, exc)
        status = str(data.get("status") or (run.status.value if run else "unknown"))
        revision = data.get("revision") or (run.revision if run else None)
        plan = run.plan if run is not None and run.plan else {}
        items = _typed(plan.get("changes") or ())
        resources: list[DriftedResource] = []
        for node in sorted({i.node for i in items}):
            resources.extend(drifted_resources(node, source, [i for i in items if i.node == node]))
        outcomes = (
            tuple(NodeOutcome(n.node, n.status.value, n.message) for n in run.nodes) if run else ()
        )
        if not resources and status == "succeeded":
            return None  # nothing changed: not worth a message
        for outcome in outcomes:
            if outcome.status == "converged":
                # The applied notice says the node converged; no separate "resolved".
                self.state.close(f"drift/{source}/{outcome.node}")
                self.state.close(f"failure/{outcome.node}")
        nodes = sorted({r.node for r in resources} | {o.node for o in outcomes})
        verb = "Applied" if status == "succeeded" else f"Apply {status}"
        title = (
            f"{verb}: {len(resources)} change(s) on {len(nodes)} node(s)"
            f" from {source}@{short(revision)}"
        )
        lines = [f"Run {run_id} of {source} at commit {short(revision)}: {status}."]
        lines += [
            f"  {o.node}: {o.status}" + (f" ({o.message})" if o.message else "") for o in outcomes
        ]
        lines += _lines(resources)
        return Notice(
            kind=NoticeKind.APPLIED,
            title=title,
            text="\n".join(lines),
            time=event.time,
            event_id=event.id,
            source=source,
            revision=revision,
            run_id=run_id if isinstance(run_id, int) else None,
            status=status,
            resources=tuple(resources),
            nodes=outcomes,
        )

    # failures ---------------------------------------------------------------------------

    def _failure(self, event: Event, data: Mapping[str, Any]) -> list[Notice]:
        node = str(data.get("node", ""))
        reason = str(data.get("reason") or "no reason given")
        rolled_back = event.type is EventType.NODE_ROLLED_BACK
        key = f"failure/{node}"
        mark = digest([event.type.value, reason])
        before = self.state.get(key)
        if before is not None and before.fingerprint == mark:
            return []
        source = data.get("source")
        revision = data.get("revision")
        self.state.open(OpenIssue(key, mark, event.time.isoformat(), revision, (reason[:200],)))
        what = "rolled back" if rolled_back else "failed"
        return [
            Notice(
                kind=NoticeKind.ROLLED_BACK if rolled_back else NoticeKind.FAILED,
                title=f"Apply {what} on {node}",
                text=f"Run {data.get('run_id')} on {node}"
                + (f" (source {source}, commit {short(revision)})" if source else "")
                + f" {what}: {reason}"
                + (
                    "\nEvery change made was undone; the node is as it was before the run."
                    if rolled_back
                    else "\nThe node may be partly changed: check it."
                ),
                time=event.time,
                event_id=event.id,
                source=str(source) if source else None,
                node=node,
                revision=revision,
                run_id=data.get("run_id") if isinstance(data.get("run_id"), int) else None,
                reason=reason,
            )
        ]

    def _signature(self, event: Event, data: Mapping[str, Any]) -> list[Notice]:
        source = str(data.get("source", ""))
        revision = data.get("revision")
        reason = str(data.get("reason") or "not signed by an allowed key")
        key = f"signature/{source}"
        mark = digest([revision])
        before = self.state.get(key)
        if before is not None and before.fingerprint == mark:
            return []
        self.state.open(OpenIssue(key, mark, event.time.isoformat(), revision))
        return [
            Notice(
                kind=NoticeKind.SIGNATURE_REFUSED,
                title=f"Refused commit {short(revision)} of {source}",
                text=f"The head of {source}, commit {short(revision)}, was not reconciled: "
                f"{reason}. Nodes stay as the last accepted commit left them.",
                time=event.time,
                event_id=event.id,
                source=source,
                revision=revision,
                reason=reason,
            )
        ]


def _counts(resources: Sequence[DriftedResource]) -> str:
    words = {
        "create": "to create",
        "update": "to update",
        "delete": "to delete",
        "error": "not comparable",
    }
    parts = []
    for action, word in words.items():
        n = sum(1 for r in resources if r.action == action)
        if n:
            parts.append(f"{n} {word}")
    return ", ".join(parts)


def _lines(resources: Sequence[DriftedResource]) -> list[str]:
    lines = []
    for r in resources[:LINES]:
        lines.append(f"  {_SYMBOL.get(r.action, '?')} {r.kind}/{r.name} ({r.node}) {r.action}")
        if r.error:
            lines.append(f"      error: {r.error}")
        for c in r.changes[:6]:
            lines.append(
                f"      {c.field}: {show(c.live, VALUE_LIMIT)} -> {show(c.desired, VALUE_LIMIT)}"
            )
    if len(resources) > LINES:
        lines.append(f"  and {len(resources) - LINES} more")
    return lines


def _typed(entries: Iterable[Any]) -> list[PlanItem]:
    """Plan JSON items (an event's, a stored plan's) typed again at this edge. One that
    does not fit the plan schema is logged and left out: notifying never stops."""
    out = []
    for entry in entries:
        try:
            if not isinstance(entry, Mapping):
                raise PlanFormatError(f"a plan item is an object, not {type(entry).__name__}")
            out.append(plan_json.item_from_dict(entry))
        except PlanFormatError as exc:
            log.warning("notifications: a plan item left out: %s", exc)
    return out
