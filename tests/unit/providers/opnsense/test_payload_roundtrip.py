"""Documents written with payload.* read back in sync through live.read + compare.

Each document is validated by the real loader (so defaults apply as in ``fazai plan``),
written to the emulator the way an apply writes it (aliases with addItem, rules and host
overrides with set*/{uuid} at FazAI's own uuid), then read back in bulk and compared: a
field that does not survive the trip would show as drift on every plan.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from controller.model import loader
from controller.model.document import Document
from controller.plan.diff import Action, compare
from controller.providers.opnsense import live, payload, provider
from controller.providers.opnsense.client import ApiTarget, OpnsenseClient
from controller.providers.opnsense.identity import object_uuid
from controller.secrets import Secret
from controller.source.open import open_source
from controller.testing.opnsense import EmulatorServer, EmulatorState

VERSIONS = ["24.7", "25.1", "25.7", "26.1", "26.7"]
NODE = "edge-fw"


def doc(kind: str, name: str, /, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "fazai.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": {"target": {"node": NODE}, **spec},
    }


ALIASES = [
    doc("FirewallAlias", "defaults", name="plain_hosts", type="host"),
    doc("FirewallAlias", "hosts", name="web_hosts", type="host",
        content=["10.0.10.12", "10.0.10.11", "www.example.net", "10.0.0.1-10.0.0.9"],
        description="Web tier"),
    doc("FirewallAlias", "nested", name="all_hosts", type="host",
        content=["web_hosts", "10.0.20.1"]),
    doc("FirewallAlias", "nets", name="office_nets", type="network",
        content=["10.1.0.0/16", "2001:db8::/48", "!10.1.5.0/24"], enabled=False),
    doc("FirewallAlias", "ports", name="web_ports", type="port",
        content=[443, 8443, "8000:8080", "http"]),
    doc("FirewallAlias", "countries", name="blocked_countries", type="geoip",
        content=["PT", "DE"], proto=["IPv4", "IPv6"]),
    doc("FirewallAlias", "v6-only", name="geo_v6", type="geoip", content=["FR"],
        proto=["IPv6"]),
    doc("FirewallAlias", "feed", name="drop_list", type="urltable",
        content=["https://example.net/drop.txt"], updatefreq=1),
    doc("FirewallAlias", "half-day", name="half_day", type="urltable",
        content=["https://example.net/half.txt"], updatefreq=0.5),
    doc("FirewallAlias", "group", name="nets_group", type="networkgroup",
        content=["office_nets"]),
    doc("FirewallAlias", "macs", name="printers", type="mac",
        content=["00:1a:2b", "00:1a:2b:3c:4d:5e"]),
    doc("FirewallAlias", "asns", name="peers", type="asn", content=[64512, 64513]),
    doc("FirewallAlias", "empty", name="nothing_yet", type="host", content=[],
        description=""),
]  # fmt: skip

RULES = [
    doc("FirewallRule", "defaults", interface="lan"),
    doc("FirewallRule", "list-interface", interface=["wan", "lan"], protocol="tcp",
        destination={"net": "web_hosts", "port": "web_ports"}, description="HTTPS in"),
    doc("FirewallRule", "ports-as-ints", interface="lan", protocol="TCP",
        source={"port": "1024-65535"}, destination={"port": 443}, sequence=10),
    doc("FirewallRule", "service-port", interface="lan", protocol="UDP",
        destination={"net": "10.0.0.53", "port": "domain"}),
    doc("FirewallRule", "negated", interface="lan", action="block",
        source={"net": "office_nets", "not": True},
        destination={"net": "10.0.0.0/8", "not": True}),
    doc("FirewallRule", "disabled", interface="wan", action="reject", quick=False,
        log=True, enabled=False, direction="out", description="kept, not used"),
    doc("FirewallRule", "icmp", interface="lan", protocol="ICMP", destination={"net": "lanip"}),
    doc("FirewallRule", "v6", interface="lan", ipprotocol="inet6",
        source={"net": "2001:db8::/32"}, sequence=99999),
    doc("FirewallRule", "self", interface="lan", protocol="TCP",
        destination={"net": "(self)", "port": 22}),
    doc("FirewallRule", "gateway", interface="lan", gateway="WAN_GW"),
]  # fmt: skip

# Features that came with a release: (first release, document).
RULES_LATER = [
    ("25.1", doc("FirewallRule", "both-families", interface="lan", ipprotocol="inet46",
                 protocol="TCP/UDP", destination={"port": 53})),
    ("25.7", doc("FirewallRule", "high-sequence", interface="lan", sequence=500000)),
    ("26.1", doc("FirewallRule", "both-directions", interface="lan", direction="any")),
]  # fmt: skip

HOSTS = [
    doc("HostOverride", "defaults", hostname="www", domain="example.net", server="10.0.10.11"),
    doc("HostOverride", "v6", hostname="www", domain="example.net", rr="AAAA",
        server="2001:db8::11", description="IPv6 web"),
    doc("HostOverride", "mail", hostname="*", domain="example.net", rr="MX",
        mx="mail.example.net", mxprio=10),
    doc("HostOverride", "disabled", hostname="old", domain="example.net",
        server="10.0.10.99", enabled=False),
]  # fmt: skip

HOSTS_LATER = [
    ("26.1", doc("HostOverride", "spf", hostname="mail", domain="example.net", rr="TXT",
                 txtdata="v=spf1 mx -all")),
]  # fmt: skip

NODE_DOC = {
    "apiVersion": "fazai.dev/v1alpha1",
    "kind": "Node",
    "metadata": {"name": NODE},
    "spec": {
        "platform": "opnsense",
        "url": "https://fw.example.net",
        "apiKeyRef": {"env": "FW_KEY"},
        "apiSecretRef": {"env": "FW_SECRET"},
    },
}


def release(version: str) -> tuple[int, int]:
    major, minor = version.split(".")
    return int(major), int(minor)


def documents(version: str, kind: str) -> list[dict[str, Any]]:
    base, later = {
        "FirewallAlias": (ALIASES, []),
        "FirewallRule": (RULES, RULES_LATER),
        "HostOverride": (HOSTS, HOSTS_LATER),
    }[kind]
    return base + [d for since, d in later if release(version) >= release(since)]


def load(tmp_path: Path, docs: list[dict[str, Any]]) -> list[Document]:
    (tmp_path / "docs.yaml").write_text(yaml.safe_dump_all([NODE_DOC, *docs], sort_keys=False))
    state = loader.load(open_source(str(tmp_path)))
    assert [w for w in state.warnings if w.is_error] == []
    return list(state.resources)


def write(emu: EmulatorServer, resources: list[Document]) -> None:
    with httpx.Client(base_url=emu.url + "/api/", auth=emu.auth, timeout=10) as api:
        for d in resources:
            if d.kind == "FirewallAlias":
                answer = api.post("firewall/alias/addItem", json=payload.alias(d.spec))
            elif d.kind == "FirewallRule":
                uuid = object_uuid(NODE, d.kind, d.name)
                answer = api.post(f"firewall/filter/setRule/{uuid}", json=payload.rule(d.spec))
            else:
                uuid = object_uuid(NODE, d.kind, d.name)
                body = payload.host_override(d.spec)
                answer = api.post(f"unbound/settings/setHostOverride/{uuid}", json=body)
            assert answer.json().get("result") == "saved", (emu.version, d.subject, answer.text)


def read_back(emu: EmulatorServer, resources: list[Document]) -> dict[str, tuple[Action, Any]]:
    target = ApiTarget(NODE, emu.url, Secret(emu.api_key), Secret(emu.api_secret), backoff=0.01)

    async def observe() -> live.LiveFirewall:
        async with OpnsenseClient(target) as client:
            return await live.read(client, {d.kind for d in resources})

    firewall = asyncio.run(observe())
    observation = provider.compare(NODE, resources, firewall)
    out: dict[str, tuple[Action, Any]] = {}
    for d, observed in observation.resources.items():
        action, changes = compare(observed)
        out[d.subject] = (action, [(c.field, c.live, c.desired) for c in changes] or
                          observed.error)  # fmt: skip
    return out


@pytest.fixture(params=VERSIONS)
def emu(request: pytest.FixtureRequest) -> Iterator[EmulatorServer]:
    # opt1 and a gateway, so that list interfaces and gateway fields can be written.
    state = EmulatorState(
        request.param,
        interfaces={"lan": "LAN", "wan": "WAN", "opt1": "DMZ", "lo0": "Loopback"},
        gateways=["WAN_GW"],
    )
    with EmulatorServer(state=state) as server:
        yield server


@pytest.mark.parametrize("kind", ["FirewallAlias", "FirewallRule", "HostOverride"])
def test_written_documents_read_back_in_sync(
    emu: EmulatorServer, kind: str, tmp_path: Path
) -> None:
    docs = documents(emu.version, kind)
    if kind == "FirewallRule":
        # Rules refer to these aliases; they must exist on the firewall first.
        docs = [*(a for a in ALIASES if a["spec"]["name"] in ("web_hosts", "office_nets",
                                                              "web_ports")), *docs]  # fmt: skip
    resources = load(tmp_path, docs)
    write(emu, resources)
    result = {s: found for s, found in read_back(emu, resources).items() if s.startswith(kind)}
    assert len(result) == len(documents(emu.version, kind))
    drift = {subject: found for subject, found in result.items() if found[0] is not Action.NOOP}
    assert drift == {}


def test_a_changed_field_is_seen(emu: EmulatorServer, tmp_path: Path) -> None:
    """The round trip can fail: a field changed on the firewall shows as an update."""
    resources = load(tmp_path, HOSTS[:1])
    write(emu, resources)
    changed = {**resources[0].spec, "server": "10.0.10.12"}
    edited = Document(resources[0].kind, resources[0].name, changed, raw=resources[0].raw)
    result = read_back(emu, [edited])
    assert result["HostOverride/defaults"] == (
        Action.UPDATE,
        [("server", "10.0.10.11", "10.0.10.12")],
    )
