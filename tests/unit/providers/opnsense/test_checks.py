"""The OPNsense kinds' own checks, run the way ``fazai validate`` runs them.

Each row is one document beside a valid firewall Node; the rows list what the loader
reports for it (field path, a piece of the message, severity), or nothing when the
document is fine. Messages are checked in full in the bad-input corpus; here the point
is the decision: accepted or refused, error or warning, and at which field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.diagnostics import Diagnostic, Severity
from controller.errors import InvalidInputError
from controller.model import loader
from controller.source.open import open_source

NODE = {
    "apiVersion": "fazai.dev/v1alpha1",
    "kind": "Node",
    "metadata": {"name": "fw", "labels": {"role": "firewall"}},
    "spec": {
        "platform": "opnsense",
        "url": "https://fw.example.net",
        "apiKeyRef": {"env": "FW_KEY"},
        "apiSecretRef": {"file": "~/.fazai/fw.secret"},
    },
}
E, W = Severity.ERROR, Severity.WARNING


def doc(kind: str, doc_name: str = "x", /, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "fazai.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": doc_name},
        "spec": {"target": {"node": "fw"}, **spec},
    }


def node(**changes: Any) -> dict[str, Any]:
    spec = {k: v for k, v in {**NODE["spec"], **changes}.items() if v is not None}
    return {**NODE, "spec": spec}


def report(tmp_path: Path, *docs: dict[str, Any]) -> list[Diagnostic]:
    (tmp_path / "docs.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    try:
        state = loader.load(open_source(str(tmp_path)))
    except InvalidInputError as exc:
        return list(exc.diagnostics)
    return list(state.warnings)


def summary(found: list[Diagnostic]) -> list[tuple[str, str, Severity]]:
    return [(d.path, d.message, d.severity) for d in found]


def matches(found: list[Diagnostic], expected: list[tuple[str, str, Severity]]) -> bool:
    if len(found) != len(expected):
        return False
    return all(
        d.path == path and part in d.message and d.severity is severity
        for d, (path, part, severity) in zip(found, expected, strict=True)
    )


# -- Node ---------------------------------------------------------------------------

NODE_CASES: list[tuple[str, dict[str, Any], list[tuple[str, str, Severity]]]] = [
    ("valid", {}, []),
    ("http url", {"url": "http://10.0.0.1"}, []),
    ("url with a path", {"url": "https://fw.example.net/opnsense"}, []),
    ("url with a port", {"url": "https://fw.example.net:8443"}, []),
    ("ipv6 url", {"url": "https://[2001:db8::1]:8443"}, []),
    ("no url", {"url": None}, [("spec", "needs 'url'", E)]),
    ("no key ref", {"apiKeyRef": None}, [("spec", "needs 'apiKeyRef'", E)]),
    ("no secret ref", {"apiSecretRef": None}, [("spec", "needs 'apiSecretRef'", E)]),
    ("no scheme", {"url": "fw.example.net"}, [("spec.url", "is not an http(s) URL", E)]),
    ("ftp", {"url": "ftp://fw.example.net"}, [("spec.url", "is not an http(s) URL", E)]),
    ("no host", {"url": "https://"}, [("spec.url", "is not an http(s) URL", E)]),
    ("space", {"url": "https://fw .net"}, [("spec.url", "contains white space", E)]),
    ("query", {"url": "https://fw.net/?a=1"}, [("spec.url", "has a query or fragment", E)]),
    ("fragment", {"url": "https://fw.net/#x"}, [("spec.url", "has a query or fragment", E)]),
    ("bad port", {"url": "https://fw.net:99999"}, [("spec.url", "is not a valid URL", E)]),
    ("credentials", {"url": "https://k:s@fw.net"}, [("spec.url", "credentials in the url", E)]),
    ("both refs", {"apiKeyRef": {"env": "K", "file": "/k"}},
     [("spec.apiKeyRef", "names both 'env' and 'file'; keep one", E)]),
    ("empty ref", {"apiSecretRef": {}}, [("spec.apiSecretRef", "is empty; give {env: NAME}", E)]),
    ("inline key", {"apiKey": "abc"}, [("spec.apiKey", "inline secrets are refused", E)]),
    ("inline secret", {"apiSecret": "abc"},
     [("spec.apiSecret", "give the secret by reference", E)]),
    ("linux field", {"address": "10.0.0.1"},
     [("spec.address", "applies to linux nodes, not opnsense ones", E)]),
    ("ssh timeout", {"commandTimeout": 5}, [("spec.commandTimeout", "applies to linux nodes", E)]),
]  # fmt: skip


@pytest.mark.parametrize(("changes", "expected"), [c[1:] for c in NODE_CASES],
                         ids=[c[0] for c in NODE_CASES])  # fmt: skip
def test_node(
    tmp_path: Path, changes: dict[str, Any], expected: list[tuple[str, str, Severity]]
) -> None:
    found = report(tmp_path, node(**changes))
    assert matches(found, expected), summary(found)


@pytest.mark.parametrize(
    "url",
    [
        "https://the-key:the-secret@fw.example.net",
        "https://the-key:the-secret@fw.example.net:99999",  # also an invalid port
        "https://the-key:the-secret@[::1",  # also unparsable
        "the-key:the-secret@fw.example.net",  # also no scheme
    ],
)
def test_credentials_in_the_url_are_never_repeated(tmp_path: Path, url: str) -> None:
    (found,) = report(tmp_path, node(url=url))
    assert found.message.startswith("credentials in the url are refused")
    assert "the-secret" not in str(found)
    assert "the-key" not in str(found)


# -- FirewallAlias ------------------------------------------------------------------

ALIAS_CASES: list[tuple[str, dict[str, Any], list[tuple[str, str, Severity]]]] = [
    ("valid host", {"name": "web", "type": "host", "content": ["10.0.0.1", "www.example.net"]},
     []),
    ("valid port ints", {"name": "p", "type": "port", "content": [443, "8000:8080"]}, []),
    ("no content", {"name": "empty_set", "type": "host"}, []),
    ("hyphen", {"name": "web-1", "type": "host"}, [("spec.name", "'-' not allowed", E)]),
    ("too long", {"name": "a" * 32, "type": "host"}, [("spec.name", "32 characters", E)]),
    ("double underscore", {"name": "__x", "type": "host"}, [("spec.name", "leading '__'", E)]),
    ("pf keyword", {"name": "table", "type": "host"}, [("spec.name", "pf keyword", E)]),
    ("service", {"name": "http", "type": "port"}, [("spec.name", "service or protocol", E)]),
    ("protocol", {"name": "tcp", "type": "port"}, [("spec.name", "service or protocol", E)]),
    ("builtin", {"name": "bogons", "type": "network"}, [("spec.name", "built-in alias", E)]),
    ("bad host", {"name": "h", "type": "host", "content": ["10.0.0.0/8"]},
     [("spec.content[0]", "networks belong in a network alias (type host)", E)]),
    ("bad port", {"name": "p", "type": "port", "content": [443, 99999]},
     [("spec.content[1]", "'99999' is not a port", E)]),
    ("dash range", {"name": "p", "type": "port", "content": ["80-90"]},
     [("spec.content[0]", "written with ':', like 80:90", E)]),
    ("lower geoip", {"name": "g", "type": "geoip", "content": ["pt"]},
     [("spec.content[0]", "upper case, like 'PT'", E)]),
    ("duplicate entry", {"name": "p", "type": "port", "content": [443, "8443", "443"]},
     [("spec.content[2]", "'443' is listed twice (also at content[0]); keep one", E)]),
    ("fqdn network", {"name": "n", "type": "network", "content": ["a.example.net"]},
     [("spec.content[0]", "is not a network (CIDR)", E)]),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "expected"), [c[1:] for c in ALIAS_CASES],
                         ids=[c[0] for c in ALIAS_CASES])  # fmt: skip
def test_alias(
    tmp_path: Path, spec: dict[str, Any], expected: list[tuple[str, str, Severity]]
) -> None:
    found = report(tmp_path, NODE, doc("FirewallAlias", **spec))
    assert matches(found, expected), summary(found)


def test_alias_name_defaults_from_metadata_name(tmp_path: Path) -> None:
    assert report(tmp_path, NODE, doc("FirewallAlias", name="webservers", type="host")) == []
    plain = doc("FirewallAlias", type="host")
    plain["metadata"]["name"] = "web-servers"
    (found,) = report(tmp_path, NODE, plain)
    assert found.path == "spec.name"
    # At metadata.name, the value that became the alias name.
    lines = (tmp_path / "docs.yaml").read_text().splitlines()
    assert (found.location.line, found.location.column) == (
        lines.index("  name: web-servers") + 1,
        3,
    )
    assert "defaults to metadata.name" in found.message
    assert found.message.endswith("set spec.name, e.g. spec.name: web_servers")


def test_alias_name_from_metadata_without_a_usable_suggestion(tmp_path: Path) -> None:
    plain = doc("FirewallAlias", type="port")
    plain["metadata"]["name"] = "ssh"
    (found,) = report(tmp_path, NODE, plain)
    assert found.message.endswith("which OPNsense reserves; set spec.name")


def test_one_alias_name_twice_on_a_node_is_reported_once(tmp_path: Path) -> None:
    first = doc("FirewallAlias", "a", name="web", type="host")
    second = doc("FirewallAlias", "b", name="web", type="host")
    second["spec"]["target"] = {"matchLabels": {"role": "firewall"}}
    (found,) = report(tmp_path, NODE, first, second)
    assert found.subject == "FirewallAlias/b"
    assert "both manage FirewallAlias 'web' on node 'fw'" in found.message


def test_one_alias_name_on_two_nodes_is_fine(tmp_path: Path) -> None:
    other = node()
    other["metadata"] = {"name": "fw2"}
    second = doc("FirewallAlias", "b", name="web", type="host")
    second["spec"]["target"] = {"node": "fw2"}
    assert report(tmp_path, NODE, other, doc("FirewallAlias", "a", name="web", type="host"),
                  second) == []  # fmt: skip


# -- FirewallRule -------------------------------------------------------------------

RULE_CASES: list[tuple[str, dict[str, Any], list[tuple[str, str, Severity]]]] = [
    ("minimal", {}, []),
    ("tcp port", {"protocol": "TCP", "destination": {"port": 443}}, []),
    ("tcp range", {"protocol": "tcp", "destination": {"port": "8000-8080"}}, []),
    ("udp service", {"protocol": "UDP", "destination": {"port": "domain"}}, []),
    ("tcp/udp", {"protocol": "TCP/UDP", "source": {"port": "1024-65535"}}, []),
    ("v4 on inet", {"source": {"net": "10.0.0.0/8"}, "destination": {"net": "10.1.1.1"}}, []),
    ("v6 on inet6", {"ipprotocol": "inet6", "source": {"net": "2001:db8::/32"}}, []),
    ("interface nets on inet46", {"ipprotocol": "inet46", "source": {"net": "lan"},
                                  "destination": {"net": "wanip"}}, []),
    ("self", {"destination": {"net": "(self)"}}, []),
    ("icmp port", {"protocol": "ICMP", "destination": {"port": 443}},
     [("spec.destination.port", "only be used with TCP, UDP or TCP/UDP, not 'ICMP'", E)]),
    ("any port", {"source": {"port": 53}},
     [("spec.source.port", "not 'any'", E)]),
    ("v6 on inet", {"source": {"net": "2001:db8::/32"}},
     [("spec.source.net", "is an IPv6 network, but ipprotocol is inet", E)]),
    ("v4 on inet6", {"ipprotocol": "inet6", "destination": {"net": "192.0.2.1"}},
     [("spec.destination.net", "is an IPv4 address, but ipprotocol is inet6", E)]),
    ("literal on inet46", {"ipprotocol": "inet46", "destination": {"net": "192.0.2.1"}},
     [("spec.destination.net", "inet46 matches both families; use inet or inet6", E)]),
    ("bad address", {"source": {"net": "10.0.0.300"}},
     [("spec.source.net", "is not any, an address, a network (CIDR)", E)]),
    ("list net", {"source": {"net": "10.0.0.1,10.0.0.2"}},
     [("spec.source.net", "one value per side", E)]),
    ("colon range", {"protocol": "TCP", "destination": {"port": "80:90"}},
     [("spec.destination.port", "written with '-', like 80-90", E)]),
    ("bad port", {"protocol": "TCP", "destination": {"port": "80-"}},
     [("spec.destination.port", "is not a port (1-65535)", E)]),
    ("unknown net alias", {"destination": {"net": "web_servers"}},
     [("spec.destination.net", "alias 'web_servers' is not in the desired state", W)]),
    ("unknown port alias", {"protocol": "TCP", "destination": {"port": "web_ports"}},
     [("spec.destination.port", "alias 'web_ports' is not in the desired state", W)]),
    ("allow", {"action": "allow"}, [("spec.action", "'allow' is not one of", E)]),
    ("sequence 0", {"sequence": 0}, [("spec.sequence", "must be at least 1, got 0", E)]),
    ("rule port name", {"protocol": "TCP", "destination": {"port": "rfb"}}, []),
    ("services-file name", {"protocol": "TCP", "destination": {"port": "amqp"}},
     [("spec.destination.port", "alias 'amqp' is not in the desired state", W)]),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "expected"), [c[1:] for c in RULE_CASES],
                         ids=[c[0] for c in RULE_CASES])  # fmt: skip
def test_rule(
    tmp_path: Path, spec: dict[str, Any], expected: list[tuple[str, str, Severity]]
) -> None:
    found = report(tmp_path, NODE, doc("FirewallRule", interface="lan", **spec))
    assert matches(found, expected), summary(found)


def test_rule_interface_listed_twice(tmp_path: Path) -> None:
    (found,) = report(tmp_path, NODE, doc("FirewallRule", interface=["lan", "wan", "lan"]))
    assert (found.path, found.message) == (
        "spec.interface[2]",
        "'lan' is listed twice (also at interface[0]); keep one",
    )


def test_rule_aliases_in_the_desired_state_for_the_same_node(tmp_path: Path) -> None:
    rule = doc("FirewallRule", "r", interface="lan", protocol="TCP",
               destination={"net": "web", "port": "web_ports"})  # fmt: skip
    aliases = [
        doc("FirewallAlias", "a", name="web", type="host", content=["10.0.0.1"]),
        doc("FirewallAlias", "b", name="web_ports", type="port", content=[443]),
    ]
    assert report(tmp_path, NODE, rule, *aliases) == []
    # The same aliases on another firewall do not count for this one.
    other = node()
    other["metadata"] = {"name": "fw2"}
    for alias in aliases:
        alias["spec"]["target"] = {"node": "fw2"}
    found = report(tmp_path, NODE, other, rule, *aliases)
    assert [(d.path, d.severity) for d in found] == [
        ("spec.destination.net", W),
        ("spec.destination.port", W),
    ]


# -- HostOverride -------------------------------------------------------------------

HOST_CASES: list[tuple[str, dict[str, Any], list[tuple[str, str, Severity]]]] = [
    ("a", {"server": "192.0.2.1"}, []),
    ("aaaa", {"rr": "AAAA", "server": "2001:db8::1"}, []),
    ("mx", {"rr": "MX", "mx": "mail.example.net", "mxprio": 10}, []),
    ("txt", {"rr": "TXT", "txtdata": "v=spf1 -all"}, []),
    ("wildcard", {"hostname": "*", "server": "192.0.2.1"}, []),
    ("a v6", {"server": "2001:db8::1"},
     [("spec.server", "is not an IPv4 address, as an A record needs", E)]),
    ("aaaa v4", {"rr": "AAAA", "server": "192.0.2.1"},
     [("spec.server", "is not an IPv6 address, as a AAAA record needs", E)]),
    ("a network", {"server": "192.0.2.0/24"}, [("spec.server", "is not an IPv4 address", E)]),
    ("a name", {"server": "www.example.net"}, [("spec.server", "is not an IPv4 address", E)]),
    ("a no server", {}, [("spec", "an A record needs 'server'", E)]),
    ("mx no mx", {"rr": "MX", "mxprio": 10}, [("spec", "an MX record needs 'mx'", E)]),
    ("mx no prio", {"rr": "MX", "mx": "mail.example.net"},
     [("spec", "an MX record needs 'mxprio'", E)]),
    ("mx bad host", {"rr": "MX", "mx": "mail server", "mxprio": 10},
     [("spec.mx", "'mail server' is not a host name, as an MX record needs", E)]),
    ("txt no data", {"rr": "TXT"}, [("spec", "a TXT record needs 'txtdata'", E)]),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "expected"), [c[1:] for c in HOST_CASES],
                         ids=[c[0] for c in HOST_CASES])  # fmt: skip
def test_host_override(
    tmp_path: Path, spec: dict[str, Any], expected: list[tuple[str, str, Severity]]
) -> None:
    spec = {"hostname": "www", "domain": "example.net", **spec}
    found = report(tmp_path, NODE, doc("HostOverride", **spec))
    assert matches(found, expected), summary(found)


# -- platforms ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["FirewallAlias", "FirewallRule", "HostOverride"])
def test_opnsense_kinds_refuse_a_linux_node(tmp_path: Path, kind: str) -> None:
    linux = {**NODE, "metadata": {"name": "web"}, "spec": {"platform": "linux",
                                                           "address": "10.0.0.1"}}  # fmt: skip
    spec = {"FirewallAlias": {"name": "a", "type": "host"},
            "FirewallRule": {"interface": "lan"},
            "HostOverride": {"hostname": "www", "domain": "example.net", "server": "10.0.0.1"},
            }[kind]  # fmt: skip
    resource = doc(kind, **spec)
    resource["spec"]["target"] = {"node": "web"}
    found = report(tmp_path, linux, resource)
    assert [(d.path, d.message) for d in found] == [
        ("spec.target.node", f"{kind} applies to opnsense nodes, but Node/web is linux")
    ]
