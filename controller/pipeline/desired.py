"""The desired stage: the documents as the plan must see them on this run.

Every document is bound to the object FazAI owns for it (see ``engine.recorded``) and,
on the nodes that prune, each owned object no document describes any more becomes an
explicit deletion (see ``engine.prune``), so it is planned, checked by the policies and
applied like any other change. The CLI and serve read the inventory each their own way
(serve off its event loop) and hand it here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from controller.engine import prune, recorded
from controller.engine.prune import Pruning
from controller.model.state import DesiredState
from controller.store import OwnedObject


def prepare(
    state: DesiredState, owned: Mapping[str, Sequence[OwnedObject]], prune_flag: bool
) -> Pruning:
    """``state`` bound to ``owned`` (the inventory, by node) plus prune's deletions on the
    nodes that prune (every Node with ``prune: true``, or all with ``prune_flag``); the
    notes in ``Pruning.notes`` say what prune leaves alone and why."""
    nodes = prune.prune_nodes(state, prune_flag)
    # Every node, pruned or not: a document finds the object FazAI owns for it.
    bound = recorded.bind(state, owned)
    if not nodes:
        return Pruning(bound)
    return prune.plan(bound, {node: owned.get(node, []) for node in nodes}, nodes)


def pruning_nodes(state: DesiredState, prune_flag: bool) -> list[str]:
    """The nodes whose owned objects prune may delete."""
    return list(prune.prune_nodes(state, prune_flag))
