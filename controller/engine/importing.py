"""``fazai import``: documents for what a node holds and no document describes.

In the spirit of ``terraform import``: the node is read, and each unmanaged object
becomes a document that states it as it is and binds to it (``spec.adopt``), ready to
commit. Planned, such a document is in sync; applied, its object becomes FazAI's (owned
by the platform's id, so prune can reach it). Nothing is written to the node here.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import yaml

from controller import providers
from controller.errors import FazaiError
from controller.model.document import API_VERSION, Document
from controller.model.state import DesiredState
from controller.providers.base import Unmanaged
from controller.source.tree import SourceTree

MAX_NAME = 63


@runtime_checkable
class Importer(Protocol):
    async def unmanaged(
        self, node: Document, resources: Sequence[Document], tree: SourceTree
    ) -> tuple[Unmanaged, ...]: ...

    def import_spec(self, item: Unmanaged) -> tuple[str, dict[str, Any]]: ...


def importer(platform: str) -> Importer:
    provider: Any = providers.for_platform(platform)
    if not isinstance(provider, Importer):
        raise FazaiError(f"import is not available for {platform} nodes yet")
    return provider


async def documents(
    state: DesiredState, node_name: str, only_kinds: Collection[str] = ()
) -> list[dict[str, Any]]:
    """One document per unmanaged object of ``node_name`` (of ``only_kinds``, when given),
    named uniquely against the desired state and each other."""
    node = state.nodes[node_name]
    provider = importer(str(node.spec["platform"]))
    found = await provider.unmanaged(node, state.resources_for(node_name), state.source)
    taken = {(d.kind, d.name) for d in state.resources}
    out = []
    for item in sorted(found, key=lambda i: (i.kind, i.name)):
        if only_kinds and item.kind not in only_kinds:
            continue
        hint, spec = provider.import_spec(item)
        name = unique_name(item.kind, dns_name(hint, item.kind), taken)
        taken.add((item.kind, name))
        out.append(
            {
                "apiVersion": API_VERSION,
                "kind": item.kind,
                "metadata": {"name": name},
                "spec": {"target": {"node": node_name}, **spec},
            }
        )
    return out


def dns_name(text: str, kind: str) -> str:
    """``text`` as a DNS-1123 label: lower case, runs of anything else made one '-'."""
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:MAX_NAME].rstrip("-")
    return name or kind.lower()


def unique_name(kind: str, name: str, taken: Collection[tuple[str, str]]) -> str:
    if (kind, name) not in taken:
        return name
    for number in range(2, len(taken) + 3):
        suffix = f"-{number}"
        candidate = name[: MAX_NAME - len(suffix)].rstrip("-") + suffix
        if (kind, candidate) not in taken:
            return candidate
    raise AssertionError("unreachable: more names than taken ones were tried")


def render(docs: Sequence[Mapping[str, Any]], node: str) -> str:
    """The documents as one multi-document YAML stream, with a header saying what it is."""
    header = (
        f"# fazai import: {len(docs)} object(s) on {node} that no document describes.\n"
        "# Each binds to its object (spec.adopt): applied, FazAI owns it (prune can then\n"
        "# delete it once its document goes); nothing is created twice.\n"
    )
    if not docs:
        return header
    body = yaml.safe_dump_all(
        [dict(d) for d in docs], sort_keys=False, default_flow_style=False, allow_unicode=False
    )
    return header + body
