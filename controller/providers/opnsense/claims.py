"""Two documents must not bind to one firewall object: each would overwrite the other,
and prune of one would delete the other's.

Checked across the desired state at validate time, per node, in one key space per kind:
the uuid each rule or override document binds (``spec.adopt.uuid``, else the uuid FazAI
derives from node, kind and name, whether the document keeps or deletes it) and the
alias uuid a document adopts are claimed once; and no two host overrides share
Unbound's key (hostname, domain, record type, and for MX and TXT the mail host or text),
since both would be created, or one adopted twice, and Unbound would answer both.
``spec.adopt`` with ``state: absent`` is refused: it would delete an object FazAI does
not own. provider.compare checks the same claims again against what a plan resolves.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator

from controller.diagnostics import Diagnostic
from controller.model.crosscheck import CheckContext
from controller.model.document import Document
from controller.model.state import target_nodes
from controller.providers.opnsense import adoption
from controller.providers.opnsense.identity import object_uuid

KINDS = ("FirewallAlias", "FirewallRule", "HostOverride")

Claim = Callable[[Document, str], Hashable | None]


def _present(doc: Document) -> bool:
    return str(doc.spec.get("state", "present")) == "present"


def _uuid(doc: Document, node: str) -> Hashable | None:
    """(kind, the uuid ``doc`` binds on ``node``)."""
    named = adoption.explicit(doc.spec)
    if doc.kind == "FirewallAlias":
        return (doc.kind, named) if named is not None and _present(doc) else None
    if named is not None and not _present(doc):
        return None  # refused on its own below
    return (doc.kind, named or object_uuid(node, doc.kind, doc.name))


def _host(doc: Document, node: str) -> Hashable | None:
    spec = doc.spec
    if doc.kind != "HostOverride" or not _present(doc):
        return None
    if "hostname" not in spec or "domain" not in spec:
        return None
    return adoption.spec_host_key(spec)


def check(doc: Document, context: CheckContext) -> Iterator[Diagnostic]:
    """Diagnostics for ``doc`` where an earlier document binds the same object."""
    if not _present(doc) and adoption.explicit(doc.spec) is not None:
        yield Diagnostic(
            doc.location(("spec", "adopt")), adoption.ABSENT_ADOPT, doc.subject, "spec.adopt"
        )
        return
    field = ("spec", "adopt", "uuid") if "adopt" in doc.spec else ("metadata", "name")
    for claim, at, what in (
        (_uuid, field, "bind the same firewall object"),
        (_host, ("spec", "hostname"), "describe the same host override"),
    ):
        firsts = _firsts(context, claim)
        for node in target_nodes(doc, context.nodes):
            key = claim(doc, node)
            if key is None:
                continue
            first = firsts.get((node, key))
            if first is not None and first is not doc:
                yield Diagnostic(
                    doc.location(at),
                    f"conflicts with {first.subject} at {first.location(_at(first, at))}: "
                    f"both {what}{_which(key)} on node {node!r}",
                    doc.subject,
                    ".".join(at),
                )


def _at(first: Document, at: tuple[str, ...]) -> tuple[str, ...]:
    if at[0] == "spec" and at[1] == "hostname":
        return at
    return ("spec", "adopt", "uuid") if "adopt" in first.spec else ("metadata", "name")


def _which(key: Hashable) -> str:
    if isinstance(key, tuple) and len(key) == 2:
        return f" (uuid {key[1]})"
    return ""


def _firsts(context: CheckContext, claim: Claim) -> dict[tuple[str, Hashable], Document]:
    """(node, key) -> the document that keeps that claim, computed once a load: the one
    whose own derived uuid it is, else the first; every other is the one in error (a
    document adopting another's object is the intruder, wherever it stands)."""
    memo_key = f"opnsense.claims.{claim.__name__}"
    found = context.memo.get(memo_key)
    if found is None:
        found = {}
        for doc in context.resources:
            if doc.kind not in KINDS:
                continue
            for node in target_nodes(doc, context.nodes):
                key = claim(doc, node)
                if key is None:
                    continue
                derived = "adopt" not in doc.spec and claim is _uuid
                if derived and (node, key) in found and "adopt" in found[(node, key)].spec:
                    found[(node, key)] = doc
                else:
                    found.setdefault((node, key), doc)
        context.memo[memo_key] = found
    return dict(found)
