"""Validation rules of the Linux kinds that their schemas cannot express."""

from __future__ import annotations

import posixpath
from collections.abc import Iterator

from controller.diagnostics import Diagnostic
from controller.model.crosscheck import CheckContext
from controller.model.document import Document
from controller.model.state import target_nodes
from controller.providers.linux import nftbody
from controller.source.tree import resolve_relative

# Also the largest file the node-side snapshot reads by default (remote_snapshot.py).
DEFAULT_MAX_FILE_BYTES = 16 * 1024 * 1024


def check_node(doc: Document, context: CheckContext) -> Iterator[Diagnostic]:
    if "address" not in doc.spec:
        yield Diagnostic(
            doc.location(("spec",)), "a linux Node needs 'address'", doc.subject, "spec"
        )
    opnsense_only = (
        "url", "apiKeyRef", "apiSecretRef", "tls", "requestTimeout",
        "controllerAddress", "controllerInterfaces",
    )  # fmt: skip
    for field in opnsense_only:
        if field in doc.spec:
            yield Diagnostic(
                doc.location(("spec", field)),
                f"'{field}' applies to opnsense nodes, not linux ones",
                doc.subject,
                f"spec.{field}",
            )


def check_paths(doc: Document, context: CheckContext) -> Iterator[Diagnostic]:
    """Absolute paths must also be normalized: '/etc/../etc/x' or '/etc//x' hide what they name."""
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


def check_file(doc: Document, context: CheckContext) -> Iterator[Diagnostic]:
    yield from check_paths(doc, context)
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
    source = spec.get("source")
    if isinstance(source, str):
        resolved = resolve_relative(doc.file, source)
        refusal = context.tree.refusal(resolved) if resolved is not None else None
        if resolved is None:
            message = f"source {source!r} points outside the repository"
        elif refusal is not None:
            message = (
                f"source file {resolved!r} {refusal}; a source must be a file of the repository"
            )
        elif not context.tree.exists(resolved):
            message = f"source file {resolved!r} does not exist in the repository"
        else:
            if spec["state"] == "present" and "content" not in spec:
                yield from _size(doc, context, context.tree.size(resolved), "source")
            return
        yield Diagnostic(doc.location(("spec", "source")), message, doc.subject, "spec.source")
    elif spec["state"] == "present" and isinstance(spec.get("content"), str):
        yield from _size(doc, context, len(spec["content"].encode()), "content")


def max_file_bytes(node: Document) -> int:
    return int(node.spec.get("maxFileBytes", DEFAULT_MAX_FILE_BYTES))


def _size(doc: Document, context: CheckContext, size: int, field: str) -> Iterator[Diagnostic]:
    """A file larger than its node allows: every later change of it needs a snapshot of
    it, carried in one batch and kept in the journal."""
    nodes = [context.nodes[n] for n in target_nodes(doc, context.nodes)]
    if not nodes:
        return
    strictest = min(nodes, key=lambda n: (max_file_bytes(n), n.name))
    limit = max_file_bytes(strictest)
    if size > limit:
        yield Diagnostic(
            doc.location(("spec", field)),
            f"the file is {size} bytes; Node/{strictest.name} takes files of at most {limit} "
            "bytes (its spec.maxFileBytes)",
            doc.subject,
            f"spec.{field}",
        )


def check_sysctl(doc: Document, context: CheckContext) -> Iterator[Diagnostic]:
    state = doc.spec.get("state", "present")
    if state == "present" and "value" not in doc.spec:
        yield Diagnostic(
            doc.location(("spec",)), "a present Sysctl needs 'value'", doc.subject, "spec"
        )
    if state == "absent" and "value" in doc.spec:
        # A value here would read as "set this", but nothing is set: say what absent does.
        yield Diagnostic(
            doc.location(("spec", "value")),
            "an absent Sysctl takes no 'value': absent removes the key from "
            "/etc/sysctl.d/99-fazai.conf and leaves its running value as it is",
            doc.subject,
            "spec.value",
        )


def check_nft_table(doc: Document, context: CheckContext) -> Iterator[Diagnostic]:
    """The definition must be one table's body: nft loads it inside FazAI's own
    ``table FAMILY NAME { }``, and anything that escapes it acts on the whole ruleset."""
    definition = doc.spec.get("definition")
    if doc.spec.get("state", "present") == "present" and not isinstance(definition, str):
        yield Diagnostic(
            doc.location(("spec",)),
            "a present NftTable needs 'definition'",
            doc.subject,
            "spec",
        )
        return
    if not isinstance(definition, str):
        return
    problem = nftbody.check(definition)
    if problem is not None:
        yield Diagnostic(
            doc.location(("spec", "definition")), str(problem), doc.subject, "spec.definition"
        )


# systemd's unit types (systemd.unit(5)): a name with a '.' must end in one of them.
UNIT_TYPES = frozenset(
    {"service", "socket", "device", "mount", "automount", "swap", "target", "path",
     "timer", "slice", "scope"}
)  # fmt: skip


def check_service(doc: Document, context: CheckContext) -> Iterator[Diagnostic]:
    """A unit name by systemd's own rules (unit_name_is_valid): the schema's pattern says
    which characters; this says how they go together."""
    name = doc.spec.get("name")
    if not isinstance(name, str) or name.startswith("-"):
        return  # the schema already refused it
    stem, dot, suffix = name.rpartition(".")
    problem = None
    if dot and suffix not in UNIT_TYPES:
        problem = f"'.{suffix}' is not a unit type ({', '.join(sorted(UNIT_TYPES))})"
    elif dot and not stem:
        problem = "the unit name before its type is empty"
    elif name.count("@") > 1:
        problem = "a unit name holds at most one '@' (template@instance)"
    elif (stem if dot else name).startswith("@"):
        problem = "a unit name cannot start with '@'"
    elif len(name if dot else name + ".service") > 255:
        problem = "a unit name is at most 255 characters long"
    if problem is not None:
        yield Diagnostic(
            doc.location(("spec", "name")),
            f"{name!r} is not a valid unit name: {problem}",
            doc.subject,
            "spec.name",
        )
