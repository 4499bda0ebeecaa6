"""Deterministic uuids for the objects FazAI creates on a firewall.

OPNsense's ``set*/{uuid}`` creates an item with the given uuid when none exists (every
release since 23.1), so FazAI creates rules and host overrides with a uuid derived from
(node, kind, metadata.name). It then recognizes its own objects on the next read with no
marker in their descriptions and no inventory lookup. The firewall accepts only
lower-case version-4 uuids, so the name-based digest is shaped as one.
"""

from __future__ import annotations

import hashlib
import uuid

NAMESPACE = "fazai.dev/v1alpha1"


def object_uuid(node: str, kind: str, name: str) -> str:
    digest = hashlib.sha256(f"{NAMESPACE}/{node}/{kind}/{name}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


# An alias FazAI wrote is recorded in the inventory as NAME@UUID: the name finds it, the
# uuid the firewall gave it tells it apart from another alias a person later made under
# the same name. (Alias names are letters, digits and "_", so "@" cannot be part of one.)
# Records from before carry the name alone.
ALIAS_RECORD_SEPARATOR = "@"


def alias_record(name: str, uuid: str) -> str:
    return f"{name}{ALIAS_RECORD_SEPARATOR}{uuid}" if uuid else name


def parse_alias_record(record: str) -> tuple[str, str | None]:
    """(alias name, uuid or None for a record that holds the name alone)."""
    name, separator, uuid = record.partition(ALIAS_RECORD_SEPARATOR)
    return (name, uuid) if separator and uuid else (name, None)
