"""The desired state: every valid document of a source, with targets resolved to nodes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from controller.diagnostics import Diagnostic, Location
from controller.model import kinds
from controller.model.document import Document
from controller.source.tree import SourceTree


def target_nodes(resource: Document, nodes: Mapping[str, Document]) -> list[str]:
    """The names of the nodes ``resource.spec.target`` selects, sorted.

    A selector picks only nodes of the resource's platform: ``{site: lisbon}`` on a File
    means the Linux servers of that site, not its firewall. A target naming a node of
    another platform is an error the cross-checks report."""
    target = resource.spec.get("target", {})
    if "node" in target:
        return [target["node"]] if target["node"] in nodes else []
    kind = kinds.get(resource.kind)
    platform = kind.platform_of(resource.spec) if kind else None
    selector = target.get("matchLabels", {})
    return sorted(
        name
        for name, node in nodes.items()
        if all(node.labels.get(k) == v for k, v in selector.items())
        and (platform is None or node.spec.get("platform") == platform)
    )


@dataclass(frozen=True)
class DesiredState:
    source: SourceTree = field(repr=False)
    nodes: Mapping[str, Document]
    resources: Sequence[Document]
    warnings: Sequence[Diagnostic] = ()
    skipped: Sequence[Location] = ()  # YAML documents that are not FazAI's (model/foreign.py)
    # Documents of untargeted kinds (Kind.targeted is False: Policy): they steer FazAI
    # and are never planned on a node.
    controls: Sequence[Document] = ()

    @property
    def revision(self) -> str | None:
        return self.source.revision

    def resources_for(self, node: str) -> list[Document]:
        return [r for r in self.resources if node in target_nodes(r, self.nodes)]
