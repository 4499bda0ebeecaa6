"""The three item collections the emulator serves, per release: fields and model checks.

Field tables follow ``Alias.xml``, ``Filter.xml`` (``rules.rule``) and ``Unbound.xml``
(``hosts.host``) at each release tag; the model checks follow ``Filter.php``. Fields
that FazAI and its peers never send (traffic shaping, schedules, adaptive timeouts, ...)
are left out: like any unknown key they are ignored on write and absent on read.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from controller.testing.opnsense.fields import Context, Field
from controller.testing.opnsense.messages import msg
from controller.testing.opnsense.versions import Version, get_version

KINDS = ("alias", "rule", "host")

# Firewall/static_aliases/core.json: always present, so their names are taken.
STATIC_ALIASES: dict[str, dict[str, str]] = {
    "bogons": {"description": "bogon networks (internal)", "expire": ""},
    "bogonsv6": {"description": "bogon networks IPv6 (internal)", "expire": ""},
    "virusprot": {"description": "overload table for rate limiting (internal)", "expire": "3600"},
    "sshlockout": {"description": "abuse lockout table (internal)", "expire": "3600"},
}


@dataclass(frozen=True)
class Collection:
    kind: str  # alias | rule | host
    wrapper: str  # the key write bodies and get* answers are wrapped in
    model: str  # the model's name in a whole-model ``get`` answer
    path: tuple[str, str]  # where the items sit in the model: aliases.alias, rules.rule, ...
    subsystem: str  # what reconfigure/apply brings live: alias | filter | unbound
    fields: tuple[Field, ...]

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)

    def defaults(self) -> dict[str, str]:
        return {f.name: f.default for f in self.fields}


def _bool(name: str, default: str = "", required: bool = True) -> Field:
    return Field(name, "bool", default=default, required=required and default != "")


def _alias_fields(v: Version) -> tuple[Field, ...]:
    types = [
        ("host", "Host(s)"),
        ("network", "Network(s)"),
        ("port", "Port(s)"),
        ("url", "URL (IPs)"),
        ("urltable", "URL Table (IPs)"),
    ]
    if v.alias_urljson:
        types.append(("urljson", "URL Table in JSON format (IPs)"))
    types += [
        ("geoip", "GeoIP"),
        ("networkgroup", "Network group"),
        ("mac", "MAC address"),
        ("asn", "BGP ASN"),
        ("dynipv6host", "Dynamic IPv6 Host"),
        ("authgroup", "OpenVPN group"),
        ("internal", "Internal (automatic)"),
        ("external", "External (advanced)"),
    ]
    fields = [
        _bool("enabled", "1"),
        Field("name", "alias_name", required=True),
        # Alias.xml's default "alert" is no option: the type must always be sent.
        Field("type", "option", default="alert", required=True, options=tuple(types)),
    ]
    if v.alias_urljson:
        fields.append(Field("path_expression", "text"))
    fields += [
        Field("proto", "option", multiple=True, options=(("IPv4", "IPv4"), ("IPv6", "IPv6"))),
        Field(
            "interface",
            "interface",
            set_if=("type", ("dynipv6host",), "alias.dynipv6host_interface"),
        ),
        _bool("counters", required=False),
        Field("updatefreq", "numeric", message="alias.updatefreq"),
        Field("content", "alias_content"),
    ]
    if v.alias_urljson:
        auth = [("Basic", "Basic"), ("Bearer", "Bearer")]
        if v.name in ("26.1", "26.7"):
            auth.append(("Header", "Header"))
        fields += [
            Field("password", "text"),
            Field("username", "text"),
            Field("authtype", "option", options=tuple(auth)),
        ]
    if v.sequence_auto:
        fields.append(Field("expire", "int", low=60, high=999999999))
    fields += [
        Field("categories", "category", multiple=True),
        Field("description", "description"),
    ]
    return tuple(fields)


_PRIOS = tuple((str(p), str(p)) for p in range(8))
_TCP_FLAGS = tuple((f, f.upper()) for f in ("syn", "ack", "fin", "rst", "psh", "urg", "ece", "cwr"))
# Rule fields FazAI never sends but upstream's model has (24.7+ "extended" rules);
# clients such as oxl-opnsense-client expect them in every rule they read.
_EXTENDED_RULE_FIELDS = (
    Field("statetype", "option", default="keep", required=True,
          options=(("keep", "keep state"), ("sloppy", "sloppy state"),
                   ("modulate", "modulate state"), ("synproxy", "synproxy state"),
                   ("none", "no state"))),
    Field("interfacenot", "bool", default="0"),
    Field("state-policy", "option", options=(("if-bound", "Bind states to interface"),
                                             ("floating", "Floating states"))),
    Field("statetimeout", "text"),
    Field("allowopts", "bool", default="0"),
    Field("disablereplyto", "bool", default="0"),
    Field("replyto", "gateway"),
    Field("tag", "text"),
    Field("tagged", "text"),
    Field("max", "text"),
    Field("max-src-nodes", "text"),
    Field("max-src-states", "text"),
    Field("max-src-conn", "text"),
    Field("max-src-conn-rate", "text"),
    Field("max-src-conn-rates", "text"),
    Field("overload", "option"),
    Field("adaptivestart", "text"),
    Field("adaptiveend", "text"),
    Field("prio", "option", options=_PRIOS),
    Field("set-prio", "option", options=_PRIOS),
    Field("set-prio-low", "option", options=_PRIOS),
    Field("tcpflags1", "option", multiple=True, options=_TCP_FLAGS),
    Field("tcpflags2", "option", multiple=True, options=_TCP_FLAGS),
    Field("sched", "option"),
    Field("tos", "option"),
    Field("divert-to", "option"),
    Field("shaper1", "option"),
    Field("shaper2", "option"),
)  # fmt: skip


def _rule_fields(v: Version) -> tuple[Field, ...]:
    ext = v.rule_extended
    seq_msg = "rule.sequence_old" if v.before_25_7 else "rule.sequence"
    port_msg = "rule.port" if v.name in ("26.1", "26.7") else "rule.port_old"
    directions = [("in", "In"), ("out", "Out")] + ([("any", "Both")] if v.direction_any else [])
    families = [("inet", "IPv4"), ("inet6", "IPv6")]
    if ext:
        families.append(("inet46", v.inet46_label))
    fields = [_bool("enabled", "1")]
    if ext:
        states = (
            ("keep", "keep state"),
            ("sloppy", "sloppy state"),
            ("modulate", "modulate state"),
            ("synproxy", "synproxy state"),
            ("none", "no state"),
        )
        fields.append(Field("statetype", "option", default="keep", required=True, options=states))
    fields += [
        Field(
            "sequence",
            "int",
            default="1",
            required=True,
            low=1,
            high=v.sequence_max,
            message=seq_msg,
        ),
        Field(
            "action",
            "option",
            default="pass",
            required=True,
            options=(("pass", "Pass"), ("block", "Block"), ("reject", "Reject")),
        ),
        _bool("quick", "1"),
    ]
    if ext:
        fields.append(_bool("interfacenot", "0"))
    fields += [
        Field("interface", "interface", multiple=True),
        Field("direction", "option", default="in", required=True, options=tuple(directions)),
        Field("ipprotocol", "option", default="inet", required=True, options=tuple(families)),
        Field("protocol", "protocol", default="any", required=True),
        Field("source_net", "netalias", default="any", required=True, multiple=ext),
        _bool("source_not", "0"),
        Field("source_port", "port", message=port_msg),
        Field("destination_net", "netalias", default="any", required=True, multiple=ext),
        _bool("destination_not", "0"),
        Field("destination_port", "port", message=port_msg),
        Field("gateway", "gateway"),
        _bool("log", "0"),
        Field("categories", "category", multiple=True),
        Field("description", "description"),
    ]
    if ext:
        have = {f.name for f in fields}
        fields += [f for f in _EXTENDED_RULE_FIELDS if f.name not in have]
    return tuple(fields)


_DOMAIN_MASK = (
    r"(?i)^(?:(?:[a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*(?:[a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])$"
)


def _host_fields(v: Version) -> tuple[Field, ...]:
    rrs = [("A", "A (IPv4 address)"), ("AAAA", "AAAA (IPv6 address)"), ("MX", v.mx_label)]
    if v.host_txt:
        rrs.append(("TXT", "TXT (text)"))
    fields = [
        _bool("enabled", "1"),
        Field("hostname", "hostname", mask="dnsname"),
        Field("domain", "text", required=True, mask=_DOMAIN_MASK, message="host.domain"),
        Field("rr", "option", default="A", required=True, options=tuple(rrs)),
        Field("mxprio", "int", set_if=("rr", ("MX",), "host.mxprio")),
        Field("mx", "hostname", set_if=("rr", ("MX",), "host.mx")),
    ]
    if v.host_ttl:
        fields.append(Field("ttl", "int", low=0, high=2147483647))
    fields.append(Field("server", "network", set_if=("rr", ("A", "AAAA"), "host.server")))
    if v.host_txt:
        fields.append(Field("txtdata", "description", set_if=("rr", ("TXT",), "host.txtdata")))
    if v.host_addptr:
        fields.append(_bool("addptr", "1"))
    fields.append(Field("description", "description"))
    return tuple(fields)


@cache
def collections(version_name: str) -> dict[str, Collection]:
    v = get_version(version_name)
    return {
        "alias": Collection(
            "alias", "alias", "alias", ("aliases", "alias"), "alias", _alias_fields(v)
        ),
        "rule": Collection("rule", "rule", "filter", ("rules", "rule"), "filter", _rule_fields(v)),
        "host": Collection(
            "host", "host", "unbound", ("hosts", "host"), "unbound", _host_fields(v)
        ),
    }


def model_checks(kind: str, ctx: Context) -> list[tuple[str, str]]:
    """Checks the model class adds after the field checks: (field, message) pairs."""
    if kind != "rule":
        return []
    return _filter_checks(ctx)


def _filter_checks(ctx: Context) -> list[tuple[str, str]]:
    """Filter::performValidation() for rules.rule."""
    from controller.testing.opnsense import netutil

    v = ctx.version
    r = ctx.item
    out: list[tuple[str, str]] = []
    port_protos = ("TCP", "UDP", "TCP/UDP") if v.rule_extended else ("TCP", "UDP")
    proto = r.get("protocol", "")
    if r.get("source_port", "") and proto not in port_protos:
        out.append(("source_port", msg("rule.source_port_proto")))
    if r.get("destination_port", "") and proto not in port_protos:
        out.append(("destination_port", msg("rule.destination_port_proto")))
    for side in ("destination", "source"):
        net = r.get(f"{side}_net", "")
        if netutil.is_subnet(net) or netutil.is_ip(net):
            family = "inet6" if ":" in net else "inet"
            if family != r.get("ipprotocol", ""):
                out.append((f"{side}_net", msg(f"rule.{side}_family")))
    if v.rule_extended:
        for name in ("source_net", "destination_net"):
            net = r.get(name, "")
            if "," in net and "any" in net.split(","):
                out.append((name, msg("rule.any_combined")))
    if v.sequence_auto:
        if "," in r.get("source_net", "") and r.get("source_not") == "1":
            out.append(("source_not", msg("rule.source_not_multi")))
        if "," in r.get("destination_net", "") and r.get("destination_not") == "1":
            # Upstream files this one under destination_net, not destination_not.
            out.append(("destination_net", msg("rule.destination_not_multi")))
    if v.rule_extended and r.get("interfacenot", "") not in ("", "0"):
        ifs = r.get("interface", "")
        if ifs == "" or len(ifs.split(",")) != 1:
            out.append(("interfacenot", msg("rule.interfacenot_multi")))
    return out
