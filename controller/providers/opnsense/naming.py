"""OPNsense's own rules for names and values, applied at validate time.

The rules follow the firewall's models (alias names, alias content per type, rule
addresses and ports) so that a document the firewall would refuse fails at
``fazai validate`` with its file and line, not halfway through an apply.
"""

from __future__ import annotations

import ipaddress
import json
import re
from functools import cache, lru_cache
from importlib import resources
from typing import Any

# Patterns are applied with fullmatch: "$" alone also matches before a final newline, and
# "web\n" is no alias name.
INTERFACE_NET = re.compile(r"^(\(self\)|(lan|wan|opt\d+|openvpn|ipsec|wireguard|enc0|lo0)(ip)?)$")
# Util::isDomain: dot-separated labels of letters, digits and inner hyphens.
DOMAIN_LABELS = re.compile(
    r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?$"
)
# At least two octets, colon-separated: what the firewall takes as a (partial) MAC.
MAC = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){1,5}$")
PORT_PROTOCOLS = {"TCP", "UDP", "TCP/UDP"}


@cache
def _reserved() -> dict[str, Any]:
    text = (
        resources.files("controller.providers.opnsense").joinpath("reserved_names.json").read_text()
    )
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def alias_name_problems(name: str) -> list[str]:
    """Why OPNsense would refuse ``name`` as an alias name; empty when it is fine.

    The firewall answers one sentence for every broken pattern rule; saying which rule
    is broken (length, a leading "__", the odd character) spares a guessing game.
    """
    data = _reserved()
    problems = []
    if not re.fullmatch(data["name_pattern"], name):
        problems.append(f"{name!r} is not a valid alias name: {_name_pattern_reason(name)}")
    if name in data["pf_keywords"]:
        problems.append(f"{name!r} is a reserved pf keyword")
    if name in data["builtin_aliases"]:
        problems.append(f"{name!r} is a built-in alias of OPNsense")
    if name in data["services"] or name in data["protocols"]:
        problems.append(f"{name!r} is a service or protocol name, which OPNsense reserves")
    return problems


def _name_pattern_reason(name: str) -> str:
    bad = sorted({c for c in name if not (c.isascii() and (c.isalnum() or c == "_"))})
    if not name:
        return "it is empty"
    if bad:
        return f"{', '.join(map(repr, bad))} not allowed (only letters, digits and '_')"
    if len(name) > 31:
        return f"{len(name)} characters, at most 31 allowed"
    if name.startswith("__") or name == "_":
        return "a leading '__' or a lone '_' is not allowed"
    return "it must start with a letter or '_'"


# PortField::$wellknownservices: the only names a filter rule's port may use. An alias's
# port content takes any name of /etc/services instead (Util::isPort), so the two differ:
# "amqp" is a port alias entry but, in a rule, the name of an alias.
RULE_PORT_NAMES = frozenset(
    (
        "afs3-fileserver",
        "aol",
        "auth",
        "avt-profile-1",
        "cvsup",
        "domain",
        "ftp",
        "hbci",
        "http",
        "https",
        "igmpv3lite",
        "imap",
        "imaps",
        "ipsec-msft",
        "ipsec-nat-t",
        "isakmp",
        "l2f",
        "ldap",
        "microsoft-ds",
        "ms-streaming",
        "ms-wbt-server",
        "msnp",
        "nat-stun-port",
        "netbios-dgm",
        "netbios-ns",
        "netbios-ssn",
        "nntp",
        "ntp",
        "openvpn",
        "pop3",
        "pop3s",
        "pptp",
        "radius",
        "radius-acct",
        "rfb",
        "sip",
        "smtp",
        "snmp",
        "snmptrap",
        "ssh",
        "submission",
        "telnet",
        "teredo",
        "tftp",
        "urd",
        "wins",
    )
)


def is_rule_port_name(value: str) -> bool:
    return value in RULE_PORT_NAMES


def is_service(value: str) -> bool:
    return value in _reserved()["services"]


def is_alias_name(value: str) -> bool:
    return bool(re.fullmatch(_reserved()["name_pattern"], value))


# Pure and asked again and again for the same strings (the checks at validate, the
# plan's compare, the lockout check before and after, verify): 5,000 parses for a
# 200-rule apply, of a few dozen distinct values. Networks are immutable.
@lru_cache(maxsize=8192)
def address(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """The network of an IP or an IP/prefix, or None when ``value`` is neither.

    As strict as the firewall's Util::isIpAddress/isSubnet: no zone ids ("fe80::1%em0"),
    no netmask form ("10.0.0.0/255.0.0.0") and no surrounding spaces, which Python's
    ipaddress would all accept and the firewall refuses.
    """
    _, slash, prefix = value.partition("/")
    if "%" in value or value != value.strip() or (slash and not prefix.isdigit()):
        return None
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        return None


def is_ip(value: str) -> bool:
    """A single address, no prefix."""
    return "/" not in value and address(value) is not None


def is_domain(value: str) -> bool:
    """A host name; never the dotted-decimal form, so "10.0.0.300" is no host name."""
    labels = value.rstrip(".").split(".")
    if labels[0].isdigit() and labels[-1].isdigit():
        return False
    return len(value) <= 253 and bool(DOMAIN_LABELS.fullmatch(value))


def is_port(value: str) -> bool:
    return value.isdigit() and 1 <= int(value) <= 65535


def port_range(value: str, separator: str) -> bool:
    low, sep, high = value.partition(separator)
    return bool(sep) and is_port(low) and is_port(high) and int(low) <= int(high)


def alias_entry_problem(alias_type: str, entry: str) -> str | None:
    """Why ``entry`` is not valid content for an alias of ``alias_type``; None when it is.

    The rules are the firewall's AliasContentField ones. Entries naming other aliases are
    accepted when they are shaped like an alias name: whether that alias exists is only
    known at plan time, and the firewall refuses the write if it does not.
    """
    check = _ENTRY_CHECKS.get(alias_type)
    return check(entry) if check else None


def _host_entry(entry: str) -> str | None:
    low, sep, high = entry.partition("-")
    if sep and is_ip(low):
        ok = is_ip(high)
    elif entry.startswith("!"):
        ok = is_ip(entry[1:])  # a single address may be excluded, nothing else
    else:
        ok = is_ip(entry) or is_domain(entry) or is_alias_name(entry)
    if ok:
        return None
    hint = "; networks belong in a network alias" if address(entry.lstrip("!")) else ""
    return f"{entry!r} is not an IP address, a range a-b, a host name or an alias{hint}"


def _network_entry(entry: str) -> str | None:
    plain = entry.removeprefix("!")
    low, sep, high = plain.partition("-")
    ok = (
        address(plain) is not None
        or (bool(sep) and not entry.startswith("!") and is_ip(low) and is_ip(high))
        or (plain == entry and is_alias_name(entry))
    )
    if ok:
        return None
    return f"{entry!r} is not a network (CIDR), an address, a range a-b or an alias"


def _port_entry(entry: str) -> str | None:
    parts = entry.split(":")
    if len(parts) <= 2 and all(is_port(p) or is_service(p) for p in parts):
        return None
    if len(parts) == 1 and is_alias_name(entry):
        return None
    if port_range(entry, "-"):
        low, _, high = entry.partition("-")
        return f"{entry!r}: port ranges in an alias are written with ':', like {low}:{high}"
    return f"{entry!r} is not a port (1-65535), a range like 8000:8080, or an alias"


def _url_entry(entry: str) -> str | None:
    ok = entry.startswith(("http://", "https://")) and len(entry) > 8
    return None if ok else f"{entry!r} is not an http(s) URL"


def _mac_entry(entry: str) -> str | None:
    if MAC.fullmatch(entry):
        return None
    return f"{entry!r} is not a MAC address or a prefix of one (2 to 6 octets, like 00:1a:2b)"


def _asn_entry(entry: str) -> str | None:
    ok = entry.isdigit() and 1 <= int(entry) <= 4294967296
    return None if ok else f"{entry!r} is not an AS number (1 to 4294967296)"


def _geoip_entry(entry: str) -> str | None:
    if len(entry) == 2 and entry.isascii() and entry.isalpha() and entry.isupper():
        return None
    if len(entry) == 2 and entry.isascii() and entry.isalpha():
        return f"{entry!r}: country codes are upper case, like {entry.upper()!r}"
    return f"{entry!r} is not a two-letter country code like PT"


def _networkgroup_entry(entry: str) -> str | None:
    return None if is_alias_name(entry) else f"{entry!r} is not an alias name"


def _dynipv6host_entry(entry: str) -> str | None:
    # The host part of an address whose prefix the tracked interface supplies: "::1000".
    # The firewall's own test: it must make an address once "0000" is put in front.
    ok = is_ip("0000" + entry)
    return None if ok else f"{entry!r} is not the host part of an IPv6 address, like ::1000"


_ENTRY_CHECKS = {
    "host": _host_entry,
    "network": _network_entry,
    "port": _port_entry,
    "url": _url_entry,
    "urltable": _url_entry,
    "mac": _mac_entry,
    "asn": _asn_entry,
    "geoip": _geoip_entry,
    "networkgroup": _networkgroup_entry,
    "dynipv6host": _dynipv6host_entry,
}


def classify_net(value: str) -> str:
    """'any', 'interface', 'address' or 'alias': how OPNsense reads a rule's net field."""
    if value == "any":
        return "any"
    if INTERFACE_NET.fullmatch(value):
        return "interface"
    if address(value) is not None:
        return "address"
    return "alias"


def family_of(ipprotocol: str) -> int | None:
    return {"inet": 4, "inet6": 6}.get(ipprotocol)
