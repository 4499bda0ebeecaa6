"""The live state of a firewall, read in bulk: one request per object type.

Each subsystem's whole model comes back from its ``get`` endpoint in raw values, the same
shape on every release 24.7-26.7. The search endpoints are not used for the bulk read on
purpose: their rows hold display labels up to 25.1, only three or four columns for
filter rules up to 25.1, and in 25.7 and 26.1 a rule search without an interface leaves
out every rule bound to one interface.

The API paths Goals' checks read are fetched in the same pass, each distinct path once.
A check's read is its own: one that fails (a 404 on this firmware, a 5xx, an answer that
is not JSON) is kept as a :class:`ReadFailed` for that path, and the node's objects, and
every other check, are read and judged as usual.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.errors import (
    ApiError,
    AuthenticationError,
    FactsError,
    FazaiError,
    UnreachableError,
)
from controller.providers.opnsense.client import OpnsenseClient

# What each kind reads, and where its items sit in the model's answer.
MODELS = {
    "FirewallAlias": ("firewall/alias/get", ("alias", "aliases", "alias")),
    "FirewallRule": ("firewall/filter/get", ("filter", "rules", "rule")),
    "HostOverride": ("unbound/settings/get", ("unbound", "hosts", "host")),
}
FIRMWARE = "core/firmware/status"


@dataclass(frozen=True)
class ReadFailed:
    """A check's GET that gave no usable answer; ``why`` is short and quotes nothing the
    firewall sent (an error body may echo configuration)."""

    why: str


@dataclass(frozen=True)
class LiveFirewall:
    version: tuple[int, int]  # release series, e.g. (26, 1)
    version_text: str
    items: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)
    # API path -> its JSON answer, or why it could not be read: what Goals' checks judge.
    checks: Mapping[str, Any] = field(default_factory=dict)

    def of(self, kind: str) -> Mapping[str, Mapping[str, Any]]:
        """uuid -> raw item for ``kind``."""
        return self.items.get(kind, {})


async def read(
    client: OpnsenseClient, kinds: set[str], check_paths: Iterable[str] = ()
) -> LiveFirewall:
    node = client.target.node
    ordered = sorted(kinds)
    model_paths = [MODELS[k][0] for k in ordered]
    # A check on a path this pass reads anyway takes that answer: one GET per path.
    extra = sorted(set(check_paths) - {FIRMWARE, *model_paths})
    status, *answers = await asyncio.gather(
        client.get(FIRMWARE),
        *(client.get(p) for p in model_paths),
        *(_check_read(client.get(p)) for p in extra),
    )
    models, checked = answers[: len(model_paths)], answers[len(model_paths) :]
    version_text, version = firmware_version(node, status)
    items = {kind: _items(node, kind, answer) for kind, answer in zip(ordered, models, strict=True)}
    read_anyway = {FIRMWARE: status, **dict(zip(model_paths, models, strict=True))}
    checks = {path: read_anyway[path] for path in sorted(set(check_paths)) if path in read_anyway}
    checks.update(zip(extra, checked, strict=True))
    return LiveFirewall(version, version_text, items, checks)


async def _check_read(answer: Awaitable[Any]) -> Any:
    """The answer of a check's GET, or a ReadFailed saying in a few words why not."""
    try:
        return await answer
    except ApiError as exc:
        if exc.status >= 400:
            return ReadFailed(f"HTTP {exc.status}")
        if "not JSON" in exc.message:
            return ReadFailed("not JSON")
        return ReadFailed("the API answered 'failed'")
    except AuthenticationError:
        return ReadFailed("HTTP 401")
    except UnreachableError:
        return ReadFailed("no answer")
    except FazaiError:
        return ReadFailed("unreadable answer")


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
