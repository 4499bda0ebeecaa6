"""Address, port and name checks with the semantics of OPNsense's ``Firewall\\Util``.

PHP's ``filter_var(FILTER_VALIDATE_IP)`` and Python's ``ipaddress`` agree on the inputs
that matter here (no zone ids, no leading zeros in IPv4), which keeps these small.
"""

from __future__ import annotations

import ipaddress
import re
from functools import cache
from importlib import resources


def is_ip(value: str) -> bool:
    if "%" in value or value != value.strip():
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def is_ipv4(value: str) -> bool:
    return is_ip(value) and ":" not in value


def is_subnet(value: str) -> bool:
    parts = value.split("/")
    if len(parts) != 2 or not is_ip(parts[0]) or not parts[1].isdigit():
        return False
    return int(parts[1]) <= (128 if ":" in parts[0] else 32)


def is_wildcard(value: str) -> bool:
    parts = value.split("/")
    if len(parts) != 2 or not (is_ip(parts[0]) and is_ip(parts[1])):
        return False
    return (":" in parts[0]) == (":" in parts[1])


_DOMAIN = re.compile(
    r"^(?:(?:[^\W_]|[^\W_][\w\-]*[^\W_])\.)*(?:[^\W_]|[^\W_][\w\-]*[^\W_])$", re.IGNORECASE
)


def is_domain(value: str) -> bool:
    """Util::isDomain: labels of letters/digits/hyphens; never the dotted-decimal form."""
    parts = value.split(".")
    if parts[0].isdigit() and parts[-1].isdigit():
        return False
    return bool(_DOMAIN.match(value)) and "_" not in value


@cache
def _names(filename: str, skip_index: int) -> frozenset[str]:
    # Util::getservbyname() keeps every word of a line but the second (port/proto);
    # getprotobyname() knows the name and its aliases, also all but the second word.
    text = resources.files(__package__).joinpath(f"data/{filename}").read_text()
    names: set[str] = set()
    for line in text.splitlines():
        if len(line) <= 1 or line.startswith("#"):
            continue
        for idx, word in enumerate(line.split()):
            if word.startswith("#"):
                break
            if idx != skip_index:
                names.add(word)
    return frozenset(names)


def is_service_name(value: str) -> bool:
    return value in _names("services", 1)


def is_protocol_name(value: str) -> bool:
    return value in _names("protocols", 1)


@cache
def protocol_options() -> dict[str, str]:
    """ProtocolField's list: /etc/protocols names (number > 0) upper-cased, minus IPv6 headers."""
    skip = {"IPV6-ROUTE", "IPV6-FRAG", "IPV6-OPTS", "IPV6-NONXT", "MOBILITY-HEADER"}
    text = resources.files(__package__).joinpath("data/protocols").read_text()
    found: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) >= 3 and parts[1].isdigit() and int(parts[1]) > 0:
            name = parts[0].upper()
            if name not in skip:
                found[name] = name
    return found


def _is_int_in(value: str, low: int, high: int) -> bool:
    return re.fullmatch(r"[+-]?\d+", value) is not None and low <= int(value) <= high


def is_port(value: str, allow_range: bool = True) -> bool:
    """Util::isPort: a number 1..65535 or a service name, ranges written ``a:b``."""
    parts = value.split(":")
    for part in parts:
        if not (part.isdigit() and _is_int_in(part, 1, 65535)) and not is_service_name(part):
            return False
    return (allow_range and len(parts) <= 2) or len(parts) == 1


def is_int_in(value: str, low: int, high: int) -> bool:
    return _is_int_in(value, low, high)
