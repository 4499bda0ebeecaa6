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
