"""Checks across documents: names, references, conflicts, referenced files.

Schema validation sees one document at a time; these rules need the whole set. Each
check yields diagnostics; none stops the others, so one run reports everything.
"""

from __future__ import annotations

import posixpath
from collections import defaultdict
from collections.abc import Iterator, Sequence

from controller.model import kinds
from controller.model.diagnostics import Diagnostic, Severity
from controller.model.document import Document
from controller.model.state import target_nodes
from controller.source.tree import SourceTree, resolve_relative


def check(documents: Sequence[Document], tree: SourceTree) -> list[Diagnostic]:
    nodes = {d.name: d for d in documents if d.kind == "Node"}
    resources = [d for d in documents if d.kind != "Node"]
    return [
        *_duplicates(documents),
        *_targets(resources, nodes),
        *_paths(resources),
        *_file_sources(resources, tree),
        *_conflicts(resources, nodes),
    ]


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


def _targets(resources: Sequence[Document], nodes: dict[str, Document]) -> Iterator[Diagnostic]:
    for doc in resources:
        target = doc.spec["target"]
        kind = kinds.get(doc.kind)
        platform = kind.platform if kind else None
        if "node" in target:
            node = nodes.get(target["node"])
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
        elif not target_nodes(doc, nodes):
            yield Diagnostic(
                doc.location(("spec", "target", "matchLabels")),
                "selector matches no node; this resource applies nowhere",
                doc.subject,
                "spec.target.matchLabels",
                Severity.WARNING,
            )


def _paths(resources: Sequence[Document]) -> Iterator[Diagnostic]:
    """Absolute paths must also be normalized: '/etc/../etc/x' or '/etc//x' hide what they name."""
    for doc in resources:
        for field in ("path", "home", "shell"):
            value = doc.spec.get(field)
            if isinstance(value, str) and (
                posixpath.normpath(value) != value or (value.endswith("/") and value != "/")
            ):
                yield Diagnostic(
                    doc.location(("spec", field)),
                    f"path {value!r} is not normalized; write {posixpath.normpath(value)!r}",
                    doc.subject,
                    f"spec.{field}",
                )
        if doc.kind == "File":
            yield from _file_rules(doc)


def _file_rules(doc: Document) -> Iterator[Diagnostic]:
    spec = doc.spec
    if spec["state"] == "present" and "content" in spec and "source" in spec:
        # Point at the second of the two, the one to delete or keep: the user decides.
        yield Diagnostic(
            doc.location(("spec", "source")),
            "a File takes 'content' or 'source', not both; keep one",
            doc.subject,
            "spec.source",
        )
    if spec["state"] == "present" and "content" not in spec and "source" not in spec:
        yield Diagnostic(
            doc.location(("spec",)),
            "a present File needs 'content' (the text itself) or 'source' (a file in the "
            "repository)",
            doc.subject,
            "spec",
        )
    if spec["state"] == "absent" and ("content" in spec or "source" in spec):
        yield Diagnostic(
            doc.location(("spec", "state")),
            "an absent File takes no 'content' or 'source'",
            doc.subject,
            "spec.state",
        )
    if spec.get("path") == "/":
        yield Diagnostic(
            doc.location(("spec", "path")), "'/' is not a file", doc.subject, "spec.path"
        )


def _file_sources(resources: Sequence[Document], tree: SourceTree) -> Iterator[Diagnostic]:
    for doc in resources:
        source = doc.spec.get("source") if doc.kind == "File" else None
        if not isinstance(source, str):
            continue
        resolved = resolve_relative(doc.file, source)
        if resolved is None:
            message = f"source {source!r} points outside the repository"
        elif not tree.exists(resolved):
            message = f"source file {resolved!r} does not exist in the repository"
        else:
            continue
        yield Diagnostic(doc.location(("spec", "source")), message, doc.subject, "spec.source")


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
