"""Anti-lockout: refuse a rule set that would cut the controller off from the firewall's API.

A firewall's own dead-man timer cannot undo a change that stops the controller from
reaching the API (the controller can no longer cancel, verify or roll back), and from
26.7 there is no timer at all. So before anything is written, the rule set the apply
would leave behind is evaluated for one path: TCP from the controller's address to the
API's address and port, inbound. Evaluation follows pf: rules in order, the first
matching ``quick`` rule decides, otherwise the last matching non-quick one.

Everything here is pure (no I/O) and deliberately pessimistic. A match is three-valued:
YES, NO, or MAYBE when the rule names something whose addresses FazAI cannot know
(an interface network, a host name, a URL or GeoIP alias, an unknown alias). A block
rule that MAYBE matches counts as blocking; a pass rule only protects the path when it
matches for certain. The interface the controller's packets arrive on is unknown unless
the caller says so, so every interface is evaluated, and so are two orderings (by
sequence alone, and floating rules first as 25.7+ groups them): any blocked interface
in any ordering is a lockout. Rules not in the MVC model (legacy interface rules, the
built-in anti-lockout rule) are invisible here; a path no visible rule decides is
accepted, unless the apply removes a visible pass rule that decided it before.
"""

from __future__ import annotations

import enum
import ipaddress
import socket
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.providers.opnsense import naming

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# The pseudo-interface that stands for every interface no rule names: rules bound to no
# interface (floating on all) or with an inverted interface still apply there.
OTHER_INTERFACES = "*"

# Alias types whose content is a list of addresses FazAI can evaluate.
ADDRESS_ALIAS_TYPES = {"host", "network", "networkgroup"}


class Tri(enum.IntEnum):
    """A three-valued match; ``min`` of several is their conjunction, ``max`` their
    disjunction."""

    NO = 0
    MAYBE = 1
    YES = 2


def _not(value: Tri) -> Tri:
    return Tri(2 - value)


@dataclass(frozen=True)
class Match:
    value: Tri
    unsure: tuple[str, ...] = ()  # why a MAYBE is a MAYBE, for the message


def _all(matches: Iterable[Match]) -> Match:
    found = list(matches)
    value = min((m.value for m in found), default=Tri.YES)
    unsure = () if value is Tri.NO else tuple(u for m in found for u in m.unsure)
    return Match(value, unsure)


def _any(matches: Iterable[Match]) -> Match:
    found = list(matches)
    value = max((m.value for m in found), default=Tri.NO)
    unsure = () if value is Tri.YES else tuple(u for m in found for u in m.unsure)
    return Match(value, unsure)


YES = Match(Tri.YES)
NO = Match(Tri.NO)


def maybe(reason: str) -> Match:
    return Match(Tri.MAYBE, (reason,))


@dataclass(frozen=True)
class ManagementPath:
    """The controller's way in: TCP from ``source`` to ``destination``:``port``."""

    source: IPAddress
    destination: IPAddress
    port: int

    @property
    def family(self) -> int:
        return self.destination.version

    def __str__(self) -> str:
        destination = (
            f"[{self.destination}]" if self.destination.version == 6 else str(self.destination)
        )
        return f"{self.source} -> {destination}:{self.port}/tcp"


@dataclass(frozen=True)
class Alias:
    name: str
    type: str
    content: tuple[str, ...]
    enabled: bool = True


@dataclass(frozen=True)
class Rule:
    """One filter rule in the essence shape (``essence.live_rule``/``desired_rule``) plus
    the raw fields that matter here, with where it comes from for the message."""

    key: str  # the rule's uuid
    fields: Mapping[str, Any]
    origin: str  # "FirewallRule/x (fw.yaml:12:3)" or "rule <uuid> 'descr' on the firewall"
    changed: bool = False  # written by this apply
    interfacenot: bool = False
    statetype: str = ""

    @property
    def action(self) -> str:
        return str(self.fields.get("action", "pass")) or "pass"

    @property
    def blocks(self) -> bool:
        # Anything that is not a pass stops packets; an unknown action is treated as one.
        return self.action != "pass"

    @property
    def sequence(self) -> int:
        text = str(self.fields.get("sequence", "") or "")
        return int(text) if text.isdigit() else 0

    @property
    def interfaces(self) -> tuple[str, ...]:
        value = self.fields.get("interface", [])
        items = value if isinstance(value, list | tuple) else [value]
        # "lan,opt1" is two interfaces wherever it appears, a list item included.
        return tuple(p.strip() for i in items for p in str(i).split(",") if p.strip())

    @property
    def floating(self) -> bool:
        return len(self.interfaces) != 1 or self.interfacenot


@dataclass(frozen=True)
class Lockout:
    """Why the path would be blocked on ``interface`` ("*": interfaces no rule names)."""

    interface: str
    rule: Rule | None  # the blocking rule; None when a pass rule the path needed is gone
    unsure: tuple[str, ...] = ()
    removed: tuple[Rule, ...] = field(default=())

    def describe(self, path: ManagementPath) -> str:
        where = (
            "on interfaces no rule names" if self.interface == OTHER_INTERFACES
            else f"on interface {self.interface}"
        )  # fmt: skip
        if self.rule is None:
            gone = ", ".join(r.origin for r in self.removed) or "a pass rule"
            return (
                f"the controller's path to the API ({path}) {where} is let in today by "
                f"{gone}; after this apply no rule FazAI can see passes it"
            )
        verb = "would block" if not self.unsure else "may block"
        text = (
            f"{self.rule.origin} {verb} the controller's path to the API ({path}) {where} "
            "before any rule passes it"
        )
        if self.unsure:
            text += f" ({'; '.join(dict.fromkeys(self.unsure))})"
        if not self.rule.changed:
            text += (
                "; the rule is already on the firewall, but this apply reloads the filter "
                "and changes what it matches or makes it live"
            )
        return text


# -- matching ---------------------------------------------------------------------------


class _Aliases:
    def __init__(self, aliases: Mapping[str, Alias]) -> None:
        self.by_name = aliases

    def address(self, name: str, address: IPAddress, seen: frozenset[str] = frozenset()) -> Match:
        alias = self.by_name.get(name)
        if alias is None:
            return maybe(f"alias {name!r} is not known")
        if name in seen:
            return maybe(f"alias {name!r} contains itself")
        if not alias.enabled:
            return maybe(f"alias {name!r} is disabled")
        if alias.type not in ADDRESS_ALIAS_TYPES:
            return maybe(f"alias {name!r} is of type {alias.type}, whose addresses vary")
        return _any(
            self._address_entry(name, entry, address, seen | {name}) for entry in alias.content
        )

    def _address_entry(
        self, alias: str, entry: str, address: IPAddress, seen: frozenset[str]
    ) -> Match:
        if entry.startswith("!"):
            # An exclusion carves addresses out of a wider entry; whether it wins for our
            # address depends on the other entries, so say MAYBE when it concerns us.
            inner = _address_match(entry[1:], address)
            if inner.value is Tri.NO:
                return NO
            return maybe(f"alias {alias!r} excludes {entry[1:]!r}")
        low, dash, high = entry.partition("-")
        if dash and naming.is_ip(low) and naming.is_ip(high):
            first, last = ipaddress.ip_address(low), ipaddress.ip_address(high)
            if first.version != address.version:
                return NO
            return YES if first <= address <= last else NO  # type: ignore[operator]
        if naming.address(entry) is not None:
            return _address_match(entry, address)
        if naming.is_alias_name(entry) and entry in self.by_name:
            return self.address(entry, address, seen)
        return maybe(f"alias {alias!r} holds {entry!r}, a name FazAI cannot resolve")

    def port(self, name: str, port: int, seen: frozenset[str] = frozenset()) -> Match:
        alias = self.by_name.get(name)
        if alias is None:
            return maybe(f"port alias {name!r} is not known")
        if name in seen:
            return maybe(f"alias {name!r} contains itself")
        if not alias.enabled:
            return maybe(f"alias {name!r} is disabled")
        if alias.type != "port":
            return maybe(f"alias {name!r} of type {alias.type} used as a port")
        matches = []
        for entry in alias.content:
            if entry in self.by_name:
                matches.append(self.port(entry, port, seen | {name}))
            else:
                matches.append(_port_value(entry, port, ":"))
        return _any(matches)


def _address_match(net: str, address: IPAddress) -> Match:
    network = naming.address(net)
    if network is None:
        return maybe(f"{net!r} is not an address")
    if network.version != address.version:
        return NO
    return YES if address in network else NO


def _net_match(value: str, address: IPAddress, aliases: _Aliases, *, destination: bool) -> Match:
    matches = []
    for token in [t.strip() for t in value.split(",") if t.strip()] or ["any"]:
        kind = naming.classify_net(token)
        if kind == "any":
            matches.append(YES)
        elif token == "(self)":
            # Every address of the firewall, the API's included; the controller is not
            # the firewall.
            matches.append(YES if destination else maybe("'(self)' as the source"))
        elif kind == "interface":
            matches.append(maybe(f"{token!r} is an interface network FazAI cannot see"))
        elif kind == "address":
            matches.append(_address_match(token, address))
        else:
            matches.append(aliases.address(token, address))
    return _any(matches)


def _service_port(name: str) -> int | None:
    try:
        return socket.getservbyname(name, "tcp")
    except OSError:
        return None


def _port_value(value: str, port: int, separator: str) -> Match:
    """A port, a range ``a<separator>b`` or a service name against ``port``."""
    low, sep, high = value.partition(separator)
    if not sep and separator != "-":
        low, sep, high = value.partition("-")
    if sep and low.isdigit() and high.isdigit():
        return YES if int(low) <= port <= int(high) else NO
    if value.isdigit():
        return YES if int(value) == port else NO
    known = _service_port(value)
    if known is not None:
        return YES if known == port else NO
    return maybe(f"port {value!r} is not a number FazAI knows")


def _destination_port(value: str, port: int, aliases: _Aliases) -> Match:
    tokens = [t.strip() for t in value.split(",") if t.strip()]
    if not tokens:
        return YES
    matches = []
    for token in tokens:
        if token[:1].isdigit() or naming.is_rule_port_name(token):
            matches.append(_port_value(token, port, "-"))
        else:
            matches.append(aliases.port(token, port))
    return _any(matches)


def _family(ipprotocol: str, family: int) -> Match:
    families = {"inet": {4}, "inet6": {6}, "inet46": {4, 6}}.get(ipprotocol or "inet")
    if families is None:
        return maybe(f"address family {ipprotocol!r} is unknown")
    return YES if family in families else NO


def _protocol(value: str) -> Match:
    text = (value or "any").upper()
    return YES if text in ("ANY", "TCP", "TCP/UDP") else NO


def rule_match(rule: Rule, path: ManagementPath, aliases: Mapping[str, Alias]) -> Match:
    """Whether ``rule`` matches the path, interface aside."""
    f = rule.fields
    if not f.get("enabled", True):
        return NO
    known = _Aliases(aliases)
    direction = str(f.get("direction") or "in")
    source = _net_match(str(f.get("source_net") or "any"), path.source, known, destination=False)
    target = _net_match(
        str(f.get("destination_net") or "any"), path.destination, known, destination=True
    )
    source_port = str(f.get("source_port") or "")
    return _all(
        [
            YES if direction in ("in", "any") else NO,
            _family(str(f.get("ipprotocol") or "inet"), path.family),
            _protocol(str(f.get("protocol") or "any")),
            Match(_not(source.value), source.unsure) if f.get("source_not") else source,
            Match(_not(target.value), target.unsure) if f.get("destination_not") else target,
            # The controller's source port is ephemeral: any restriction may hit it.
            YES if not source_port else maybe(f"source port {source_port!r}"),
            _destination_port(str(f.get("destination_port") or ""), path.port, known),
        ]
    )


def _applies(rule: Rule, interface: str) -> bool:
    names = rule.interfaces
    if not names:
        return True  # floating on every interface
    if rule.interfacenot:
        return interface not in names
    return interface in names


def _protects(rule: Rule, match: Match) -> bool:
    """A pass rule that surely lets the controller in (and its answers out)."""
    if match.value is not Tri.YES or rule.blocks:
        return False
    # Policy routing can send the answers elsewhere; without state the answers meet the
    # outbound rules. Neither is a sure pass.
    return not rule.fields.get("gateway") and rule.statetype != "none"


@dataclass(frozen=True)
class Verdict:
    passed: bool
    rule: Rule
    unsure: tuple[str, ...] = ()


def evaluate(
    rules: Sequence[Rule], aliases: Mapping[str, Alias], path: ManagementPath, interface: str
) -> Verdict | None:
    """What the rules, in the given order, do to the path on ``interface``: None when no
    visible rule decides (the legacy rules and the default policy do)."""
    verdict: Verdict | None = None
    for rule in rules:
        if not _applies(rule, interface):
            continue
        match = rule_match(rule, path, aliases)
        if rule.blocks:
            if match.value is Tri.NO:
                continue
            verdict = Verdict(False, rule, match.unsure)
            if rule.fields.get("quick", True):
                return verdict
        elif _protects(rule, match):
            verdict = Verdict(True, rule)
            if rule.fields.get("quick", True):
                return verdict
    return verdict


def orderings(rules: Iterable[Rule]) -> list[list[Rule]]:
    """The evaluation orders to consider: by sequence, and with floating rules first (the
    priority groups of 25.7+). At equal sequence a block goes first: the worse case."""
    items = list(rules)

    def by_sequence(rule: Rule) -> tuple[int, int, str]:
        return (rule.sequence, 0 if rule.blocks else 1, rule.key)

    plain = sorted(items, key=by_sequence)
    grouped = sorted(items, key=lambda r: (0 if r.floating else 1, *by_sequence(r)))
    return [plain] if plain == grouped else [plain, grouped]


def find_lockouts(
    after: Sequence[Rule],
    aliases_after: Mapping[str, Alias],
    path: ManagementPath,
    *,
    before: Sequence[Rule] = (),
    aliases_before: Mapping[str, Alias] | None = None,
    interfaces: Collection[str] | None = None,
) -> list[Lockout]:
    """Every way the rule set ``after`` cuts ``path`` off; empty when it is safe.

    ``before`` (the rules as they are) lets a removed pass rule be noticed. ``interfaces``
    restricts the check to the interfaces the controller's packets may arrive on; None
    means unknown, so every interface counts.
    """
    if interfaces is None:
        named = {i for rule in (*after, *before) for i in rule.interfaces}
        candidates = [*sorted(named), OTHER_INTERFACES]
    else:
        candidates = sorted(set(interfaces))
    found: dict[tuple[str, str], Lockout] = {}
    orders_after, orders_before = orderings(after), orderings(before)
    for interface in candidates:
        for k in range(max(len(orders_after), len(orders_before))):
            order_after = orders_after[min(k, len(orders_after) - 1)]
            now = evaluate(order_after, aliases_after, path, interface)
            if now is not None and not now.passed:
                key = (interface, now.rule.key)
                found.setdefault(key, Lockout(interface, now.rule, now.unsure))
                continue
            if now is None and before:
                order_before = orders_before[min(k, len(orders_before) - 1)]
                was = evaluate(order_before, aliases_before or aliases_after, path, interface)
                if was is not None and was.passed:
                    found.setdefault((interface, ""), Lockout(interface, None, removed=(was.rule,)))
    return list(found.values())
