"""Documents as the firewall's write bodies (``{"alias": {...}}`` and friends).

The inverse of essence.live_*: booleans as "0"/"1", numbers as strings, multi-value
fields comma-separated, alias content newline-separated. Fields a document leaves out
are sent as the firewall's defaults, so an applied document reads back in sync.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Body = dict[str, dict[str, str]]


def _flag(value: Any) -> str:
    return "1" if value else "0"


def alias(spec: Mapping[str, Any]) -> Body:
    return {
        "alias": {
            "enabled": _flag(spec["enabled"]),
            "name": spec["name"],
            "type": spec["type"],
            "content": "\n".join(str(c) for c in spec.get("content", [])),
            "description": spec.get("description", ""),
            "proto": ",".join(spec.get("proto", [])),
            "updatefreq": str(spec.get("updatefreq", "")),
        }
    }


def rule(spec: Mapping[str, Any]) -> Body:
    source = spec.get("source", {})
    destination = spec.get("destination", {})
    interfaces = spec["interface"] if isinstance(spec["interface"], list) else [spec["interface"]]
    protocol = str(spec["protocol"])
    body = {
        "enabled": _flag(spec["enabled"]),
        "action": spec["action"],
        "quick": _flag(spec["quick"]),
        "interface": ",".join(interfaces),
        "direction": spec["direction"],
        "ipprotocol": spec["ipprotocol"],
        "protocol": "any" if protocol.lower() == "any" else protocol.upper(),
        "source_net": str(source.get("net", "any")),
        "source_not": _flag(source.get("not", False)),
        "source_port": str(source.get("port", "")),
        "destination_net": str(destination.get("net", "any")),
        "destination_not": _flag(destination.get("not", False)),
        "destination_port": str(destination.get("port", "")),
        "gateway": spec.get("gateway", ""),
        "log": _flag(spec["log"]),
        "description": spec.get("description", ""),
    }
    if "sequence" in spec:
        body["sequence"] = str(spec["sequence"])
    return {"rule": body}


def host_override(spec: Mapping[str, Any]) -> Body:
    body = {
        "enabled": _flag(spec["enabled"]),
        "hostname": spec["hostname"],
        "domain": spec["domain"],
        "rr": spec["rr"],
        "server": spec.get("server", ""),
        "mx": spec.get("mx", ""),
        "mxprio": str(spec.get("mxprio", "")),
        "description": spec.get("description", ""),
    }
    if "txtdata" in spec:
        body["txtdata"] = spec["txtdata"]
    return {"host": body}
