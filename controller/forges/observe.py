"""One live read of each node for two desired states (a pull request's base and head).

A review plans the base and the head against the same nodes. Reading each node once for
both halves the time and load, and makes the comparison exact: both plans see the same
live state, so a difference between them is the head's doing, never drift that happened
between two reads.

A node is shared when both states describe it with the same connection (the same Node
spec, ``prune`` aside); otherwise each state reads it on its own. Per platform, a shared read is:

* linux: one fact request holding what both states' resources need (its file and nft
  entries are positional, its package/user/sysctl/service names are sets), one SSH round
  trip, then each state's readers take their part of the answer;
* opnsense: one bulk read of the object types either state uses, then each state is
  compared with the firewall restricted to its own types;
* any other platform: the provider's own ``observe``, once per state, at the same time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from controller import providers
from controller.engine.plan import Observe
from controller.model.document import Document
from controller.model.state import DesiredState
from controller.providers.base import Observation
from controller.source.tree import SourceTree

Part = tuple[Sequence[Document], SourceTree]
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
    platform = node.spec["platform"]
    if platform == "linux":
        return await _linux(node, parts)
    if platform == "opnsense":
        return await _opnsense(node, parts)
    provider = providers.for_platform(platform)
    results = await asyncio.gather(*(provider.observe(node, res, tree) for res, tree in parts))
    return list(results)


async def _linux(node: Document, parts: Sequence[Part]) -> list[Observation]:
    from controller.providers.linux import essence
    from controller.providers.linux.provider import PROVIDER

    request = essence.FactRequest()
    readers = [{doc: essence.prepare(doc, tree, request) for doc in res} for res, tree in parts]
    answer = await PROVIDER.gather(node, request)
    return [Observation({doc: read(answer) for doc, read in part.items()}) for part in readers]


async def _opnsense(node: Document, parts: Sequence[Part]) -> list[Observation]:
    from controller.providers.opnsense import live
    from controller.providers.opnsense.client import OpnsenseClient
    from controller.providers.opnsense.provider import PROVIDER, api_target, compare, kinds_for

    wanted = [kinds_for(res) for res, _ in parts]
    async with OpnsenseClient(api_target(node), PROVIDER.transport) as client:
        firewall = await live.read(client, set().union(*wanted))
    out = []
    for (resources, _), kinds in zip(parts, wanted, strict=True):
        own = live.LiveFirewall(
            firewall.version,
            firewall.version_text,
            {k: v for k, v in firewall.items.items() if k in kinds},
        )
        out.append(compare(node.name, resources, own))
    return out
