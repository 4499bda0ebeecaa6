"""Which live object a rule or host override document binds to.

FazAI creates rules and host overrides at the uuid it derives from the document (see
identity.py). An object that already exists is never created twice: a host override is
found by Unbound's own key (hostname, domain, record type) and taken over in place, and
any rule or override can name its object with ``spec.adopt.uuid``. An adopted object is
written at its own uuid, and the apply records that uuid as owned.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.model.document import Document
from controller.providers.opnsense import essence
from controller.providers.opnsense.identity import object_uuid


@dataclass(frozen=True)
class Binding:
    uuid: str  # where the document's object is (or is to be created)
    item: Mapping[str, Any] | None  # the live object; None: there is none
    adopted: bool = False  # an existing object FazAI did not create at its derived uuid
    error: str | None = None


def explicit(spec: Mapping[str, Any]) -> str | None:
    """The uuid ``spec.adopt.uuid`` names, if any."""
    adopt = spec.get("adopt")
    uuid = adopt.get("uuid") if isinstance(adopt, Mapping) else None
    return str(uuid).lower() if uuid else None


def host_key(hostname: Any, domain: Any, rr: Any) -> tuple[str, str, str]:
    """Unbound's identity of an override; names compare as DNS does, case-blind."""
    return (str(hostname).lower(), str(domain).lower().rstrip("."), str(rr).upper())


def live_host_key(item: Mapping[str, Any]) -> tuple[str, str, str]:
    return host_key(item.get("hostname", ""), item.get("domain", ""), essence.one(item.get("rr")))


def bind(node: str, doc: Document, items: Mapping[str, Mapping[str, Any]]) -> Binding:
    """The object ``doc`` (a FirewallRule or HostOverride on ``node``) concerns, among the
    live ``items`` of its kind (uuid -> raw item)."""
    spec = doc.spec
    own = object_uuid(node, doc.kind, doc.name)
    named = explicit(spec)
    present = str(spec.get("state", "present")) == "present"
    if named is not None:
        item = items.get(named)
        if item is None and present:
            return Binding(
                named,
                None,
                error=f"spec.adopt.uuid {named}: no {doc.kind} with that uuid on the firewall",
            )
        binding = Binding(named, item, adopted=present and named != own)
    else:
        binding = Binding(own, items.get(own))
    if doc.kind != "HostOverride" or not present or "hostname" not in spec:
        return binding
    key = host_key(spec["hostname"], spec["domain"], spec.get("rr", "A"))
    same = sorted(u for u, i in items.items() if live_host_key(i) == key)
    others = [u for u in same if u != binding.uuid]
    label = f"{key[0]}.{key[1]} ({key[2]})"
    if binding.item is None and named is None and len(others) == 1:
        return Binding(others[0], items[others[0]], adopted=True)
    if binding.item is None and named is None and len(others) > 1:
        return Binding(own, None, error=_duplicated(label, others))
    if others:
        return Binding(
            binding.uuid, binding.item, error=_duplicated(label, [binding.uuid, *others])
        )
    return binding


def _duplicated(label: str, uuids: list[str]) -> str:
    if len(uuids) == 2:
        listed = f"{uuids[0]} and {uuids[1]}"
    else:
        listed = ", ".join(uuids[:-1]) + f" and {uuids[-1]}"
    return (
        f"host override {label} would exist {len(uuids)} times on the firewall (uuids "
        f"{listed}), and Unbound would answer every one; delete the extra ones by hand, "
        "or bind this document to one with spec.adopt.uuid after deleting the others"
    )
