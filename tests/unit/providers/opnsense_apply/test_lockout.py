"""The anti-lockout evaluation, as a pure function: pf's order, aliases, and doubt."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from controller.providers.opnsense.lockout import (
    OTHER_INTERFACES,
    Alias,
    ManagementPath,
    Rule,
    find_lockouts,
)

PATH = ManagementPath(ipaddress.ip_address("10.0.0.5"), ipaddress.ip_address("10.0.0.1"), 443)


def rule(key: str, sequence: int = 100, action: str = "pass", **fields: Any) -> Rule:
    base: dict[str, Any] = {
        "action": action,
        "quick": True,
        "interface": ["lan"],
        "direction": "in",
        "ipprotocol": "inet",
        "protocol": "TCP",
        "source_net": "any",
        "source_not": False,
        "destination_net": "any",
        "destination_not": False,
        "enabled": True,
        "sequence": str(sequence),
    }
    interfacenot = bool(fields.pop("interfacenot", False))
    statetype = str(fields.pop("statetype", ""))
    base.update(fields)
    return Rule(key, base, f"rule {key}", changed=True, interfacenot=interfacenot,
                statetype=statetype)  # fmt: skip


def block(key: str = "b", sequence: int = 100, **fields: Any) -> Rule:
    return rule(key, sequence, "block", **fields)


def blocked(*rules: Rule, aliases: dict[str, Alias] | None = None, **kw: Any) -> list[str]:
    """The keys of the rules that lock the controller out, "" for a removed pass."""
    found = find_lockouts(list(rules), aliases or {}, PATH, **kw)
    return sorted({f.rule.key if f.rule else "" for f in found})


def test_a_quick_block_of_everything_locks_out() -> None:
    assert blocked(block()) == ["b"]


def test_reject_counts_as_block() -> None:
    assert blocked(rule("r", action="reject")) == ["r"]


def test_an_earlier_pass_protects_and_a_later_one_does_not() -> None:
    assert blocked(rule("p", 10), block(sequence=20)) == []
    assert blocked(rule("p", 30), block(sequence=20)) == ["b"]


def test_at_equal_sequence_the_block_is_assumed_first() -> None:
    assert blocked(rule("p", 20), block(sequence=20)) == ["b"]


@pytest.mark.parametrize(
    "fields",
    [
        {"enabled": False},
        {"direction": "out"},
        {"protocol": "UDP"},
        {"protocol": "ICMP"},
        {"ipprotocol": "inet6"},
        {"source_net": "192.168.0.0/16"},
        {"source_net": "10.0.0.5", "source_not": True},
        {"destination_net": "10.0.0.2"},
        {"destination_port": "22"},
        {"destination_port": "8000-8080"},
        {"destination_port": "ssh"},
        {"source_net": "2001:db8::/32", "ipprotocol": "inet6"},
    ],
)
def test_blocks_that_miss_the_path_are_fine(fields: dict[str, Any]) -> None:
    assert blocked(block(**fields)) == []


@pytest.mark.parametrize(
    "fields",
    [
        {"source_net": "10.0.0.0/24"},
        {"source_net": "10.0.0.5"},
        {"destination_net": "(self)"},
        {"destination_net": "10.0.0.1/32", "destination_port": "443"},
        {"destination_port": "400-500"},
        {"destination_port": "https"},
        {"destination_port": "22,443"},
        {"protocol": "TCP/UDP", "ipprotocol": "inet46"},
        {"protocol": "any", "direction": "any"},
        {"destination_net": "10.9.9.9", "destination_not": True},
    ],
)
def test_blocks_that_hit_the_path_lock_out(fields: dict[str, Any]) -> None:
    assert blocked(block(**fields)) == ["b"]


@pytest.mark.parametrize(
    "fields",
    [
        {"source_net": "lan"},  # an interface network: its addresses are unknown here
        {"destination_net": "wanip"},
        {"source_net": "somewhere_alias"},  # an alias nobody knows
        {"source_port": "1024-65535"},  # the controller's source port is ephemeral
        {"destination_port": "mystery_ports"},
    ],
)
def test_a_block_that_may_hit_the_path_is_refused_and_says_why(fields: dict[str, Any]) -> None:
    found = find_lockouts([block(**fields)], {}, PATH)
    assert [f.rule.key for f in found if f.rule] == ["b"]
    assert "may block" in found[0].describe(PATH)


def test_aliases_are_resolved_with_nesting_ranges_and_ports() -> None:
    aliases = {
        "mgmt": Alias("mgmt", "host", ("192.0.2.1", "inner")),
        "inner": Alias("inner", "network", ("10.0.0.0/29",)),
        "range": Alias("range", "host", ("10.0.0.2-10.0.0.9",)),
        "other": Alias("other", "host", ("10.0.0.6-10.0.0.9", "192.0.2.0/24")),
        "web": Alias("web", "port", ("80", "400:500")),
        "ssh_only": Alias("ssh_only", "port", ("22",)),
    }
    assert blocked(block(source_net="mgmt"), aliases=aliases) == ["b"]
    assert blocked(block(source_net="range"), aliases=aliases) == ["b"]
    assert blocked(block(source_net="other"), aliases=aliases) == []
    assert blocked(block(destination_port="web"), aliases=aliases) == ["b"]
    assert blocked(block(destination_port="ssh_only"), aliases=aliases) == []


def test_aliases_whose_addresses_vary_are_doubted() -> None:
    aliases = {
        "geo": Alias("geo", "geoip", ("PT",)),
        "names": Alias("names", "host", ("ctl.example.net",)),
        "off": Alias("off", "host", ("192.0.2.1",), enabled=False),
        "loop": Alias("loop", "host", ("loop",)),
        "carve": Alias("carve", "network", ("10.0.0.0/24", "!10.0.0.5")),
    }
    for name in aliases:
        assert blocked(block(source_net=name), aliases=aliases) == ["b"], name
    # A pass through such an alias protects nothing.
    assert blocked(rule("p", 10, source_net="names"), block(sequence=20), aliases=aliases) == ["b"]


def test_a_pass_rule_must_surely_match_to_protect() -> None:
    assert blocked(rule("p", 10, gateway="WAN_GW"), block(sequence=20)) == ["b"]
    assert blocked(rule("p", 10, statetype="none"), block(sequence=20)) == ["b"]
    assert blocked(rule("p", 10, source_net="lan"), block(sequence=20)) == ["b"]
    assert blocked(rule("p", 10, enabled=False), block(sequence=20)) == ["b"]
    assert blocked(rule("p", 10, destination_port="443"), block(sequence=20)) == []


def test_non_quick_rules_are_last_match_wins() -> None:
    assert blocked(block(quick=False, sequence=10)) == ["b"]
    # A later matching pass overrides a non-quick block...
    assert blocked(block(quick=False, sequence=10), rule("p", 20, quick=False)) == []
    # ...an earlier non-quick pass does not.
    assert blocked(rule("p", 10, quick=False), block(quick=False, sequence=20)) == ["b"]


def test_interfaces_are_evaluated_one_by_one() -> None:
    # A pass on lan does not help a block on wan: the controller may come in on wan.
    found = find_lockouts([rule("p", 10), block(interface=["wan"], sequence=20)], {}, PATH)
    assert [(f.interface, f.rule.key if f.rule else "") for f in found] == [("wan", "b")]
    # Unless the controller is known to come in on lan only.
    assert blocked(rule("p", 10), block(interface=["wan"], sequence=20), interfaces=["lan"]) == []


def test_floating_and_inverted_blocks_reach_every_other_interface() -> None:
    # On lan as well: 25.7+ may evaluate the floating block before the lan pass.
    found = find_lockouts([rule("p", 10), block(interface=[], sequence=20)], {}, PATH)
    assert {f.interface for f in found} == {"lan", OTHER_INTERFACES}
    # A floating pass first protects every interface.
    assert blocked(rule("p", 10, interface=[]), block(interface=[], sequence=20)) == []
    found = find_lockouts([block(interface=["wan"], interfacenot=True)], {}, PATH)
    assert {f.interface for f in found} == {OTHER_INTERFACES}
    assert blocked(block(interface=["wan"], interfacenot=True), interfaces=["lan"]) == ["b"]
    assert blocked(block(interface=["lan"], interfacenot=True), interfaces=["lan"]) == []


def test_a_floating_block_may_go_before_a_lower_sequenced_interface_pass() -> None:
    # 25.7+ evaluates floating rules first whatever their sequence: doubt wins.
    assert blocked(rule("p", 10), block(interface=["lan", "wan"], sequence=20),
                   interfaces=["lan"]) == ["b"]  # fmt: skip
    assert blocked(rule("p", 10, interface=[]), block(interface=["lan", "wan"], sequence=20),
                   interfaces=["lan"]) == []  # fmt: skip


def test_removing_the_pass_rule_the_path_needed_is_a_lockout() -> None:
    before = [rule("p", 10)]
    found = find_lockouts([], {}, PATH, before=before, interfaces=["lan"])
    assert [f.rule for f in found] == [None]
    assert "rule p" in found[0].describe(PATH)
    # A path no visible rule ever decided stays with the rules FazAI cannot see.
    assert find_lockouts([], {}, PATH, before=[], interfaces=["lan"]) == []


def test_ipv6_paths() -> None:
    path = ManagementPath(
        ipaddress.ip_address("2001:db8::5"), ipaddress.ip_address("2001:db8::1"), 443
    )
    v6 = block(ipprotocol="inet6", source_net="2001:db8::/64")
    assert [f.rule.key for f in find_lockouts([v6], {}, path) if f.rule] == ["b"]
    assert find_lockouts([block(source_net="10.0.0.0/8")], {}, path) == []
    assert "[2001:db8::1]:443/tcp" in str(path)


def test_a_comma_list_of_interfaces_is_each_of_them() -> None:
    # OPNsense's own spelling of [lan, opt1]; the essence splits it, and a Rule given
    # the raw string or a list item carrying commas reads it the same way.
    from controller.providers.opnsense.essence import desired_rule, interfaces

    assert interfaces("lan,opt1") == ["lan", "opt1"] == interfaces(["opt1,lan"])
    spec = {"action": "block", "quick": True, "interface": "lan,opt1", "direction": "in",
            "ipprotocol": "inet", "protocol": "any", "log": False, "enabled": True}  # fmt: skip
    assert desired_rule(spec)["interface"] == ["lan", "opt1"]
    for value in ("lan,opt1", ["lan,opt1"], desired_rule(spec)["interface"]):
        assert blocked(block(interface=value), interfaces=["lan"]) == ["b"], value
