"""What a scoped token sees: its sources, and the nodes its label selector matches.

A node's labels are the ones its Node document had at the loop's last plan (the drift
table); a node the loop does not know now matches no selector. Reads of something out of
scope answer as if it did not exist (lists leave it out, single objects are a 404), so a
scoped token learns nothing of other sources' drift; acting on a pending approval out of
scope is a 403 that says so (:func:`approval_refusal`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from controller.events import Event
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
    """Which runs, and which of their nodes, a token sees. A run whose recording fits
    several configured sources (one repository and branch, different folders) is in
    scope only when all of them are."""

    def __init__(self, scope: TokenScope, handle: ControllerHandle) -> None:
        self.scope = scope
        self.known = labels(handle)
        self.statuses = list(handle.sources()) if not scope.unrestricted else []

    def sources(self, recorded: str | None) -> frozenset[str] | None:
        """None: every run is visible; else the candidate sources, all in scope, or an
        empty set when the run is out of scope."""
        if self.scope.unrestricted:
            return None
        found = run_sources(self.statuses, recorded)
        return found if found and all(self.scope.has_source(s) for s in found) else frozenset()

    def node(self, sources: frozenset[str] | None, node: str) -> bool:
        if sources is None or self.scope.nodes is None:
            return sources is None or bool(sources)
        return any(self.scope.has_node(self.known.get((s, node))) for s in sources)

    def run(self, recorded: str | None, nodes: Sequence[str]) -> tuple[bool, frozenset[str] | None]:
        """(visible, the sources to judge its nodes by)."""
        sources = self.sources(recorded)
        if sources is not None and not sources:
            return False, sources
        if self.scope.nodes is None:
            return True, sources
        return any(self.node(sources, n) for n in nodes), sources

    def plan(self, sources: frozenset[str] | None, document: Any) -> Any:
        """Plan JSON with only the nodes (and their items) in scope."""
        if self.scope.nodes is None or not isinstance(document, Mapping):
            return document
        out = dict(document)
        for key in ("nodes", "changes", "items"):
            entries = out.get(key)
            if isinstance(entries, list):
                out[key] = [
                    e
                    for e in entries
                    if isinstance(e, Mapping) and self.node(sources, str(e.get("node", "")))
                ]
        return out


def event_visible(scope: TokenScope, known: Labels, event: Event) -> bool:
    """For a scoped token: only events of a source in scope; with a node selector, only
    those whose nodes (when they name any) all match."""
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
    return all(node_visible(scope, known, source, str(n)) for n in named)
