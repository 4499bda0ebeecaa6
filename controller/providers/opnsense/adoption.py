"""Which live object a rule or host override document binds to.

FazAI creates rules and host overrides at the uuid it derives from the document (see
identity.py). An object that already exists is never created twice: a host override is
found by Unbound's own key (hostname, domain, record type) and taken over in place, and
any rule or override can name its object with ``spec.adopt.uuid``. An adopted object is
written at its own uuid, and the apply records that uuid as owned; from then on the
document binds that object first (``spec.recorded``, see engine/recorded.py), so a key
that changes updates it in place instead of finding another override.

A document that deletes (``state: absent``) reaches FazAI's derived uuid only; the one
exception is prune's own absent document, built from the inventory (never from a user's
file), which names the uuid FazAI owns in ``spec.uuid``, a field the schema refuses in
documents. ``spec.adopt`` with ``state: absent`` would delete an object FazAI does not
own: refused at validate (claims.py) and, again, here.
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


def recorded(spec: Mapping[str, Any], node: str) -> str | None:
    """The uuid the inventory records as owned for this document on ``node``, if FazAI
    adopted it (``spec.recorded``, which engine/recorded.py writes and no document may)."""
    found = spec.get("recorded")
    uuid = found.get(node) if isinstance(found, Mapping) else None
    return str(uuid).lower() if uuid else None


def pruned(spec: Mapping[str, Any]) -> str | None:
    """The owned uuid a prune's absent document names (see prune.py), if any."""
    uuid = spec.get("uuid")
    return str(uuid).lower() if uuid else None


HostKey = tuple[str, str, str, str]


def host_key(hostname: Any, domain: Any, rr: Any, data: Any = "") -> HostKey:
    """An override's identity: names compare as DNS does, case-blind. An address record
    is one per (hostname, domain, type); MX and TXT records are many per name (a primary
    and a backup MX, an SPF and a verification TXT), so their ``data`` (the mail host,
    the text) is part of who they are."""
    kind = str(rr).upper()
    if kind == "MX":
        extra = str(data).lower().rstrip(".")
    elif kind == "TXT":
        extra = str(data)
    else:
        extra = ""
    return (str(hostname).lower(), str(domain).lower().rstrip("."), kind, extra)


def spec_host_key(spec: Mapping[str, Any]) -> HostKey:
    rr = str(spec.get("rr", "A")).upper()
    data = spec.get("mx", "") if rr == "MX" else spec.get("txtdata", "")
    return host_key(spec["hostname"], spec["domain"], rr, data)


def live_host_key(item: Mapping[str, Any]) -> HostKey:
    rr = essence.one(item.get("rr"))
    data = item.get("mx", "") if str(rr).upper() == "MX" else item.get("txtdata", "")
    return host_key(item.get("hostname", ""), item.get("domain", ""), rr, data or "")


def bind(node: str, doc: Document, items: Mapping[str, Mapping[str, Any]]) -> Binding:
    """The object ``doc`` (a FirewallRule or HostOverride on ``node``) concerns, among the
    live ``items`` of its kind (uuid -> raw item)."""
    spec = doc.spec
    own = object_uuid(node, doc.kind, doc.name)
    named = explicit(spec)
    present = str(spec.get("state", "present")) == "present"
    if not present:
        if named is not None:
            # Validate refuses this; a document that reached here anyway deletes nothing.
            return Binding(named, items.get(named), error=f"spec.adopt {ABSENT_ADOPT}")
        target = pruned(spec) or own
        return Binding(target, items.get(target))
    if named is not None:
        item = items.get(named)
        if item is None:
            return Binding(
                named,
                None,
                error=f"spec.adopt.uuid {named}: no {doc.kind} with that uuid on the firewall",
            )
        binding = Binding(named, item, adopted=named != own)
    elif (owned := recorded(spec, node)) is not None and owned in items:
        # The object FazAI owns for this document, wherever its key has moved: an update
        # in place, never a silent takeover of another object that has the new key.
        binding = Binding(owned, items[owned])
    else:
        binding = Binding(own, items.get(own))
    if doc.kind != "HostOverride" or "hostname" not in spec:
        return binding
    key = spec_host_key(spec)
    same = sorted(u for u, i in items.items() if live_host_key(i) == key)
    others = [u for u in same if u != binding.uuid]
    label = f"{key[0]}.{key[1]} ({key[2]}{' ' + key[3] if key[3] else ''})"
    if binding.item is None and named is None and len(others) == 1:
        return Binding(others[0], items[others[0]], adopted=True)
    if binding.item is None and named is None and len(others) > 1:
        return Binding(own, None, error=_duplicated(label, others))
    if others:
        return Binding(
            binding.uuid, binding.item, error=_duplicated(label, [binding.uuid, *others])
        )
    return binding


ABSENT_ADOPT = (
    "not allowed with state: absent: it would delete an object FazAI does not own; "
    "adopt it with state: present first, or delete it on the firewall by hand"
)


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
