"""Every validation message the emulator implements, checked against upstream's text."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from controller.testing.opnsense import EmulatorServer

NAME_PATTERN = (
    "The name must start with a letter or single underscore, be less than 32 characters "
    "and only consist of alphanumeric characters or underscores."
)
RESERVED = 'The name cannot be the internally reserved keyword "%s".'
SERVICE = "Reserved protocol or service names may not be used"
PORT_26 = "Please specify a valid portnumber, name, alias or range."
PORT_OLD = "Please specify a valid portnumber, name, alias or range"
DEST_FAMILY = "Destination address type should match selected TCP/IP protocol version."
SINGLE = "only allowed for single targets to avoid mis-interpretations"
GATEWAY = "Specify a valid gateway from the list matching the networks ip protocol."

CASES: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    # (version, endpoint, body, expected validations)
    ("26.1", "alias", {"type": "host"}, {"alias.name": "A value is required."}),
    ("26.1", "alias", {"name": "1abc", "type": "host"}, {"alias.name": NAME_PATTERN}),
    ("26.1", "alias", {"name": "a" * 32, "type": "host"}, {"alias.name": NAME_PATTERN}),
    ("26.1", "alias", {"name": "__x", "type": "host"}, {"alias.name": NAME_PATTERN}),
    ("26.1", "alias", {"name": "table", "type": "host"}, {"alias.name": RESERVED}),
    (
        "26.1",
        "alias",
        {"name": "icmp-type", "type": "host"},
        {"alias.name": [NAME_PATTERN, RESERVED]},
    ),
    ("26.1", "alias", {"name": "ssh", "type": "host"}, {"alias.name": SERVICE}),
    ("26.1", "alias", {"name": "tcp", "type": "host"}, {"alias.name": SERVICE}),
    (
        "26.1",
        "alias",
        {"name": "bogons", "type": "host"},
        {"alias.name": "An alias with this name already exists."},
    ),
    ("26.1", "alias", {"name": "x"}, {"alias.type": "Option [] not in list."}),
    ("25.7", "alias", {"name": "x"}, {"alias.type": "Option not in list."}),
    (
        "26.1",
        "alias",
        {"name": "x", "type": "host", "content": "10.0.0.1\nbad host!"},
        {"alias.content": 'Entry "bad host!" is not a valid hostname, IP address or range.'},
    ),
    (
        "26.1",
        "alias",
        {"name": "x", "type": "host", "content": "10.0.0.1-foo"},
        {"alias.content": 'Entry "10.0.0.1-foo" is not a valid hostname, IP address or range.'},
    ),
    (
        "26.1",
        "alias",
        {"name": "x", "type": "network", "content": "10.0.0.0/33"},
        {"alias.content": 'Entry "10.0.0.0/33" is not a network.'},
    ),
    (
        "26.1",
        "alias",
        {"name": "x", "type": "port", "content": "80\n70000\nhttp\n1:2"},
        {"alias.content": 'Entry "70000" is not a valid port number.'},
    ),
    (
        "26.1",
        "alias",
        {"name": "x", "type": "networkgroup", "content": "nope"},
        {"alias.content": 'Entry "nope" is not a valid alias.'},
    ),
    (
        "26.1",
        "alias",
        {"name": "x", "type": "mac", "content": "zz:00"},
        {"alias.content": 'Entry "zz:00" is not a valid (partial) MAC address.'},
    ),
    (
        "26.1",
        "alias",
        {"name": "x", "type": "asn", "content": "0"},
        {"alias.content": 'Entry "0" is not a valid ASN.'},
    ),
    (
        "26.1",
        "alias",
        {"name": "x", "type": "dynipv6host", "content": "::1000"},
        {"alias.interface": "IPv6 Dynamic Host require an interface to track."},
    ),
    (
        "26.1",
        "alias",
        {"name": "x", "type": "host", "description": "d" * 256},
        {"alias.description": "Description should be a string between 1 and 255 characters."},
    ),
    (
        "26.1",
        "alias",
        {"name": "x", "type": "host", "enabled": "yes"},
        {"alias.enabled": "Value should be a boolean (0,1)."},
    ),
    (
        "26.1",
        "alias",
        {"name": "x", "type": "host", "updatefreq": "daily"},
        {"alias.updatefreq": "Days and hours should be numeric values or left empty."},
    ),
    (
        "26.1",
        "alias",
        {"name": "x", "type": "host", "categories": "c1"},
        {"alias.categories": "Related category not found."},
    ),
    ("26.1", "rule", {"action": "allow"}, {"rule.action": "Option [] not in list."}),
    ("26.1", "rule", {"direction": "sideways"}, {"rule.direction": "Option [] not in list."}),
    ("25.7", "rule", {"direction": "any"}, {"rule.direction": "Option not in list."}),
    ("24.7", "rule", {"ipprotocol": "inet46"}, {"rule.ipprotocol": "Option not in list."}),
    ("26.1", "rule", {"protocol": "nope"}, {"rule.protocol": "Option [] not in list."}),
    ("24.7", "rule", {"protocol": "TCP/UDP"}, {"rule.protocol": "Option not in list."}),
    ("26.1", "rule", {"interface": "lan,dmz"}, {"rule.interface": "Option [dmz] not in list."}),
    (
        "24.7",
        "rule",
        {"sequence": "100000"},
        {"rule.sequence": "provide a valid sequence for sorting"},
    ),
    (
        "25.7",
        "rule",
        {"sequence": "0"},
        {"rule.sequence": "Sequence shall be between 1 and 999999."},
    ),
    (
        "26.1",
        "rule",
        {"sequence": "1000000"},
        {"rule.sequence": "Sequence shall be between 1 and 999999."},
    ),
    (
        "26.1",
        "rule",
        {"destination_port": "443"},
        {"rule.destination_port": "Destination ports are only valid for tcp or udp type rules."},
    ),
    (
        "26.1",
        "rule",
        {"protocol": "icmp", "source_port": "80"},
        {"rule.source_port": "Source ports are only valid for tcp or udp type rules."},
    ),
    (
        "26.1",
        "rule",
        {"protocol": "tcp", "destination_port": "99999"},
        {"rule.destination_port": PORT_26},
    ),
    (
        "25.7",
        "rule",
        {"protocol": "tcp", "destination_port": "80,443"},
        {"rule.destination_port": PORT_OLD},
    ),
    (
        "26.1",
        "rule",
        {"source_net": "2001:db8::/32"},
        {"rule.source_net": "Source address type should match selected TCP/IP protocol version."},
    ),
    (
        "26.1",
        "rule",
        {"ipprotocol": "inet6", "destination_net": "10.0.0.1"},
        {"rule.destination_net": DEST_FAMILY},
    ),
    (
        "26.1",
        "rule",
        {"source_net": "nosuchalias"},
        {"rule.source_net": "nosuchalias is not a valid source IP address or alias."},
    ),
    (
        "26.1",
        "rule",
        {"destination_net": "any,lan"},
        {"rule.destination_net": "Any can not be combined with other aliases"},
    ),
    (
        "26.1",
        "rule",
        {"source_net": "lan,wan", "source_not": "1"},
        {"rule.source_not": f"Inverting sources is {SINGLE}"},
    ),
    (
        "26.1",
        "rule",
        {"interface": "lan,wan", "interfacenot": "1"},
        {"rule.interfacenot": f"Inverting interfaces is {SINGLE}"},
    ),
    (
        "26.1",
        "rule",
        {"gateway": "GW1"},
        {"rule.gateway": GATEWAY},
    ),
    (
        "26.1",
        "host",
        {"hostname": "www"},
        {"host.domain": "A value is required.", "host.server": "The field IP address is required."},
    ),
    (
        "26.1",
        "host",
        {"hostname": "www", "domain": "bad_domain!", "server": "10.0.0.1"},
        {"host.domain": "A valid domain must be specified."},
    ),
    (
        "26.1",
        "host",
        {"hostname": "w w", "domain": "example.com", "server": "10.0.0.1"},
        {"host.hostname": "[w w] is not a valid IP address or hostname."},
    ),
    (
        "26.7",
        "host",
        {"hostname": "10.0.0.1", "domain": "example.com", "server": "10.0.0.1"},
        {"host.hostname": "A valid hostname must be specified."},
    ),
    (
        "26.1",
        "host",
        {"domain": "example.com", "rr": "MX"},
        {
            "host.mxprio": "The field MX Priority is required.",
            "host.mx": "The field MX Host is required.",
        },
    ),
    (
        "26.1",
        "host",
        {"domain": "example.com", "rr": "TXT"},
        {"host.txtdata": "The field TXT Data is required."},
    ),
    (
        "25.7",
        "host",
        {"domain": "example.com", "rr": "TXT"},
        {"host.rr": "Option not in list.", "host.server": None},
    ),
    (
        "26.7",
        "host",
        {"domain": "example.com", "server": "10.0.0.0/24"},
        {"host.server": "Please specify a valid network segment or IP address."},
    ),
]

ENDPOINTS = {
    "alias": "/api/firewall/alias/addItem",
    "rule": "/api/firewall/filter/addRule",
    "host": "/api/unbound/settings/addHostOverride",
}


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, EmulatorServer]]:
    """One server per release for the whole table; each case starts from an empty box."""
    started: dict[str, EmulatorServer] = {}
    try:
        yield started
    finally:
        for server in started.values():
            server.stop()


def server_for(servers: dict[str, EmulatorServer], version: str) -> EmulatorServer:
    if version not in servers:
        servers[version] = EmulatorServer(version=version).start()
    fw = servers[version]
    for kind in ("alias", "rule", "host"):
        fw.state.items[kind].clear()
    return fw


@pytest.mark.parametrize(("version", "kind", "body", "expected"), CASES)
def test_validation_message(
    servers: dict[str, EmulatorServer],
    version: str,
    kind: str,
    body: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    fw = server_for(servers, version)
    answer = httpx.post(f"{fw.url}{ENDPOINTS[kind]}", json={kind: body}, auth=fw.auth).json()
    assert answer["result"] == "failed", answer
    got = answer["validations"]
    for key, text in expected.items():
        if text is None:
            assert key not in got, got
        else:
            assert got.get(key) == text, got
    assert fw.state.list(kind) == {}


@pytest.mark.parametrize(
    ("version", "kind", "body"),
    [
        (
            "26.1",
            "alias",
            {"name": "_ok", "type": "host", "content": "10.0.0.1\nexample.com\n!10.0.0.2"},
        ),
        (
            "26.1",
            "alias",
            {"name": "nets", "type": "network", "content": "10.0.0.0/8\n10.0.0.1-10.0.0.9"},
        ),
        ("26.1", "alias", {"name": "ports", "type": "port", "content": "80\n1000:2000\nhttp"}),
        ("26.1", "alias", {"name": "urls", "type": "url", "content": "https://x"}),
        (
            "26.1",
            "rule",
            {"protocol": "TCP/UDP", "destination_port": "1000-2000", "source_net": "lan,wanip"},
        ),
        (
            "26.1",
            "rule",
            {"direction": "any", "ipprotocol": "inet6", "destination_net": "2001:db8::/32"},
        ),
        ("24.7", "rule", {"protocol": "tcp", "destination_port": "https", "sequence": "99999"}),
        ("26.1", "host", {"domain": "example.com", "server": "10.0.0.0/24"}),  # netmask ok
        ("26.1", "host", {"hostname": "*", "domain": "example.com", "server": "10.0.0.1"}),
        (
            "26.1",
            "host",
            {"domain": "example.com", "rr": "MX", "mx": "mail.example.com", "mxprio": "10"},
        ),
    ],
)
def test_valid_input_is_saved(
    servers: dict[str, EmulatorServer], version: str, kind: str, body: dict[str, Any]
) -> None:
    fw = server_for(servers, version)
    answer = httpx.post(f"{fw.url}{ENDPOINTS[kind]}", json={kind: body}, auth=fw.auth).json()
    assert answer["result"] == "saved", answer


def test_protocol_and_port_names_are_normalised() -> None:
    with EmulatorServer() as fw:
        body = {"rule": {"protocol": "udp", "destination_port": "HTTPS"}}
        uuid = httpx.post(f"{fw.url}{ENDPOINTS['rule']}", json=body, auth=fw.auth).json()["uuid"]
        rule = fw.state.get("rule", uuid)
        assert rule is not None and (rule["protocol"], rule["destination_port"]) == ("UDP", "https")


def test_unique_alias_names() -> None:
    with EmulatorServer() as fw:
        body = {"alias": {"name": "dup", "type": "host", "content": "10.0.0.1"}}
        first = httpx.post(f"{fw.url}{ENDPOINTS['alias']}", json=body, auth=fw.auth).json()
        second = httpx.post(f"{fw.url}{ENDPOINTS['alias']}", json=body, auth=fw.auth).json()
        assert first["result"] == "saved"
        assert second == {
            "result": "failed",
            "validations": {"alias.name": "An alias with this name already exists."},
        }
