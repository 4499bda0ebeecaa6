"""What the inventory's records of firewall objects mean: how prune reaches each owned
object and no other, which uuid binds a renamed or adopted document, and which unmanaged
object a record already owns (``fazai import``)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from controller.model.document import Document
from controller.providers.base import Absent, Unmanaged
from controller.providers.opnsense import adoption
from controller.providers.opnsense.identity import object_uuid, parse_alias_record
from controller.store.records import OwnedObject

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# Kinds whose documents bind one object by uuid: prune reaches them by it, and a recorded
# uuid binds their documents.
BY_UUID = frozenset({"FirewallRule", "HostOverride"})


class OpnsenseOwnership:
    prunable_kinds = frozenset({"FirewallAlias", *BY_UUID})
    released_kinds: frozenset[str] = frozenset()

    def absent(self, obj: OwnedObject) -> Absent | None:
        if obj.kind == "FirewallAlias":
            return Absent(_alias(obj))
        return _by_identity(obj)

    def claim(self, node: str, doc: Document) -> str | None:
        """A rule or host override claims the uuid it binds (a prune's owned uuid,
        ``spec.adopt.uuid``, else the uuid derived from its name), so that a renamed
        document bound to the owned object takes its record over instead of the object
        being deleted; an alias is found by its name (its key)."""
        if doc.kind not in BY_UUID:
            return None
        named = adoption.pruned(doc.spec) or adoption.explicit(doc.spec)
        return named or object_uuid(node, doc.kind, doc.name)

    def recorded(self, node: str, obj: OwnedObject) -> str | None:
        """An adopted rule's or override's uuid: the document's name alone would find
        the uuid derived from it, or (an override) Unbound's key, which another override
        may hold."""
        uuid = obj.platform_id.lower()
        if obj.kind not in BY_UUID or not UUID.fullmatch(uuid):
            return None
        return None if uuid == object_uuid(node, obj.kind, obj.name) else uuid

    def owner(self, node: str, item: Unmanaged, owned: Sequence[OwnedObject]) -> OwnedObject | None:
        """By the id recorded (an alias's name@uuid, or its name alone as older records
        hold it), or by the uuid FazAI derives from the record's name (rules and
        overrides it created)."""
        uuid = item.platform_id.lower()
        for record in owned:
            if record.kind != item.kind or record.node != node:
                continue
            if item.kind == "FirewallAlias":
                name, recorded = parse_alias_record(record.platform_id)
                if recorded is not None and recorded.lower() == uuid:
                    return record
                if recorded is None and name == str(item.live.get("name", "")):
                    return record
            elif uuid and uuid in (
                record.platform_id.lower(),
                object_uuid(node, record.kind, record.name),
            ):
                return record
        return None


def _by_identity(obj: OwnedObject) -> Absent | None:
    """Rules and host overrides live at the uuid FazAI derives from (node, kind, name),
    so the document's name is all an absent document needs. The entry holds that uuid
    (or, written before, that name), or the uuid of an object an apply adopted, which the
    absent document names in ``spec.uuid``: a field only prune writes (the schema refuses
    it, and ``spec.adopt`` with ``state: absent``, in documents), so no document can
    reach an object FazAI does not own. Anything else is not guessed."""
    if obj.platform_id in (obj.name, object_uuid(obj.node, obj.kind, obj.name)):
        return Absent({})
    if UUID.fullmatch(obj.platform_id):
        return Absent({"uuid": obj.platform_id})
    return None


def _alias(obj: OwnedObject) -> dict[str, str]:
    """An alias is found by its unique name; with the uuid the firewall gave the alias
    FazAI created (entries written before hold the name alone), the absent document
    reaches that alias only: one a person deleted and made again under the same name is
    another object, and is left alone."""
    name, uuid = parse_alias_record(obj.platform_id)
    return {"name": name, "uuid": uuid} if uuid else {"name": name}


OWNERSHIP = OpnsenseOwnership()
