"""OPNsense's own rules for names and values, applied at validate time.

The rules follow the firewall's models (alias names, alias content per type, rule
addresses and ports) so that a document the firewall would refuse fails at
``fazai validate`` with its file and line, not halfway through an apply.
"""

from __future__ import annotations

import ipaddress
import json
import re
from functools import cache
from importlib import resources
from typing import Any

INTERFACE_NET = re.compile(r"^(\(self\)|(lan|wan|opt\d+|openvpn|ipsec|wireguard|enc0|lo0)(ip)?)$")
FQDN = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?$"
)
MAC = re.compile(r"^([0-9A-Fa-f]{2}[:-]){0,5}[0-9A-Fa-f]{2}$")
PORT_PROTOCOLS = {"TCP", "UDP", "TCP/UDP"}


@cache
def _reserved() -> dict[str, Any]:
    text = (
        resources.files("controller.providers.opnsense").joinpath("reserved_names.json").read_text()
    )
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def alias_name_problems(name: str) -> list[str]:
    """Why OPNsense would refuse ``name`` as an alias name; empty when it is fine."""
    data = _reserved()
    problems = []
    if not re.match(data["name_pattern"], name):
        problems.append(
            "an alias name must start with a letter or single underscore, be less than 32 "
            "characters and only consist of alphanumeric characters or underscores"
        )
    if name in data["pf_keywords"]:
        problems.append(f"{name!r} is a reserved pf keyword")
    if name in data["builtin_aliases"]:
        problems.append(f"{name!r} is a built-in alias of OPNsense")
    if name in data["services"] or name in data["protocols"]:
        problems.append(f"{name!r} is a service or protocol name, which OPNsense reserves")
    return problems


def is_service(value: str) -> bool:
    return value in _reserved()["services"]


def is_alias_name(value: str) -> bool:
    return bool(re.match(_reserved()["name_pattern"], value))


def address(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """The network of an IP or CIDR, or None when ``value`` is neither."""
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        return None


def is_port(value: str) -> bool:
    return value.isdigit() and 1 <= int(value) <= 65535


def port_range(value: str, separator: str) -> bool:
    low, sep, high = value.partition(separator)
    return bool(sep) and is_port(low) and is_port(high) and int(low) <= int(high)


def alias_entry_problem(alias_type: str, entry: str) -> str | None:
    """Why ``entry`` is not valid content for an alias of ``alias_type``; None when it is."""
    plain = entry.removeprefix("!")
    if alias_type == "host":
        single = address(plain) is not None and "/" not in plain
        ok = single or _ip_range(plain) or bool(FQDN.match(plain))
        return None if ok else f"{entry!r} is not an IP address, range, host name or alias"
    if alias_type == "network":
        ok = address(plain) is not None or bool(FQDN.match(plain)) or is_alias_name(plain)
        return None if ok else f"{entry!r} is not a network (CIDR), address or alias"
    if alias_type == "port":
        ok = is_port(entry) or port_range(entry, ":") or is_alias_name(entry)
        return None if ok else f"{entry!r} is not a port, a range like 8000:8080, or an alias"
    if alias_type in ("url", "urltable"):
        ok = entry.startswith(("http://", "https://")) and len(entry) > 8
        return None if ok else f"{entry!r} is not an http(s) URL"
    if alias_type == "mac":
        return None if MAC.match(entry) else f"{entry!r} is not a MAC address (or a prefix of one)"
    if alias_type == "asn":
        return None if entry.isdigit() else f"{entry!r} is not an AS number"
    if alias_type == "geoip":
        ok = len(entry) == 2 and entry.isalpha() and entry.isupper()
        return None if ok else f"{entry!r} is not a two-letter country code like PT"
    if alias_type == "networkgroup":
        return None if is_alias_name(entry) else f"{entry!r} is not an alias name"
    return None


def _ip_range(value: str) -> bool:
    low, sep, high = value.partition("-")
    if not sep:
        return False
    a, b = address(low), address(high)
    return a is not None and b is not None and a.version == b.version and "/" not in value


def classify_net(value: str) -> str:
    """'any', 'interface', 'address' or 'alias': how OPNsense reads a rule's net field."""
    if value == "any":
        return "any"
    if INTERFACE_NET.match(value):
        return "interface"
    if address(value) is not None:
        return "address"
    return "alias"


def family_of(ipprotocol: str) -> int | None:
    return {"inet": 4, "inet6": 6}.get(ipprotocol)
