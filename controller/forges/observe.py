"""One live read of each node for two desired states (a pull request's base and head).

A review plans the base and the head against the same nodes. Reading each node once for
both halves the time and load, and makes the comparison exact: both plans see the same
live state, so a difference between them is the head's doing, never drift that happened
between two reads.

A node is shared when both states describe it with the same connection (the same Node
spec, ``prune`` aside); otherwise each state reads it on its own. Per platform, a shared read is:

the provider's ``observe_many`` where it has one (linux: one fact request and one SSH
round trip; opnsense: one bulk read), else its own ``observe``, once per state, at the
same time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from controller import providers
from controller.engine.plan import Observe
from controller.model.document import Document
from controller.model.state import DesiredState
from controller.providers.base import Observation, Part, SharedReader
from controller.source.tree import SourceTree

NOT_CONNECTION = frozenset({"prune"})  # Node spec fields that do not say how to reach it


@dataclass(frozen=True)
class _Request:
    node: Document
    parts: tuple[Part, ...]


class SharedReads:
    """Hands each state's plan an ``observe`` that reads a shared node once.

    ``reads`` counts the live reads done, per node: 1 for a shared node."""

    def __init__(self, states: Sequence[DesiredState]) -> None:
        self.states = tuple(states)
        self.reads: dict[str, int] = {}
        self._tasks: dict[str, asyncio.Task[list[Observation]]] = {}

    def observer(self, state: DesiredState) -> Observe:
        index = next(i for i, s in enumerate(self.states) if s is state)

        async def observe(
            node: Document, resources: Sequence[Document], tree: SourceTree
        ) -> Observation:
            if not self.shared(node.name):
                self.reads[node.name] = self.reads.get(node.name, 0) + 1
                provider = providers.for_platform(node.spec["platform"])
                return await provider.observe(node, resources, tree)
            task = self._tasks.get(node.name)
            if task is None:
                parts = tuple((s.resources_for(node.name), s.source) for s in self.states)
                self.reads[node.name] = self.reads.get(node.name, 0) + 1
                task = asyncio.ensure_future(read_together(node, parts))
                self._tasks[node.name] = task
            # Both plans await the one read; a failure reaches both as the same error.
            return (await asyncio.shield(task))[index]

        return observe

    def shared(self, node: str) -> bool:
        """Every state reaches ``node`` the same way (the read does not depend on the rest)."""
        connections = [connection(s.nodes[node]) if node in s.nodes else None for s in self.states]
        return connections[0] is not None and all(c == connections[0] for c in connections[1:])


def connection(node: Document) -> dict[str, object]:
    """What says how to reach a node: its spec, less the fields that do not."""
    return {k: v for k, v in node.spec.items() if k not in NOT_CONNECTION}


async def read_together(node: Document, parts: Sequence[Part]) -> list[Observation]:
    """Each part's observation of ``node``, from one read where the platform allows."""
    provider = providers.for_platform(node.spec["platform"])
    if isinstance(provider, SharedReader):
        return await provider.observe_many(node, parts)
    results = await asyncio.gather(*(provider.observe(node, res, tree) for res, tree in parts))
    return list(results)
