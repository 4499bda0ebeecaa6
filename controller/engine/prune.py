"""Prune: delete what FazAI created and no document describes any more, and nothing else.

The inventory in the state store records every object an apply wrote. For a node with
``prune: true`` (or ``--prune``), each owned object missing from the desired state becomes
an explicit "must be absent" document for that node, so plan shows it as a delete and
apply removes it like any other change. Objects FazAI never created are not in the
inventory, so they can never be pruned.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from controller.model import kinds
from controller.model.document import Document
from controller.model.state import DesiredState
from controller.store import OwnedObject


def _by_field(field: str) -> Callable[[str], dict[str, Any]]:
    return lambda key: {field: key}


def _nft(key: str) -> dict[str, Any]:
    family, _, name = key.partition(" ")
    return {"family": family, "name": name}


# Kinds whose "absent" state removes the object; the inventory key -> identifying fields.
# Sysctl and Service have no absent state (a kernel parameter cannot be removed), and the
# OPNsense kinds gain one with their prune support.
PRUNABLE: Mapping[str, Callable[[str], dict[str, Any]]] = {
    "File": _by_field("path"),
    "Package": _by_field("name"),
    "User": _by_field("name"),
    "NftTable": _nft,
}


def with_pruned(
    state: DesiredState, owned: Mapping[str, Sequence[OwnedObject]], nodes: Collection[str]
) -> tuple[DesiredState, list[str]]:
    """``state`` plus an absent document per owned, undescribed object on ``nodes``; and
    notes on owned objects that cannot be pruned."""
    extra: list[Document] = []
    notes: list[str] = []
    for node in sorted(nodes):
        described = {(d.kind, d.name) for d in state.resources_for(node)}
        for obj in owned.get(node, ()):
            if (obj.kind, obj.name) in described:
                continue
            fields = PRUNABLE.get(obj.kind)
            kind = kinds.get(obj.kind)
            if fields is None or kind is None:
                notes.append(f"{node}: {obj.kind}/{obj.name} is owned but cannot be pruned")
                continue
            spec = {"target": {"node": node}, **fields(obj.platform_id), "state": "absent"}
            extra.append(Document(obj.kind, obj.name, kinds.apply_defaults(kind, obj.name, spec)))
    if not extra:
        return state, notes
    return DesiredState(
        state.source, state.nodes, [*state.resources, *extra], state.warnings
    ), notes


def prune_nodes(state: DesiredState, flag: bool) -> list[str]:
    return [n for n, doc in sorted(state.nodes.items()) if flag or doc.spec.get("prune")]
