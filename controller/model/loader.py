"""Load and check the desired state of a source tree, reporting every problem at once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from controller.diagnostics import Diagnostic, Location, Severity
from controller.errors import InvalidInputError, SourceError
from controller.model import crosscheck, foreign, kinds, tool, validate
from controller.model.document import Document
from controller.model.state import DesiredState
from controller.model.yamlsource import MAX_FILE_BYTES, read_documents
from controller.source.tree import SourceTree
from controller.words import count


def load(tree: SourceTree) -> DesiredState:
    """The desired state of ``tree``; raises InvalidInputError with every error, sorted.

    The platforms' kinds must be registered first (``controller.providers.load_all()``,
    which the CLI, the reconcile loop and the test kits call at startup): the model sits
    below the providers and does not know which platforms there are."""
    if not kinds.platforms():
        raise RuntimeError(
            "no document kinds are registered: call controller.providers.load_all() "
            "at startup, before loading a desired state"
        )
    documents: list[Document] = []
    problems: list[Diagnostic] = []
    broken_nodes: set[str] = set()
    skipped: list[Location] = []  # other tools' documents (foreign.py)
    paths = tree.document_paths()
    if not paths:
        problems.append(
            Diagnostic(Location(tree.description), "no YAML documents found (*.yaml, *.yml)")
        )
    for path, why in tree.refused_documents():
        problems.append(Diagnostic(Location(path), f"{why}; FazAI reads only files of the source"))
    for path in paths:
        if tree.size(path) > MAX_FILE_BYTES:
            problems.append(
                Diagnostic(Location(path), f"file is larger than {MAX_FILE_BYTES} bytes; refusing")
            )
            continue
        try:
            data = tree.read(path)
        except OSError as exc:
            problems.append(Diagnostic(Location(path), f"cannot read: {exc.strerror or exc}"))
            continue
        except SourceError as exc:  # a file replaced by a link leading out since listed
            problems.append(Diagnostic(Location(path), str(exc)))
            continue
        raws, found = read_documents(path, data, skip=foreign.is_foreign, skipped=skipped)
        problems.extend(found)
        for raw in raws:
            document, found = validate.to_document(raw)
            problems.extend(found)
            if document is not None:
                documents.append(document)
            elif _is_node(raw.value):
                broken_nodes.add(raw.value["metadata"]["name"])
    if skipped and not documents and not problems:
        problems.append(
            Diagnostic(
                Location(tree.description),
                f"no FazAI documents found (apiVersion: fazai.dev/v1alpha1); {skip_note(skipped)}",
            )
        )
    problems.extend(crosscheck.check(documents, tree, frozenset(broken_nodes)))
    problems.sort()
    errors = [p for p in problems if p.is_error]
    if errors:
        if skipped and documents:
            # Said with the errors too: the count tells what was not even looked at.
            note = Diagnostic(
                Location(tree.description), skip_note(skipped), severity=Severity.WARNING
            )
            problems.append(note)
        raise InvalidInputError(problems)
    documents = tool.bind(documents)
    nodes = {d.name: d for d in documents if d.kind == "Node"}
    resources = [d for d in documents if d.kind != "Node" and _targeted(d)]
    controls = [d for d in documents if d.kind != "Node" and not _targeted(d)]
    return DesiredState(tree, nodes, resources, tuple(problems), tuple(skipped), tuple(controls))


def _targeted(document: Document) -> bool:
    kind = kinds.get(document.kind)
    return kind is None or kind.targeted


_NAMED_SKIPS = 5  # locations a skip note names before it only counts the rest


def skip_note(skipped: Sequence[Location]) -> str:
    """How many documents were skipped as not FazAI's, and where (the first few)."""
    files = len({s.file for s in skipped})
    named = ", ".join(str(s) for s in skipped[:_NAMED_SKIPS])
    rest = len(skipped) - _NAMED_SKIPS
    return (
        f"skipped {count(len(skipped), 'YAML document')} in {count(files, 'file')} that are "
        "not FazAI's "
        f"(another tool's apiVersion and kind, or neither apiVersion nor kind): {named}"
        + (f" and {rest} more" if rest > 0 else "")
    )


def _is_node(value: Any) -> bool:
    """An invalid document that still says it is the Node of some name."""
    if not isinstance(value, dict) or value.get("kind") != "Node":
        return False
    metadata = value.get("metadata")
    return isinstance(metadata, dict) and isinstance(metadata.get("name"), str)
