"""Desired and live essences of the OPNsense kinds, and their API representation.

The firewall's model speaks strings: booleans are "0"/"1", numbers are strings, option
fields come back as maps of ``{key: {"value": label, "selected": 0|1}}``, alias content is
newline-separated on write. Both sides are normalized to the documents' shape so that a
freshly applied document compares as in sync.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Essence = dict[str, Any]


def selected(value: Any) -> list[str]:
    """The keys an option map marks selected; a plain string is its own value."""
    if isinstance(value, Mapping):
        return [str(k) for k, v in value.items() if isinstance(v, Mapping) and v.get("selected")]
    if isinstance(value, list):
        return [str(v) for v in value]
    text = str(value or "")
    return [text] if text else []


def one(value: Any) -> str:
    keys = [k for k in selected(value) if k]
    return keys[0] if keys else ""


def flag(value: Any) -> bool:
    return str(value) == "1"


def protocol(value: str) -> str:
    return "any" if value.lower() == "any" else value.upper()


def interfaces(value: Any) -> list[str]:
    """The interface names, one each: OPNsense itself writes a list as "lan,opt1", so a
    string (or a list item) carrying commas is several interfaces, never one name that
    matches no check (the anti-lockout check and the policies compare names)."""
    items = value if isinstance(value, list | tuple) else [value]
    return sorted({part.strip() for i in items for part in str(i).split(",") if part.strip()})


# -- desired -----------------------------------------------------------------


def desired_alias(spec: Mapping[str, Any]) -> Essence:
    out: Essence = {"name": spec["name"], "type": spec["type"], "enabled": spec["enabled"]}
    if "content" in spec:
        out["content"] = sorted({str(c) for c in spec["content"]})
    for key in ("description",):
        if key in spec:
            out[key] = spec[key]
    if "proto" in spec:
        out["proto"] = sorted(spec["proto"])
    if "updatefreq" in spec:
        out["updatefreq"] = str(spec["updatefreq"])
    return out


def desired_rule(spec: Mapping[str, Any]) -> Essence:
    source = spec.get("source", {})
    destination = spec.get("destination", {})
    out: Essence = {
        "action": spec["action"],
        "quick": spec["quick"],
        "interface": interfaces(spec["interface"]),
        "direction": spec["direction"],
        "ipprotocol": spec["ipprotocol"],
        "protocol": protocol(str(spec["protocol"])),
        "source_net": str(source.get("net", "any")),
        "source_not": bool(source.get("not", False)),
        "destination_net": str(destination.get("net", "any")),
        "destination_not": bool(destination.get("not", False)),
        "log": spec["log"],
        "enabled": spec["enabled"],
    }
    if "port" in source:
        out["source_port"] = str(source["port"])
    if "port" in destination:
        out["destination_port"] = str(destination["port"])
    for key in ("sequence", "description", "gateway"):
        if key in spec:
            out[key] = str(spec[key]) if key == "sequence" else spec[key]
    return out


def desired_host(spec: Mapping[str, Any]) -> Essence:
    out: Essence = {k: spec[k] for k in ("hostname", "domain", "rr", "enabled")}
    for key in ("server", "mx", "txtdata", "description"):
        if key in spec:
            out[key] = spec[key]
    if "mxprio" in spec:
        out["mxprio"] = str(spec["mxprio"])
    return out


# -- live --------------------------------------------------------------------


def live_alias(item: Mapping[str, Any]) -> Essence:
    return {
        "name": str(item.get("name", "")),
        "type": one(item.get("type")),
        "enabled": flag(item.get("enabled")),
        "content": sorted(k for k in selected(item.get("content")) if k),
        "description": str(item.get("description", "")),
        "proto": sorted(k for k in selected(item.get("proto")) if k),
        "updatefreq": str(item.get("updatefreq", "")),
    }


def live_rule(item: Mapping[str, Any]) -> Essence:
    return {
        "action": one(item.get("action")),
        "quick": flag(item.get("quick")),
        "interface": sorted(k for k in selected(item.get("interface")) if k),
        "direction": one(item.get("direction")),
        "ipprotocol": one(item.get("ipprotocol")),
        "protocol": protocol(one(item.get("protocol")) or "any"),
        "source_net": str(item.get("source_net", "")),
        "source_not": flag(item.get("source_not")),
        "source_port": str(item.get("source_port", "")),
        "destination_net": str(item.get("destination_net", "")),
        "destination_not": flag(item.get("destination_not")),
        "destination_port": str(item.get("destination_port", "")),
        "log": flag(item.get("log")),
        "enabled": flag(item.get("enabled")),
        "sequence": str(item.get("sequence", "")),
        "description": str(item.get("description", "")),
        "gateway": one(item.get("gateway")),
    }


def live_host(item: Mapping[str, Any]) -> Essence:
    return {
        "hostname": str(item.get("hostname", "")),
        "domain": str(item.get("domain", "")),
        "rr": one(item.get("rr")),
        "enabled": flag(item.get("enabled")),
        "server": str(item.get("server", "")),
        "mx": str(item.get("mx", "")),
        "mxprio": str(item.get("mxprio", "")),
        "txtdata": str(item.get("txtdata", "")),
        "description": str(item.get("description", "")),
    }
