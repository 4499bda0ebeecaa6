"""What a scoped token sees: its sources, and the nodes its label selector matches.

A node's labels are the ones its Node document had at the loop's last plan (the drift
table); a node the loop does not know now matches no selector. Acting on an approval
also needs the labels the node had when last in sync (``PendingApproval.settled``).
Reads of something out of scope answer as if it did not exist (lists leave it out,
single objects are a 404), so a scoped token learns nothing of other sources' drift;
acting on a pending approval out of scope is a 403 that says so (:func:`approval_refusal`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from controller.errors import StoreError
from controller.events import Event, EventType
from controller.reconcile.handle import ControllerHandle, PendingApproval, SourceStatus
from controller.reconcile.matching import branch_name, same_repository
from controller.server.settings import TokenScope
from controller.source.git import parse_description

Labels = Mapping[tuple[str, str], Mapping[str, str]]  # (source, node) -> the node's labels


def labels(handle: ControllerHandle) -> Labels:
    return {(d.source, d.node): d.labels for d in handle.drift()}


def node_visible(scope: TokenScope, known: Labels, source: str | None, node: str) -> bool:
    if not scope.has_source(source):
        return False
    return scope.nodes is None or (source is not None and scope.has_node(known.get((source, node))))


def approval_visible(scope: TokenScope, pending: PendingApproval) -> bool:
    """Every node of the plan must be in scope: seeing the plan shows all its changes."""
    return approval_refusal(scope, pending) is None


def approval_refusal(scope: TokenScope, pending: PendingApproval) -> str | None:
    """Why a token with ``scope`` may not act on ``pending``; None when it may. Names
    no other source, and only nodes of this plan."""
    if not scope.has_source(pending.source):
        return "its source is not one of the token's sources"
    if scope.nodes is None:
        return None
    # Both the labels the plan gives a node and those it had when last in sync: else a
    # commit could move a node into a lower-trust approver's scope and have it approve.
    outside = [
        n
        for n in pending.nodes
        if not (scope.has_node(pending.labels.get(n)) and scope.has_node(pending.settled.get(n)))
    ]
    if outside:
        return (
            f"node(s) {', '.join(outside)} do not match the token's node selector (both "
            "with the plan's labels and with those they had when last in sync)"
        )
    return None


def run_sources(statuses: Sequence[SourceStatus], recorded: str | None) -> frozenset[str]:
    """The configured sources a run's recorded source (``git::URL[//DIR]@REF``) may be:
    same repository and branch. Runs of ``fazai apply`` from a folder match none."""
    parsed = parse_description(recorded or "") if recorded else None
    if parsed is None:
        return frozenset()
    location, ref, _ = parsed
    return frozenset(
        s.name
        for s in statuses
        if same_repository(location, s.location) and branch_name(ref) == branch_name(s.branch)
    )


class RunScope:
    """Which runs, and which of their nodes, a token sees. A run that recorded its source's
    name is judged by it; one that did not (older runs, runs in progress) by its
    location, and when that fits several configured sources (one repository and branch,
    different folders) it is in scope only when all of them are."""

    def __init__(self, scope: TokenScope, handle: ControllerHandle) -> None:
        self.scope = scope
        self.known = labels(handle)
        self.statuses = list(handle.sources()) if not scope.unrestricted else []

    def sources(self, recorded: str | None, name: str = "") -> frozenset[str] | None:
        """None: every run is visible; else the candidate sources, all in scope, or an
        empty set when the run is out of scope. ``name``: the source the run recorded
        (runs of ``fazai serve``): the one candidate when there is one."""
        if self.scope.unrestricted:
            return None
        found = frozenset({name}) if name else run_sources(self.statuses, recorded)
        return found if found and all(self.scope.has_source(s) for s in found) else frozenset()

    def node(self, sources: frozenset[str] | None, node: str) -> bool:
        if sources is None or self.scope.nodes is None:
            return sources is None or bool(sources)
        return any(self.scope.has_node(self.known.get((s, node))) for s in sources)

    def run(
        self, recorded: str | None, nodes: Sequence[str], name: str = ""
    ) -> tuple[bool, frozenset[str] | None]:
        """(visible, the sources to judge its nodes by)."""
        sources = self.sources(recorded, name)
        if sources is not None and not sources:
            return False, sources
        if self.scope.nodes is None:
            return True, sources
        return any(self.node(sources, n) for n in nodes), sources

    def plan(self, sources: frozenset[str] | None, document: Any) -> Any:
        """Plan JSON with only the nodes (and their items) in scope: the keys known to
        hold nothing of a node, the per-node lists filtered, the summary counted again
        from what is left. Warnings are dropped (they name documents and nodes of the
        whole source), and so is any key this does not know: what a later plan format
        adds stays hidden until it is judged here."""
        if self.scope.nodes is None or not isinstance(document, Mapping):
            return document
        out = {k: document[k] for k in _PLAN_KEYS if k in document}
        for key in _NODE_LISTS:
            entries = document.get(key)
            if isinstance(entries, list):
                out[key] = [
                    e
                    for e in entries
                    if isinstance(e, Mapping) and self.node(sources, str(e.get("node", "")))
                ]
        if "summary" in document:
            out["summary"] = _summary(out.get("nodes", []), out.get("changes", []))
        return out


_PLAN_KEYS = ("apiVersion", "kind", "source", "revision")
_NODE_LISTS = ("nodes", "changes", "items")
_ACTIONS = ("create", "update", "delete", "noop", "error", "unmanaged")


def _summary(nodes: Sequence[Any], changes: Sequence[Any]) -> dict[str, Any]:
    """A plan JSON summary of these nodes and changes (as plan_json.to_dict counts)."""
    counts = dict.fromkeys(_ACTIONS, 0)
    for change in changes:
        action = str(change.get("action", ""))
        if action in counts:
            counts[action] += 1
    resources = sum(n.get("resources", 0) for n in nodes if isinstance(n.get("resources"), int))
    counts["noop"] = max(resources - len(changes), 0)  # changes list no noop items
    failed = sum(1 for n in nodes if n.get("error"))
    code = (
        2
        if failed or counts["error"]
        else 1
        if counts["create"] + counts["update"] + counts["delete"]
        else 0
    )
    return {
        **counts,
        "nodes": len(nodes),
        "nodesFailed": failed,
        "inSync": code == 0,
        "exitCode": code,
    }


RunSeen = Callable[[int], bool]  # whether a token sees the run with this id (as /runs)


def event_visible(
    scope: TokenScope, known: Labels, event: Event, run_seen: RunSeen | None = None
) -> bool:
    """For a scoped token: only events of a source in scope; with a node selector, only
    those whose nodes (when they name any) all match, and events of a run that name no
    node (run.started, run.finished) only for a run ``run_seen`` says the token sees
    (none without it)."""
    if scope.unrestricted:
        return True
    source = event.data.get("source")
    if not isinstance(source, str) or not scope.has_source(source):
        return False
    if scope.nodes is None:
        return True
    named: list[Any] = []
    if "node" in event.data:
        named.append(event.data["node"])
    if isinstance(event.data.get("nodes"), list):
        named.extend(event.data["nodes"])
    if not named and "plan" in event.data:
        return False  # a plan's changes without a node to judge them by
    if not named and "run_id" in event.data:
        run_id = event.data["run_id"]
        return isinstance(run_id, int) and run_seen is not None and run_seen(run_id)
    return all(node_visible(scope, known, source, str(n)) for n in named)


class EventScope:
    """What one stream shows a scoped token. The label table is built once and again
    only after an event that follows a change of it (the loop updates a node's labels
    right before that node's drift.detected, and a plan's labels before its
    run.finished), not for every event. Each run is judged once, from its recorded
    nodes, read from the store in a thread."""

    _REFRESH = frozenset({EventType.DRIFT_DETECTED, EventType.RUN_FINISHED})
    _KEPT = 10_000  # run verdicts remembered by one stream

    def __init__(self, scope: TokenScope, handle: ControllerHandle) -> None:
        self.scope = scope
        self.handle = handle
        self._runs: RunScope | None = None
        self._seen: dict[int, bool] = {}

    def _judge(self, event: Event) -> RunScope:
        if self._runs is None or event.type in self._REFRESH:
            self._runs = RunScope(self.scope, self.handle)
        return self._runs

    async def shown(self, event: Event) -> bool:
        if self.scope.unrestricted:
            return True
        runs = self._judge(event)
        run_id = event.data.get("run_id")
        seen: bool | None = None
        if isinstance(run_id, int) and "node" not in event.data and "nodes" not in event.data:
            seen = self._seen.get(run_id)
            if seen is None and self.scope.has_source(event.data.get("source")):
                try:
                    found = await asyncio.to_thread(self.handle.store.get_run, run_id)
                except StoreError:
                    found = None  # not shown, asked again at the run's next event
                if found is not None and found.nodes:  # none yet: just started, not kept
                    names = [n.node for n in found.nodes]
                    seen, _ = runs.run(found.source, names, found.source_name)
                    if len(self._seen) >= self._KEPT:
                        self._seen.clear()
                    self._seen[run_id] = seen
        return event_visible(self.scope, runs.known, event, lambda _: bool(seen))
