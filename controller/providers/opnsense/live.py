"""The live state of a firewall, read in bulk: one request per object type.

Each subsystem's whole model comes back from its ``get`` endpoint in raw values, the same
shape on every release 24.7-26.7. The search endpoints are not used for the bulk read on
purpose: their rows hold display labels up to 25.1, only three or four columns for
filter rules up to 25.1, and in 25.7 and 26.1 a rule search without an interface leaves
out every rule bound to one interface.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.errors import FactsError
from controller.providers.opnsense.client import OpnsenseClient

# What each kind reads, and where its items sit in the model's answer.
MODELS = {
    "FirewallAlias": ("firewall/alias/get", ("alias", "aliases", "alias")),
    "FirewallRule": ("firewall/filter/get", ("filter", "rules", "rule")),
    "HostOverride": ("unbound/settings/get", ("unbound", "hosts", "host")),
}


@dataclass(frozen=True)
class LiveFirewall:
    version: tuple[int, int]  # release series, e.g. (26, 1)
    version_text: str
    items: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)

    def of(self, kind: str) -> Mapping[str, Mapping[str, Any]]:
        """uuid -> raw item for ``kind``."""
        return self.items.get(kind, {})


async def read(client: OpnsenseClient, kinds: set[str]) -> LiveFirewall:
    node = client.target.node
    status, *models = await asyncio.gather(
        client.get("core/firmware/status"),
        *(client.get(MODELS[k][0]) for k in sorted(kinds)),
    )
    version_text, version = firmware_version(node, status)
    items = {
        kind: _items(node, kind, answer) for kind, answer in zip(sorted(kinds), models, strict=True)
    }
    return LiveFirewall(version, version_text, items)


def firmware_version(node: str, status: Any) -> tuple[str, tuple[int, int]]:
    product = status.get("product", {}) if isinstance(status, Mapping) else {}
    text = str(product.get("product_version") or product.get("product_series") or "")
    found = re.match(r"^(\d+)\.(\d+)", text)
    if not found:
        raise FactsError(node, f"cannot tell the firmware version from {text!r}")
    return text, (int(found.group(1)), int(found.group(2)))


def _items(node: str, kind: str, answer: Any) -> dict[str, Mapping[str, Any]]:
    value = answer
    for key in MODELS[kind][1]:
        if not isinstance(value, Mapping):
            break
        value = value.get(key)
    if value in (None, [], ""):
        return {}
    if not isinstance(value, Mapping):
        raise FactsError(node, f"unexpected answer from {MODELS[kind][0]}")
    return {str(uuid): item for uuid, item in value.items() if isinstance(item, Mapping)}
