"""Documents for the objects on a firewall that no document describes (``fazai import``).

Each document states the object as the firewall holds it, so that it plans in sync, and
binds to that very object with ``spec.adopt.uuid``: applied, it is adopted (owned by its
uuid, pruned like one FazAI made), never created a second time. Only what differs from
a kind's default, or what the firewall needs, is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.providers.base import Unmanaged

KINDS = ("FirewallAlias", "FirewallRule", "HostOverride")


def spec(item: Unmanaged) -> tuple[str, dict[str, Any]]:
    """(a name to derive metadata.name from, the document's spec without its target)."""
    live = item.live
    if item.kind == "FirewallAlias":
        return str(live["name"]), _alias(live, item.platform_id)
    if item.kind == "FirewallRule":
        hint = str(live.get("description") or "") or f"rule-{item.platform_id[:8]}"
        return hint, _rule(live, item.platform_id)
    return f"{live.get('hostname')}-{live.get('domain')}", _host(live, item.platform_id)


def _set(out: dict[str, Any], live: Mapping[str, Any], *keys: str) -> None:
    for key in keys:
        if live.get(key) not in (None, "", []):
            out[key] = live[key]


def _number(value: Any) -> int | float | None:
    text = str(value or "")
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if number.is_integer() else number


def _alias(live: Mapping[str, Any], uuid: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": live["name"], "type": live["type"]}
    _set(out, live, "content", "proto", "description")
    frequency = _number(live.get("updatefreq"))
    if frequency is not None:
        out["updatefreq"] = frequency
    out["enabled"] = bool(live["enabled"])
    out["adopt"] = {"uuid": uuid}
    return out


def _end(live: Mapping[str, Any], side: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    net = str(live.get(f"{side}_net") or "any")
    if net != "any":
        out["net"] = net
    port = str(live.get(f"{side}_port") or "")
    if port:
        out["port"] = int(port) if port.isdigit() else port
    if live.get(f"{side}_not"):
        out["not"] = True
    return out


def _rule(live: Mapping[str, Any], uuid: str) -> dict[str, Any]:
    interfaces = list(live.get("interface") or [])
    out: dict[str, Any] = {}
    _set(out, live, "action")
    out["quick"] = bool(live.get("quick"))
    if interfaces:  # none: a floating rule on every interface, which no document states
        out["interface"] = interfaces[0] if len(interfaces) == 1 else interfaces
    _set(out, live, "direction", "ipprotocol", "protocol")
    for side in ("source", "destination"):
        end = _end(live, side)
        if end:
            out[side] = end
    _set(out, live, "gateway")
    out["log"] = bool(live.get("log"))
    sequence = str(live.get("sequence") or "")
    if sequence.isdigit():
        out["sequence"] = int(sequence)
    _set(out, live, "description")
    out["enabled"] = bool(live.get("enabled"))
    out["adopt"] = {"uuid": uuid}
    return out


def _host(live: Mapping[str, Any], uuid: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _set(out, live, "hostname", "domain", "rr", "server", "mx")
    priority = str(live.get("mxprio") or "")
    if priority.isdigit():
        out["mxprio"] = int(priority)
    _set(out, live, "txtdata", "description")
    out["enabled"] = bool(live.get("enabled"))
    out["adopt"] = {"uuid": uuid}
    return out
