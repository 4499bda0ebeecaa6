"""Two documents must not bind to one firewall object: each would overwrite the other.

Checked across the desired state at validate time, per node: no two documents adopt the
same uuid (``spec.adopt.uuid``), and no two host overrides share Unbound's key
(hostname, domain, record type), since both would be created, or one adopted twice,
and Unbound would answer both.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator

from controller.model.crosscheck import CheckContext
from controller.model.diagnostics import Diagnostic
from controller.model.document import Document
from controller.model.state import target_nodes
from controller.providers.opnsense import adoption

KINDS = ("FirewallAlias", "FirewallRule", "HostOverride")

Claim = Callable[[Document], Hashable | None]


def _present(doc: Document) -> bool:
    return str(doc.spec.get("state", "present")) == "present"


def _adopted(doc: Document) -> Hashable | None:
    return adoption.explicit(doc.spec)


def _host(doc: Document) -> Hashable | None:
    spec = doc.spec
    if doc.kind != "HostOverride" or "hostname" not in spec or "domain" not in spec:
        return None
    return adoption.host_key(spec["hostname"], spec["domain"], spec.get("rr", "A"))


def check(doc: Document, context: CheckContext) -> Iterator[Diagnostic]:
    """Diagnostics for ``doc`` where an earlier document binds the same object."""
    if not _present(doc):
        return
    for claim, field, what in (
        (_adopted, ("spec", "adopt", "uuid"), "adopt the same uuid"),
        (_host, ("spec", "hostname"), "describe the same host override"),
    ):
        key = claim(doc)
        if key is None:
            continue
        firsts = _firsts(context, claim)
        for node in target_nodes(doc, context.nodes):
            first = firsts.get((node, key))
            if first is not None and first is not doc:
                yield Diagnostic(
                    doc.location(field),
                    f"conflicts with {first.subject} at {first.location(field)}: both "
                    f"{what} on node {node!r}",
                    doc.subject,
                    ".".join(field),
                )


def _firsts(context: CheckContext, claim: Claim) -> dict[tuple[str, Hashable], Document]:
    """(node, key) -> the first present document with that claim, computed once a load."""
    memo_key = f"opnsense.claims.{claim.__name__}"
    found = context.memo.get(memo_key)
    if found is None:
        found = {}
        for doc in context.resources:
            if doc.kind not in KINDS or not _present(doc):
                continue
            key = claim(doc)
            if key is None:
                continue
            for node in target_nodes(doc, context.nodes):
                found.setdefault((node, key), doc)
        context.memo[memo_key] = found
    return dict(found)
