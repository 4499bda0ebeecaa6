"""Field types of OPNsense's MVC models: how a value is stored, shown and checked.

A :class:`Field` is one leaf of a model XML (``Alias.xml``, ``Filter.xml``,
``Unbound.xml``); its ``kind`` names the PHP field type it imitates. Values are always
strings, as in config.xml. :func:`check_field` returns the messages upstream's
validators would, in their order: constraints, then presence, then the type's own check.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from controller.testing.opnsense import netutil
from controller.testing.opnsense.messages import fmt, msg
from controller.testing.opnsense.versions import Version

Kind = Literal[
    "bool",
    "option",
    "int",
    "numeric",
    "text",
    "description",
    "alias_name",
    "alias_content",
    "netalias",
    "port",
    "protocol",
    "interface",
    "hostname",
    "network",
    "category",
    "gateway",
]

# PortField::$wellknownservices, the names a rule port may use besides numbers.
WELL_KNOWN_PORTS: tuple[str, ...] = (
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

# AliasNameField's pf keywords (pfctl parse.y).
PF_RESERVED: frozenset[str] = frozenset(
    [
        "all",
        "allow-opts",
        "altq",
        "anchor",
        "antispoof",
        "any",
        "bandwidth",
        "binat",
        "binat-anchor",
        "bitmask",
        "block",
        "block-policy",
        "buckets",
        "cbq",
        "code",
        "codelq",
        "crop",
        "debug",
        "divert-reply",
        "divert-to",
        "drop",
        "drop-ovl",
        "dup-to",
        "fail-policy",
        "fairq",
        "fastroute",
        "file",
        "fingerprints",
        "flags",
        "floating",
        "flush",
        "for",
        "fragment",
        "from",
        "global",
        "group",
        "hfsc",
        "hogs",
        "hostid",
        "icmp-type",
        "icmp6-type",
        "if-bound",
        "in",
        "include",
        "inet",
        "inet6",
        "interval",
        "keep",
        "label",
        "limit",
        "linkshare",
        "load",
        "log",
        "loginterface",
        "max",
        "max-mss",
        "max-src-conn",
        "max-src-conn-rate",
        "max-src-nodes",
        "max-src-states",
        "min-ttl",
        "modulate",
        "nat",
        "nat-anchor",
        "no",
        "no-df",
        "no-route",
        "no-sync",
        "on",
        "optimization",
        "os",
        "out",
        "overload",
        "pass",
        "port",
        "prio",
        "priority",
        "priq",
        "probability",
        "proto",
        "qlimit",
        "queue",
        "quick",
        "random",
        "random-id",
        "rdr",
        "rdr-anchor",
        "realtime",
        "reassemble",
        "reply-to",
        "require-order",
        "return",
        "return-icmp",
        "return-icmp6",
        "return-rst",
        "round-robin",
        "route",
        "route-to",
        "rtable",
        "rule",
        "ruleset-optimization",
        "scrub",
        "set",
        "set-tos",
        "skip",
        "sloppy",
        "source-hash",
        "source-track",
        "state",
        "state-defaults",
        "state-policy",
        "static-port",
        "sticky-address",
        "synproxy",
        "table",
        "tag",
        "tagged",
        "target",
        "tbrsize",
        "timeout",
        "to",
        "tos",
        "ttl",
        "upperlimit",
        "urpf-failed",
        "user",
    ]
)

_ALIAS_NAME = re.compile(
    r"^([a-zA-Z]|(([_a-zA-Z][a-zA-Z0-9]|[a-zA-Z][_a-zA-Z0-9])[_a-zA-Z0-9]{0,29}))$"
)


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind
    default: str = ""
    required: bool = False
    options: tuple[tuple[str, str], ...] = ()
    multiple: bool = False
    blank: str = "None"
    low: int | None = None
    high: int | None = None
    message: str | None = None  # key in messages.json overriding the type's default
    mask: str | None = None  # text: a Python regex; hostname: "dnsname" (Unbound host) or None
    set_if: tuple[str, tuple[str, ...], str] | None = None  # (field, values, message key)
    volatile: bool = False


@dataclass
class Context:
    """What a check may look at besides the value: the item, its siblings, the box."""

    version: Version
    item: Mapping[str, str]
    siblings: list[Mapping[str, str]]
    aliases: Mapping[str, Mapping[str, str]]  # by name, static aliases included
    interfaces: Mapping[str, str]  # name -> description
    gateways: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


def normalize(f: Field, value: str) -> str:
    """What setValue() stores: ProtocolField upper-cases, PortField lower-cases names."""
    if f.kind == "protocol":
        return "any" if value.lower() == "any" else value.upper()
    if f.kind == "port" and value.strip().lower() in ("any", *WELL_KNOWN_PORTS):
        return value.strip().lower()
    if f.kind == "hostname":
        return value.strip()
    return value


def option_message(version: Version, item: str | None) -> str:
    if version.name in ("24.7", "25.1", "25.7"):
        return msg("option_old")
    return fmt("option", item or "")


def options_of(f: Field, ctx: Context) -> dict[str, str]:
    """The option list a list-type field accepts (key -> label)."""
    if f.kind == "option":
        return dict(f.options)
    if f.kind == "protocol":
        return protocol_list(ctx.version)
    if f.kind == "interface":
        return {k: v for k, v in ctx.interfaces.items() if k != "lo0"}
    if f.kind == "gateway":
        return {g: g for g in ctx.gateways}
    if f.kind == "netalias":
        nets = {"any": "any", "(self)": "This Firewall"}
        for name, descr in ctx.interfaces.items():
            nets[name] = f"{descr} net"
            nets[f"{name}ip"] = f"{descr} address"
        for name, alias in ctx.aliases.items():
            if alias.get("type") != "port":
                nets[name] = name
        return nets
    if f.kind == "port":
        ports = {"any": "any", **{n: n for n in WELL_KNOWN_PORTS}}
        for name, alias in ctx.aliases.items():
            if alias.get("type") == "port":
                ports[name] = name
        return ports
    return {}


def protocol_list(version: Version) -> dict[str, str]:
    """ProtocolField options in upstream's order: any, the usual suspects, then the rest."""
    base = dict(netutil.protocol_options())
    if version.rule_extended:
        base["TCP/UDP"] = "TCP/UDP"
    prio = ["TCP", "UDP", "TCP/UDP", "ICMP", "ESP", "AH", "GRE", "IGMP", "PIM", "OSPF"]
    ordered = {"any": "any"}
    ordered.update({p: base[p] for p in prio if p in base})
    ordered.update({k: base[k] for k in sorted(base, key=str.lower) if k not in ordered})
    return ordered


def _in_options(f: Field, value: str, opts: Mapping[str, str]) -> bool:
    if value in opts:
        return True
    if f.kind == "port":
        return _is_port_number_or_range(value)
    return False


def _is_port_number_or_range(value: str) -> bool:
    if netutil.is_int_in(value, 1, 65535) and value.isdigit():
        return True
    parts = value.split("-")
    return (
        len(parts) == 2
        and all(p == p.strip() and netutil.is_int_in(p, 1, 65535) for p in parts)
        and int(parts[0]) < int(parts[1])
    )


def check_field(f: Field, ctx: Context) -> list[str]:
    value = ctx.item.get(f.name, "")
    out: list[str] = []
    if f.set_if is not None:
        other, values, key = f.set_if
        if value == "" and ctx.item.get(other, "") in values:
            out.append(msg(key))
    if f.kind == "alias_name" and _name_taken(value, ctx):
        out.append(msg("alias.name_unique"))
    if f.required and value == "":
        out.append(msg("required"))
        return out
    if value == "":
        return out
    out.extend(_check_value(f, value, ctx))
    return out


def _name_taken(value: str, ctx: Context) -> bool:
    same = [s for s in ctx.siblings if s.get("name", "") == value]
    return len(same) > 1


def _check_value(f: Field, value: str, ctx: Context) -> list[str]:
    v = ctx.version
    kind = f.kind
    if kind == "bool":
        return [] if value in ("0", "1") else [msg(f.message or "boolean")]
    if kind == "int":
        ok = re.fullmatch(r"[+-]?\d+", value) is not None
        low = f.low if f.low is not None else -(2**63)
        high = f.high if f.high is not None else 2**63 - 1
        return [] if ok and low <= int(value) <= high else [msg(f.message or "integer")]
    if kind == "numeric":
        try:
            float(value)
        except ValueError:
            return [msg(f.message or "numeric")]
        return []
    if kind == "text":
        if f.mask and not re.search(f.mask, value):
            return [msg(f.message or "required")]
        return []
    if kind == "description":
        raw = value.encode()
        return [] if 1 <= len(raw) <= 255 and b"\n" not in raw else [msg("description")]
    if kind == "category":
        # The emulator has no categories, so every reference is dangling.
        return [msg("category")]
    if kind == "alias_name":
        return _check_alias_name(value)
    if kind == "alias_content":
        return check_alias_content(ctx.item.get("type", ""), value, ctx)
    if kind == "hostname":
        return _check_hostname(f, value, ctx)
    if kind == "network":
        ok = netutil.is_ip(value) or (v.name != "26.7" and netutil.is_subnet(value))
        return [] if ok else [msg("network")]
    opts = options_of(f, ctx)
    if kind == "netalias":
        if netutil.is_ip(value) or netutil.is_subnet(value):
            opts = {**opts, value: value}
        items = value.split(",") if (f.multiple and v.rule_extended) else [value]
        bad = [i for i in items if i not in opts]
        return [fmt("network_alias", value)] if bad else []
    if kind == "port":
        # PortField is single-valued: "80,443" is refused as a whole.
        return [] if _in_options(f, value, opts) else [msg(f.message or "rule.port")]
    if kind == "gateway":
        return [] if value in opts else [msg("rule.gateway")]
    # option, protocol, interface
    if f.multiple:
        out: list[str] = []
        for item in value.split(","):
            if item not in opts:
                m = option_message(v, item)
                if m not in out:
                    out.append(m)
        return out
    return [] if value in opts else [option_message(v, None)]


def _check_alias_name(value: str) -> list[str]:
    out = []
    if not _ALIAS_NAME.match(value):
        out.append(msg("alias.name_pattern"))
    if value in PF_RESERVED:
        out.append(msg("alias.name_reserved"))
    if netutil.is_service_name(value) or netutil.is_protocol_name(value):
        out.append(msg("alias.name_service"))
    return out


def check_alias_content(alias_type: str, content: str, ctx: Context) -> list[str]:
    """AliasContentField: one message per bad entry; entries are newline-separated."""
    entries = content.split("\n")
    known = ctx.aliases

    def is_alias(name: str) -> bool:
        return name in known

    out: list[str] = []
    for entry in entries:
        bad_key: str | None = None
        if alias_type == "port":
            if not is_alias(entry) and not netutil.is_port(entry, True):
                bad_key = "alias.content_port"
        elif alias_type == "host":
            rng = entry.split("-")
            if len(rng) == 2 and netutil.is_ip(rng[0]):
                bad_key = None if netutil.is_ip(rng[1]) else "alias.content_host"
            elif entry.startswith("!") and netutil.is_ip(entry[1:]):
                bad_key = None
            elif not (is_alias(entry) or netutil.is_ip(entry) or netutil.is_domain(entry)):
                bad_key = "alias.content_host"
        elif alias_type == "network":
            parts = entry.split("-")
            ips = sum(1 for p in parts if netutil.is_ip(p))
            others = sum(1 for p in parts if not netutil.is_ip(p) and p.strip() != "")
            rest = entry[1:]
            if entry.startswith("!") and (
                netutil.is_ip(rest) or netutil.is_subnet(rest) or netutil.is_wildcard(rest)
            ):
                bad_key = None
            elif not (
                is_alias(entry)
                or netutil.is_ip(entry)
                or netutil.is_subnet(entry)
                or netutil.is_wildcard(entry)
                or (ips == 2 and others == 0)
            ):
                bad_key = "alias.content_network"
        elif alias_type == "networkgroup":
            bad_key = None if is_alias(entry) else "alias.content_nested"
        elif alias_type == "mac":
            ok = re.fullmatch(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){1,5}", entry)
            bad_key = None if ok else "alias.content_mac"
        elif alias_type == "asn":
            asn_ok = re.fullmatch(r"[+]?\d+", entry) is not None and 1 <= int(entry) <= 4294967296
            bad_key = None if asn_ok else "alias.content_asn"
        elif alias_type == "dynipv6host":
            bad_key = None if netutil.is_ip("0000" + entry) else "alias.content_dynipv6"
        elif alias_type == "geoip":
            ok = re.fullmatch(r"[A-Z]{2}", entry)
            bad_key = None if ok else "alias.content_country"
        if bad_key is not None:
            out.append(fmt(bad_key, entry))
    return out


_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def _check_hostname(f: Field, value: str, ctx: Context) -> list[str]:
    v = ctx.version
    is_ip = netutil.is_ip(value)
    dns_name = f.mask == "dnsname" and v.host_dnsname
    ip_allowed = not dns_name
    if (f.mask in ("dnsname", "wildcard") and value == "*") or (ip_allowed and is_ip):
        ok = True
    elif _valid_domain(value, hostname_rules=not dns_name):
        ok = not is_ip and re.search(r"(\s|/|\*)", value) is None
    else:
        ok = False
    if ok:
        return []
    if f.mask == "dnsname" and v.name == "26.7":
        return [msg("host.hostname")]
    return [fmt("hostname", value)]


def _valid_domain(value: str, hostname_rules: bool) -> bool:
    """PHP FILTER_VALIDATE_DOMAIN, with FILTER_FLAG_HOSTNAME when ``hostname_rules``."""
    name = value[:-1] if value.endswith(".") else value
    if not name or len(name) > 253:
        return False
    for label in name.split("."):
        if not 1 <= len(label) <= 63:
            return False
        if hostname_rules and not _HOST_LABEL.match(label):
            return False
    return True


def render(f: Field, value: str, ctx: Context) -> Any:
    """How get* shows a field: option maps for list types, the plain string otherwise."""
    if f.kind in ("option", "protocol", "interface", "gateway", "category"):
        opts = {} if f.kind == "category" else options_of(f, ctx)
        selected = set(value.split(",")) if value != "" else set()
        out: dict[str, dict[str, Any]] = {}
        if not f.required and not f.multiple and f.kind != "category":
            out[""] = {"value": f.blank, "selected": 1 if value == "" else 0}
        for key, label in opts.items():
            out[key] = {"value": label, "selected": 1 if key in selected else 0}
        # PHP's json_encode writes an empty array as [], not {}.
        return out if out else []
    if f.kind == "alias_content":
        return {item: {"value": item, "selected": 1} for item in value.split("\n")}
    return value


def describe(f: Field, value: str, ctx: Context) -> str:
    """getDescription(): option labels joined by ", ", the raw value for other types."""
    if f.kind in ("option", "protocol", "interface", "gateway", "netalias", "port"):
        opts = options_of(f, ctx)
        items = [i for i in value.split(",") if i != ""] if f.kind != "port" else [value]
        if f.kind == "port" and value == "":
            return ""
        return ", ".join(opts.get(i, i) for i in items)
    return value
