"""The OPNsense kinds and their own rules."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from controller.diagnostics import Diagnostic
from controller.model.crosscheck import CheckContext
from controller.model.document import Document
from controller.model.kinds import NODE_CHECKS, Kind, register
from controller.providers.opnsense import checks, claims

Check = Callable[[Document, CheckContext], Iterator[Diagnostic]]


def _with_claims(check: Check) -> Check:
    """The kind's own check, then the one that no two documents bind one object."""

    def both(doc: Document, context: CheckContext) -> Iterator[Diagnostic]:
        yield from check(doc, context)
        yield from claims.check(doc, context)

    return both


NODE_CHECKS["opnsense"] = checks.check_node

FIREWALL_ALIAS = register(
    Kind(
        "FirewallAlias",
        lambda s: str(s["name"]),
        name_field="name",
        check=_with_claims(checks.check_alias),
    )
)
# Rules have no name on the firewall: FazAI identifies them by a uuid derived from the
# document (see identity.py), or by the one spec.adopt names (see adoption.py; claims.py
# keeps two documents from naming the same one).
FIREWALL_RULE = register(Kind("FirewallRule", check=_with_claims(checks.check_rule)))
HOST_OVERRIDE = register(Kind("HostOverride", check=_with_claims(checks.check_host_override)))
