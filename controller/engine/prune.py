"""Prune: delete what FazAI created and no document describes any more, and nothing else.

The inventory in the state store records every object an apply wrote. For a node with
``prune: true`` (or ``--prune``), each owned object missing from the desired state becomes
an explicit "must be absent" document for that node, so plan shows it as a delete and
apply removes it like any other change. Objects FazAI never created are not in the
inventory, so they can never be pruned (plan lists them with ``--show-unmanaged``).

Two kinds have no "absent" that deletes: a kernel parameter cannot be removed, so a
pruned ``Sysctl`` leaves FazAI's persisted file and keeps its running value; a service
belongs to its package, so a pruned ``Service`` is *released*: left exactly as it is, and
forgotten by the inventory once the node's apply succeeds. An owned object that another
document now describes (a document renamed) is never deleted: its record is handed over
to that document.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from controller.model import kinds
from controller.model.diagnostics import Diagnostic, Location, Severity
from controller.model.document import Document
from controller.model.state import DesiredState
from controller.providers.opnsense import adoption
from controller.providers.opnsense.identity import object_uuid, parse_alias_record
from controller.store import OwnedObject

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# The inventory entry -> the fields that make an absent document resolve to the same
# object (None: the entry does not identify an object such a document would reach).
Identify = Callable[[OwnedObject], dict[str, Any] | None]


def _by_field(field: str) -> Identify:
    return lambda obj: {field: obj.platform_id}


def _nft(obj: OwnedObject) -> dict[str, Any]:
    family, _, name = obj.platform_id.partition(" ")
    return {"family": family, "name": name}


def _by_identity(obj: OwnedObject) -> dict[str, Any] | None:
    """Rules and host overrides live at the uuid FazAI derives from (node, kind, name),
    so the document's name is all an absent document needs. The entry holds that uuid
    (or, written before, that name), or the uuid of an object an apply adopted, which the
    absent document names in ``spec.uuid``: a field only prune writes (the schema refuses
    it, and ``spec.adopt`` with ``state: absent``, in documents), so no document can
    reach an object FazAI does not own. Anything else is not guessed."""
    if obj.platform_id in (obj.name, object_uuid(obj.node, obj.kind, obj.name)):
        return {}
    if UUID.fullmatch(obj.platform_id):
        return {"uuid": obj.platform_id}
    return None


def _alias(obj: OwnedObject) -> dict[str, Any]:
    """An alias is found by its unique name; with the uuid the firewall gave the alias
    FazAI created (entries written before hold the name alone), the absent document
    reaches that alias only: one a person deleted and made again under the same name is
    another object, and is left alone."""
    name, uuid = parse_alias_record(obj.platform_id)
    return {"name": name, "uuid": uuid} if uuid else {"name": name}


# Kinds whose "absent" state removes the object.
PRUNABLE: Mapping[str, Identify] = {
    "File": _by_field("path"),
    "Package": _by_field("name"),
    "User": _by_field("name"),
    "NftTable": _nft,
    "Sysctl": _by_field("key"),  # leaves the persisted file; the running value stays
    "FirewallAlias": _alias,
    "FirewallRule": _by_identity,
    "HostOverride": _by_identity,
}
# Kinds with no absent state: pruning lets go of the object and leaves it as it is.
RELEASED = frozenset({"Service"})
# Kinds whose documents bind one object by uuid (see _claim).
BY_UUID = frozenset({"FirewallRule", "HostOverride"})


RELEASED_AS_IS = "released, left as it is"


@dataclass(frozen=True)
class Release:
    """An inventory record to let go of once the node's apply succeeds; with
    ``successor``, handed over to the document that now describes the same object."""

    node: str
    kind: str
    name: str
    platform_id: str
    successor: str | None = None
    outcome: str = RELEASED_AS_IS  # what the record's object comes to, for people


@dataclass(frozen=True)
class Pruning:
    state: DesiredState  # plus an absent document per owned, undescribed object
    releases: tuple[Release, ...] = ()
    notes: tuple[str, ...] = ()  # owned objects that cannot be pruned, and why


class Inventory(Protocol):
    def own(
        self, node: str, kind: str, name: str, platform_id: str, run_id: int | None
    ) -> None: ...

    def disown(self, node: str, kind: str, name: str) -> bool: ...

    def is_owned(self, node: str, kind: str, name: str) -> bool: ...


def plan(
    state: DesiredState, owned: Mapping[str, Sequence[OwnedObject]], nodes: Collection[str]
) -> Pruning:
    """What pruning ``nodes`` means, given what FazAI owns there (``owned``, by node)."""
    extra: list[Document] = []
    releases: list[Release] = []
    warnings: list[Diagnostic] = []
    notes: list[str] = []
    for node in sorted(nodes):
        resources = state.resources_for(node)
        described = {(d.kind, d.name) for d in resources}
        claimed: dict[tuple[str, str], Document] = {}
        for d in resources:
            claimed.setdefault(_claim(node, d), d)
        for obj in owned.get(node, ()):
            if (obj.kind, obj.name) in described:
                continue
            kind = kinds.get(obj.kind)
            if obj.kind in RELEASED and kind is not None:
                releases.append(Release(node, obj.kind, obj.name, obj.platform_id))
                warnings.append(_warning(node, obj, RELEASED_AS_IS))
                continue
            identify = PRUNABLE.get(obj.kind)
            if identify is None or kind is None:
                notes.append(f"{node}: {obj.kind}/{obj.name} is owned but cannot be pruned")
                continue
            fields = identify(obj)
            if fields is None:
                notes.append(
                    f"{node}: {obj.kind}/{obj.name} is owned as {obj.platform_id!r}, which a "
                    "document of that name would not reach; not pruned"
                )
                continue
            spec = {"target": {"node": node}, **fields, "state": "absent"}
            document = Document(obj.kind, obj.name, kinds.apply_defaults(kind, obj.name, spec))
            key = _claim(node, document)
            other = claimed.get(key) if key[1] else None
            if other is not None and other.spec.get("state", "present") == "present":
                # Renamed: deleting would undo the document that now holds the object.
                handed = f"handed over to {other.subject}"
                releases.append(
                    Release(node, obj.kind, obj.name, obj.platform_id, other.name, handed)
                )
                warnings.append(_warning(node, obj, f"now described by {other.subject}: {handed}"))
                continue
            if other is not None:
                # Another absent document deletes the same object: one delete is enough.
                outcome = f"deleted as {other.subject}"
                releases.append(Release(node, obj.kind, obj.name, obj.platform_id, None, outcome))
                continue
            claimed[key] = document
            extra.append(document)
            if obj.kind == "Sysctl":
                warnings.append(
                    _warning(
                        node,
                        obj,
                        f"{obj.platform_id} leaves /etc/sysctl.d/99-fazai.conf; its running "
                        "value stays as it is (a kernel parameter cannot be removed)",
                    )
                )
    if not (extra or warnings):
        return Pruning(state, tuple(releases), tuple(notes))
    # replace, not a new DesiredState: the Policy documents (controls) and the rest of
    # the state must come along, or pruning would drop the repository's guardrails.
    pruned = dataclasses.replace(
        state, resources=[*state.resources, *extra], warnings=[*state.warnings, *warnings]
    )
    return Pruning(pruned, tuple(releases), tuple(notes))


def _claim(node: str, doc: Document) -> tuple[str, str]:
    """The object a document claims on ``node``: a rule or host override by the uuid it
    binds (a prune's owned uuid, ``spec.adopt.uuid``, else the uuid derived from its
    name), so that a renamed document bound to the owned object takes its record over
    instead of the object being deleted; other kinds by their key ("" for none)."""
    if doc.kind in BY_UUID:
        named = adoption.pruned(doc.spec) or adoption.explicit(doc.spec)
        return (doc.kind, named or object_uuid(node, doc.kind, doc.name))
    kind = kinds.get(doc.kind)
    if kind is None or kind.instance_key is None:
        return (doc.kind, "")
    return (doc.kind, kind.instance_key(doc.spec))


def _warning(node: str, obj: OwnedObject, what: str) -> Diagnostic:
    return Diagnostic(
        Location(f"node {node}"),
        f"no document describes it any more: {what}",
        f"{obj.kind}/{obj.name}",
        severity=Severity.WARNING,
    )


def release(
    inventory: Inventory,
    releases: Iterable[Release],
    succeeded: Collection[str],
    run_id: int | None = None,
) -> list[str]:
    """Carry out the releases of the nodes whose apply ``succeeded``; what was done."""
    done = []
    for item in releases:
        if item.node not in succeeded:
            continue
        inventory.disown(item.node, item.kind, item.name)
        # A record the successor has already (this apply wrote the object for it) names
        # the object as it is now, not as the old record last saw it: it wins.
        if item.successor is not None and not inventory.is_owned(
            item.node, item.kind, item.successor
        ):
            inventory.own(item.node, item.kind, item.successor, item.platform_id, run_id)
        done.append(f"{item.node}: {item.kind}/{item.name} {item.outcome}")
    return done


def prune_nodes(state: DesiredState, flag: bool) -> list[str]:
    return [n for n, doc in sorted(state.nodes.items()) if flag or doc.spec.get("prune")]
