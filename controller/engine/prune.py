"""Prune: delete what FazAI created and no document describes any more, and nothing else.

The inventory in the state store records every object an apply wrote. For a node with
``prune: true`` (or ``--prune``), each owned object missing from the desired state becomes
an explicit "must be absent" document for that node, so plan shows it as a delete and
apply removes it like any other change. Objects FazAI never created are not in the
inventory, so they can never be pruned (plan lists them with ``--show-unmanaged``).

The node's provider says, through its ``Ownership`` (providers/base.py), which fields
make an absent document reach an owned object and no other, what a delete leaves behind
(a pruned ``Sysctl`` keeps its running value), and which kinds have no "absent" that
deletes: those are *released* (a ``Service`` belongs to its package), left exactly as
they are and forgotten by the inventory once the node's apply succeeds. An owned object
that another document now describes (a document renamed) is never deleted: its record is
handed over to that document.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from controller import providers
from controller.diagnostics import Diagnostic, Location, Severity
from controller.model import kinds
from controller.model.document import Document
from controller.model.state import DesiredState
from controller.providers.base import NO_OWNERSHIP, Ownership
from controller.store import OwnedObject

RELEASED_AS_IS = "released, left as it is"


@dataclass(frozen=True)
class Release:
    """An inventory record to let go of once the node's apply succeeds; with
    ``successor``, handed over to the document that now describes the same object."""

    node: str
    kind: str
    name: str
    platform_id: str
    successor: str | None = None
    outcome: str = RELEASED_AS_IS  # what the record's object comes to, for people


@dataclass(frozen=True)
class Pruning:
    state: DesiredState  # plus an absent document per owned, undescribed object
    releases: tuple[Release, ...] = ()
    notes: tuple[str, ...] = ()  # owned objects that cannot be pruned, and why


class Inventory(Protocol):
    def own(
        self, node: str, kind: str, name: str, platform_id: str, run_id: int | None
    ) -> None: ...

    def disown(self, node: str, kind: str, name: str) -> bool: ...

    def is_owned(self, node: str, kind: str, name: str) -> bool: ...


def plan(
    state: DesiredState, owned: Mapping[str, Sequence[OwnedObject]], nodes: Collection[str]
) -> Pruning:
    """What pruning ``nodes`` means, given what FazAI owns there (``owned``, by node)."""
    extra: list[Document] = []
    releases: list[Release] = []
    warnings: list[Diagnostic] = []
    notes: list[str] = []
    for node in sorted(nodes):
        ownership = ownership_of(state, node)
        resources = state.resources_for(node)
        described = {(d.kind, d.name) for d in resources}
        claimed: dict[tuple[str, str], Document] = {}
        for d in resources:
            claimed.setdefault(_claim(ownership, node, d), d)
        for obj in owned.get(node, ()):
            if (obj.kind, obj.name) in described:
                continue
            kind = kinds.get(obj.kind)
            if obj.kind in ownership.released_kinds and kind is not None:
                releases.append(Release(node, obj.kind, obj.name, obj.platform_id))
                warnings.append(_warning(node, obj, RELEASED_AS_IS))
                continue
            if obj.kind not in ownership.prunable_kinds or kind is None:
                notes.append(f"{node}: {obj.kind}/{obj.name} is owned but cannot be pruned")
                continue
            absent = ownership.absent(obj)
            if absent is None:
                notes.append(
                    f"{node}: {obj.kind}/{obj.name} is owned as {obj.platform_id!r}, which a "
                    "document of that name would not reach; not pruned"
                )
                continue
            spec = {"target": {"node": node}, **absent.fields, "state": "absent"}
            document = Document(obj.kind, obj.name, kinds.apply_defaults(kind, obj.name, spec))
            key = _claim(ownership, node, document)
            other = claimed.get(key) if key[1] else None
            if other is not None and other.spec.get("state", "present") == "present":
                # Renamed: deleting would undo the document that now holds the object.
                handed = f"handed over to {other.subject}"
                releases.append(
                    Release(node, obj.kind, obj.name, obj.platform_id, other.name, handed)
                )
                warnings.append(_warning(node, obj, f"now described by {other.subject}: {handed}"))
                continue
            if other is not None:
                # Another absent document deletes the same object: one delete is enough.
                outcome = f"deleted as {other.subject}"
                releases.append(Release(node, obj.kind, obj.name, obj.platform_id, None, outcome))
                continue
            claimed[key] = document
            extra.append(document)
            if absent.note is not None:
                warnings.append(_warning(node, obj, absent.note))
    if not (extra or warnings):
        return Pruning(state, tuple(releases), tuple(notes))
    # replace, not a new DesiredState: the Policy documents (controls) and the rest of
    # the state must come along, or pruning would drop the repository's guardrails.
    pruned = dataclasses.replace(
        state, resources=[*state.resources, *extra], warnings=[*state.warnings, *warnings]
    )
    return Pruning(pruned, tuple(releases), tuple(notes))


def ownership_of(state: DesiredState, node: str) -> Ownership:
    """What ``node``'s platform says about the objects FazAI owns there (nothing, for a
    node the desired state no longer has: its records are kept, never guessed at)."""
    document = state.nodes.get(node)
    if document is None:
        return NO_OWNERSHIP
    return providers.for_platform(str(document.spec["platform"])).ownership


def _claim(ownership: Ownership, node: str, doc: Document) -> tuple[str, str]:
    """The object a document claims on ``node``: by the platform's id of the object it
    binds where the platform says one (an OPNsense uuid), so that a renamed document
    bound to the owned object takes its record over instead of the object being deleted;
    else by the kind's key ("" for none)."""
    bound = ownership.claim(node, doc)
    if bound is not None:
        return (doc.kind, bound)
    kind = kinds.get(doc.kind)
    if kind is None or kind.instance_key is None:
        return (doc.kind, "")
    return (doc.kind, kind.instance_key(doc.spec))


def _warning(node: str, obj: OwnedObject, what: str) -> Diagnostic:
    return Diagnostic(
        Location(f"node {node}"),
        f"no document describes it any more: {what}",
        f"{obj.kind}/{obj.name}",
        severity=Severity.WARNING,
    )


def release(
    inventory: Inventory,
    releases: Iterable[Release],
    succeeded: Collection[str],
    run_id: int | None = None,
) -> list[str]:
    """Carry out the releases of the nodes whose apply ``succeeded``; what was done."""
    done = []
    for item in releases:
        if item.node not in succeeded:
            continue
        inventory.disown(item.node, item.kind, item.name)
        # A record the successor has already (this apply wrote the object for it) names
        # the object as it is now, not as the old record last saw it: it wins.
        if item.successor is not None and not inventory.is_owned(
            item.node, item.kind, item.successor
        ):
            inventory.own(item.node, item.kind, item.successor, item.platform_id, run_id)
        done.append(f"{item.node}: {item.kind}/{item.name} {item.outcome}")
    return done


def prune_nodes(state: DesiredState, flag: bool) -> list[str]:
    return [n for n, doc in sorted(state.nodes.items()) if flag or doc.spec.get("prune")]
