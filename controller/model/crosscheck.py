"""Checks across documents: names, targets, conflicts, and each kind's own rules.

Schema validation sees one document at a time; these rules need the whole set. Each
check yields diagnostics; none stops the others, so one run reports everything. Rules
that belong to one platform (file paths, alias names) live with that platform's kinds
and run here through ``Kind.check``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.diagnostics import Diagnostic, Severity
from controller.model import kinds
from controller.model.document import Document
from controller.model.state import target_nodes
from controller.source.tree import SourceTree


@dataclass(frozen=True)
class CheckContext:
    """What a kind's own checks may look at: the whole desired state being loaded."""

    nodes: Mapping[str, Document]
    resources: Sequence[Document]
    tree: SourceTree
    # Node documents that exist but failed validation: targets naming them are not
    # reported again as naming a missing node.
    broken_nodes: frozenset[str] = frozenset()
    # Derived data a check computes once per load and shares across documents.
    memo: dict[str, Any] = field(default_factory=dict, compare=False)

    def of_kind(self, kind: str) -> list[Document]:
        return [d for d in self.resources if d.kind == kind]


def check(
    documents: Sequence[Document], tree: SourceTree, broken_nodes: frozenset[str] = frozenset()
) -> list[Diagnostic]:
    nodes = {d.name: d for d in documents if d.kind == "Node"}
    resources = [d for d in documents if d.kind != "Node"]
    context = CheckContext(nodes, resources, tree, broken_nodes)
    # Untargeted kinds (Policy) name no node and claim no object on one.
    targeted = [d for d in resources if _targeted(d)]
    found = [
        *_duplicates(documents),
        *_targets(targeted, nodes, broken_nodes),
        *_conflicts(targeted, nodes),
    ]
    for doc in documents:
        kind = kinds.get(doc.kind)
        if kind is not None and kind.check is not None:
            found.extend(kind.check(doc, context))
    return found


def _targeted(document: Document) -> bool:
    kind = kinds.get(document.kind)
    return kind is None or kind.targeted


def _duplicates(documents: Sequence[Document]) -> Iterator[Diagnostic]:
    first: dict[tuple[str, str], Document] = {}
    for doc in documents:
        key = (doc.kind, doc.name)
        if key in first:
            other = first[key]
            yield Diagnostic(
                doc.location(("metadata", "name")),
                f"duplicate {doc.subject}; first defined at {other.location(('metadata', 'name'))}",
                doc.subject,
                "metadata.name",
            )
        else:
            first[key] = doc


def _targets(
    resources: Sequence[Document], nodes: dict[str, Document], broken_nodes: frozenset[str]
) -> Iterator[Diagnostic]:
    for doc in resources:
        target = doc.spec["target"]
        kind = kinds.get(doc.kind)
        platform = kind.platform_of(doc.spec) if kind else None
        if "node" in target:
            node = nodes.get(target["node"])
            if node is None and target["node"] in broken_nodes:
                continue
            if node is None:
                yield Diagnostic(
                    doc.location(("spec", "target", "node")),
                    f"no Node named {target['node']!r}",
                    doc.subject,
                    "spec.target.node",
                )
            elif platform and node.spec["platform"] != platform:
                yield Diagnostic(
                    doc.location(("spec", "target", "node")),
                    f"{doc.kind} applies to {platform} nodes, but Node/{node.name} "
                    f"is {node.spec['platform']}",
                    doc.subject,
                    "spec.target.node",
                )
        elif not target_nodes(doc, nodes) and not broken_nodes:
            yield Diagnostic(
                doc.location(("spec", "target", "matchLabels")),
                "selector matches no node; this resource applies nowhere",
                doc.subject,
                "spec.target.matchLabels",
                Severity.WARNING,
            )


def _conflicts(resources: Sequence[Document], nodes: dict[str, Document]) -> Iterator[Diagnostic]:
    """Two documents that claim the same object on the same node cannot both win."""
    claims: dict[tuple[str, str, str], list[Document]] = defaultdict(list)
    for doc in resources:
        kind = kinds.get(doc.kind)
        if kind is None or kind.instance_key is None:
            continue
        key = kind.instance_key(doc.spec)
        for node in target_nodes(doc, nodes):
            claims[(node, doc.kind, key)].append(doc)
    reported: set[tuple[str, str]] = set()
    for (node, kind_name, key), docs in sorted(claims.items()):
        first = docs[0]
        for other in docs[1:]:
            pair = (first.subject, other.subject)
            # The same kind/name twice is already reported by _duplicates, more clearly.
            if other.subject == first.subject or pair in reported:
                continue
            reported.add(pair)
            yield Diagnostic(
                other.location(("spec",)),
                f"conflicts with {first.subject} at {first.location(('spec',))}: both manage "
                f"{kind_name} {key!r} on node {node!r}",
                other.subject,
                "spec",
            )
