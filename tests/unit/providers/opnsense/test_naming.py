"""OPNsense's naming and value rules, one table row per accepted or refused value.

The rows follow the firewall's own validators (AliasNameField, AliasContentField,
Util::isIpAddress/isSubnet/isDomain/isPort), which the emulator imitates: a value
accepted here must be one the firewall takes, and a refused one must be refused there.
"""

from __future__ import annotations

import pytest

from controller.providers.opnsense import naming

# -- alias names ---------------------------------------------------------------

GOOD_NAMES = ["a", "A", "_a", "_1", "web_servers", "a" * 31, "Web01", "x_", "a__b"]


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_alias_name_accepted(name: str) -> None:
    assert naming.alias_name_problems(name) == []
    assert naming.is_alias_name(name)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "it is empty"),
        ("web-servers", "'-' not allowed (only letters, digits and '_')"),
        ("web.servers", "'.' not allowed"),
        ("web servers", "' ' not allowed"),
        ("café", "'é' not allowed"),
        ("a" * 32, "32 characters, at most 31 allowed"),
        ("__hidden", "a leading '__' or a lone '_' is not allowed"),
        ("_", "a leading '__' or a lone '_' is not allowed"),
        ("1abc", "it must start with a letter or '_'"),
        ("web\n", "'\\n' not allowed"),
    ],
)
def test_alias_name_pattern_refused_with_the_reason(name: str, reason: str) -> None:
    problems = naming.alias_name_problems(name)
    assert len(problems) == 1
    assert problems[0].startswith(f"{name!r} is not a valid alias name: ")
    assert reason in problems[0]
    assert not naming.is_alias_name(name)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("table", "'table' is a reserved pf keyword"),
        ("any", "'any' is a reserved pf keyword"),
        ("pass", "'pass' is a reserved pf keyword"),
        ("bogons", "'bogons' is a built-in alias of OPNsense"),
        ("bogonsv6", "'bogonsv6' is a built-in alias of OPNsense"),
        ("sshlockout", "'sshlockout' is a built-in alias of OPNsense"),
        ("virusprot", "'virusprot' is a built-in alias of OPNsense"),
        ("http", "'http' is a service or protocol name, which OPNsense reserves"),
        ("https", "'https' is a service or protocol name, which OPNsense reserves"),
        ("ssh", "'ssh' is a service or protocol name, which OPNsense reserves"),
        ("tcp", "'tcp' is a service or protocol name, which OPNsense reserves"),
        ("ICMP", "'ICMP' is a service or protocol name, which OPNsense reserves"),
    ],
)
def test_alias_name_reserved(name: str, message: str) -> None:
    # Shaped like a name, so the pattern passes: the one problem is the reservation.
    assert naming.is_alias_name(name)
    assert naming.alias_name_problems(name) == [message]


def test_reserved_words_are_case_sensitive_like_the_firewall() -> None:
    assert naming.alias_name_problems("Table") == []
    assert naming.alias_name_problems("Bogons") == []


# -- alias content ---------------------------------------------------------------

ACCEPTED = [
    ("host", "10.0.10.11"),
    ("host", "2001:db8::1"),
    ("host", "10.0.0.1-10.0.0.9"),
    ("host", "!10.0.0.5"),
    ("host", "www.example.net"),
    ("host", "www.example.net."),
    ("host", "localhost"),
    ("host", "web_servers"),  # a nested alias
    ("network", "10.0.0.0/8"),
    ("network", "2001:db8::/32"),
    ("network", "10.0.0.1"),
    ("network", "10.0.0.1-10.0.0.9"),
    ("network", "!10.1.5.0/24"),
    ("network", "!10.1.5.1"),
    ("network", "office_nets"),
    ("port", "443"),
    ("port", "1"),
    ("port", "65535"),
    ("port", "8000:8080"),
    ("port", "https"),
    ("port", "http:https"),
    ("port", "web_ports"),
    ("url", "https://example.net/list.txt"),
    ("urltable", "http://example.net/drop.txt"),
    ("geoip", "PT"),
    ("geoip", "DE"),
    ("networkgroup", "office_nets"),
    ("mac", "00:1a:2b"),
    ("mac", "00:1A:2B:3C:4D:5E"),
    ("asn", "64512"),
    ("asn", "4294967296"),
    ("dynipv6host", "::1000"),
    ("dynipv6host", ":1::2"),
    ("authgroup", "anything"),  # not checked by the firewall either
    ("external", "anything"),
]


@pytest.mark.parametrize(("alias_type", "entry"), ACCEPTED)
def test_alias_content_accepted(alias_type: str, entry: str) -> None:
    assert naming.alias_entry_problem(alias_type, entry) is None


REFUSED = [
    ("host", "10.0.10.0/24", "not an IP address, a range a-b, a host name or an alias; "
     "networks belong in a network alias"),
    ("host", "10.0.0.300", "not an IP address, a range a-b, a host name or an alias"),
    ("host", "not a host", "not an IP address"),
    ("host", "10.0.0.1-nope", "not an IP address"),
    ("host", "!www.example.net", "not an IP address"),
    ("host", "-bad.example.net", "not an IP address"),
    ("host", "fe80::1%em0", "not an IP address"),
    ("network", "partner.example.net", "not a network (CIDR), an address, a range a-b or an alias"),
    ("network", "10.2.0.0/33", "not a network (CIDR)"),
    ("network", "10.0.0.0/255.0.0.0", "not a network (CIDR)"),
    ("network", "!office_nets", "not a network (CIDR)"),
    ("network", "!10.0.0.1-10.0.0.9", "not a network (CIDR)"),
    ("port", "99999", "not a port (1-65535), a range like 8000:8080, or an alias"),
    ("port", "0", "not a port (1-65535)"),
    ("port", "80-90", "port ranges in an alias are written with ':', like 80:90"),
    ("port", "1:2:3", "not a port (1-65535)"),
    ("port", "80:99999", "not a port (1-65535)"),
    ("port", "web-ports", "not a port (1-65535)"),
    ("url", "ftp://example.net/list", "not an http(s) URL"),
    ("url", "https://", "not an http(s) URL"),
    ("geoip", "pt", "country codes are upper case, like 'PT'"),
    ("geoip", "DEU", "not a two-letter country code like PT"),
    ("geoip", "P1", "not a two-letter country code like PT"),
    ("networkgroup", "10.0.0.0/8", "not an alias name"),
    ("mac", "00", "not a MAC address or a prefix of one"),
    ("mac", "00-1a-2b", "not a MAC address or a prefix of one"),
    ("mac", "00:1a:2b:3c:4d:5e:6f", "not a MAC address"),
    ("mac", "zz:1a", "not a MAC address"),
    ("asn", "0", "not an AS number (1 to 4294967296)"),
    ("asn", "4294967297", "not an AS number"),
    ("asn", "AS64512", "not an AS number"),
    ("dynipv6host", "1000", "not the host part of an IPv6 address, like ::1000"),
    # "$" would match before a final newline; the entry would split in two on the firewall.
    ("host", "www.example.net\n", "not an IP address"),
    ("host", "web_servers\n", "not an IP address"),
    ("mac", "00:1a\n", "not a MAC address"),
]  # fmt: skip


@pytest.mark.parametrize(("alias_type", "entry", "message"), REFUSED)
def test_alias_content_refused(alias_type: str, entry: str, message: str) -> None:
    problem = naming.alias_entry_problem(alias_type, entry)
    assert problem is not None
    assert problem.startswith(repr(entry))
    assert message in problem


# -- addresses, ports, nets ------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "version"),
    [("10.0.0.1", 4), ("10.0.0.0/8", 4), ("10.0.0.1/24", 4), ("::1", 6), ("2001:db8::/32", 6)],
)
def test_address_accepted(value: str, version: int) -> None:
    network = naming.address(value)
    assert network is not None
    assert network.version == version


@pytest.mark.parametrize(
    "value",
    ["", "10.0.0.300", "10.0.0.0/33", "10.0.0.0/x", "10.0.0.0/255.0.0.0", " 10.0.0.1",
     "fe80::1%em0", "lan", "10", "10.0.0.1-10.0.0.2"],
)  # fmt: skip
def test_address_refused(value: str) -> None:
    assert naming.address(value) is None


def test_is_ip_is_a_single_address() -> None:
    assert naming.is_ip("10.0.0.1")
    assert naming.is_ip("2001:db8::1")
    assert not naming.is_ip("10.0.0.0/8")
    assert not naming.is_ip("www.example.net")


@pytest.mark.parametrize(
    ("value", "ok"),
    [("www.example.net", True), ("localhost", True), ("a-b.example", True),
     ("10.0.0.300", False), ("1.2.3.4", False), ("web_servers", False), ("-a.net", False),
     ("a..b", False), ("a" * 64 + ".net", False)],
)  # fmt: skip
def test_is_domain(value: str, ok: bool) -> None:
    assert naming.is_domain(value) is ok


@pytest.mark.parametrize(
    ("value", "ok"), [("1", True), ("65535", True), ("0", False), ("65536", False), ("+1", False),
                      ("", False), ("http", False)],
)  # fmt: skip
def test_is_port(value: str, ok: bool) -> None:
    assert naming.is_port(value) is ok


@pytest.mark.parametrize(
    ("value", "separator", "ok"),
    [("80-90", "-", True), ("80-80", "-", True), ("90-80", "-", False), ("80:90", "-", False),
     ("80:90", ":", True), ("0-90", "-", False), ("80-", "-", False), ("80", "-", False)],
)  # fmt: skip
def test_port_range(value: str, separator: str, ok: bool) -> None:
    assert naming.port_range(value, separator) is ok


@pytest.mark.parametrize(
    ("value", "kind"),
    [("any", "any"), ("lan", "interface"), ("lanip", "interface"), ("wan", "interface"),
     ("opt12", "interface"), ("opt12ip", "interface"), ("(self)", "interface"),
     ("10.0.0.1", "address"), ("10.0.0.0/8", "address"), ("2001:db8::/32", "address"),
     ("web_servers", "alias"), ("10.0.0.300", "alias"), ("ANY", "alias"), ("lan2", "alias"),
     ("lan\n", "alias")],
)  # fmt: skip
def test_classify_net(value: str, kind: str) -> None:
    assert naming.classify_net(value) == kind


@pytest.mark.parametrize(("ipprotocol", "family"), [("inet", 4), ("inet6", 6), ("inet46", None)])
def test_family_of(ipprotocol: str, family: int | None) -> None:
    assert naming.family_of(ipprotocol) == family


def test_services_and_protocols() -> None:
    assert naming.is_service("https")
    assert naming.is_service("ssh")
    assert not naming.is_service("web_servers")
    assert "TCP" in naming.PORT_PROTOCOLS
    assert "ICMP" not in naming.PORT_PROTOCOLS


def test_rule_port_names_are_the_firewalls_short_list() -> None:
    # PortField::$wellknownservices, not /etc/services: a rule may say "rfb" (VNC) though
    # Debian's services file lacks it, and may not say "amqp", which that file has.
    assert naming.is_rule_port_name("https")
    assert naming.is_rule_port_name("rfb")
    assert not naming.is_service("rfb")
    assert naming.is_service("amqp")
    assert not naming.is_rule_port_name("amqp")
    assert len(naming.RULE_PORT_NAMES) == 46


def test_an_address_is_parsed_once_however_often_it_is_asked() -> None:
    """Validate, the plan's compare, the lockout check (before and after) and verify ask
    for the same few dozen nets thousands of times in a 200-rule apply."""
    naming.address.cache_clear()
    first = naming.address("10.20.0.0/16")
    assert naming.address("10.20.0.0/16") is first
    assert naming.classify_net("10.20.0.0/16") == "address"
    assert naming.address.cache_info().misses == 1
    # What the firewall refuses stays refused when asked again.
    assert naming.address("10.0.0.0/255.0.0.0") is None
    assert naming.address("10.0.0.0/255.0.0.0") is None
