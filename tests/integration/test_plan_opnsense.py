"""`fazai plan` against the OPNsense emulator over real HTTPS, across imitated releases.

Objects are put on the firewall the way an apply would (set with FazAI's uuid, the
document as the body), so a fresh firewall plans in sync; drift is then made by hand,
as in the web UI, and the plan must show exactly that drift.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from controller.engine import plan as planning
from controller.model import loader
from controller.model.state import DesiredState
from controller.plan import items as planitems
from controller.plan.diff import Action
from controller.providers.opnsense import payload
from controller.providers.opnsense.identity import object_uuid
from controller.source.open import open_source
from controller.testing.opnsense import Drift, EmulatorServer

VERSIONS = ["24.7", "25.1", "25.7", "26.1", "26.7"]


def documents(emu: EmulatorServer, key_file: Path) -> list[dict[str, Any]]:
    def doc(kind: str, doc_name: str, **spec: Any) -> dict[str, Any]:
        return {
            "apiVersion": "fazai.dev/v1alpha1",
            "kind": kind,
            "metadata": {"name": doc_name},
            "spec": {"target": {"node": "edge-fw"}, **spec},
        }

    node = {
        "apiVersion": "fazai.dev/v1alpha1",
        "kind": "Node",
        "metadata": {"name": "edge-fw"},
        "spec": {
            "platform": "opnsense",
            "url": emu.url,
            "apiKeyRef": {"file": str(key_file)},
            "apiSecretRef": {"env": "FAZAI_TEST_FW_SECRET"},
            "tls": {"caBundle": str(emu.certificate)},
            "requestTimeout": 5,
        },
    }
    return [
        node,
        doc("FirewallAlias", "web-servers", name="web_servers", type="host",
            content=["10.0.10.11", "10.0.10.12"], description="Web tier"),
        doc("FirewallAlias", "https-ports", name="https_ports", type="port",
            content=["443", "8443"]),
        doc("FirewallRule", "allow-https", interface="lan", protocol="TCP",
            destination={"net": "web_servers", "port": "https_ports"},
            description="HTTPS to the web tier", sequence=100, log=True),
        doc("FirewallRule", "block-telnet", action="block", interface=["lan", "wan"],
            protocol="TCP", destination={"port": 23}, sequence=200),
        doc("HostOverride", "www", hostname="www", domain="example.net", server="10.0.10.11"),
    ]  # fmt: skip


@pytest.fixture(params=VERSIONS)
def firewall(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[EmulatorServer, DesiredState]]:
    with EmulatorServer(version=request.param, tls=True) as emu:
        key_file = tmp_path / "fw.key"
        key_file.write_text(emu.api_key + "\n")
        monkeypatch.setenv("FAZAI_TEST_FW_SECRET", emu.api_secret)
        folder = tmp_path / "state"
        folder.mkdir()
        (folder / "fw.yaml").write_text(yaml.safe_dump_all(documents(emu, key_file)))
        state = loader.load(open_source(str(folder)))
        yield emu, state


def apply_by_hand(emu: EmulatorServer, state: DesiredState) -> None:
    """What an apply does: aliases by name, rules and overrides at FazAI's uuids."""
    tls = ssl.create_default_context(cafile=str(emu.certificate))
    with httpx.Client(base_url=emu.url + "/api/", auth=emu.auth, verify=tls) as api:
        for doc in state.resources:
            if doc.kind == "FirewallAlias":
                answer = api.post("firewall/alias/addItem", json=payload.alias(doc.spec)).json()
            else:
                uuid = object_uuid("edge-fw", doc.kind, doc.name)
                if doc.kind == "FirewallRule":
                    answer = api.post(
                        f"firewall/filter/setRule/{uuid}", json=payload.rule(doc.spec)
                    ).json()
                else:
                    body = payload.host_override(doc.spec)
                    answer = api.post(f"unbound/settings/setHostOverride/{uuid}", json=body).json()
            assert answer["result"] == "saved", (doc.subject, answer)


def plan(state: DesiredState, show_unmanaged: bool = False) -> planitems.Plan:
    return asyncio.run(planning.build(state, show_unmanaged=show_unmanaged))


def changed(result: planitems.Plan) -> dict[tuple[str, str], planitems.PlanItem]:
    return {
        (i.kind, i.name): i for n in result.nodes for i in n.items if i.action is not Action.NOOP
    }


def test_empty_firewall_plans_every_object_as_create(
    firewall: tuple[EmulatorServer, DesiredState],
) -> None:
    emu, state = firewall
    result = plan(state)
    assert result.nodes[0].error is None, result.nodes[0].error
    assert {k: i.action for k, i in changed(result).items()} == {
        ("FirewallAlias", "https-ports"): Action.CREATE,
        ("FirewallAlias", "web-servers"): Action.CREATE,
        ("FirewallRule", "allow-https"): Action.CREATE,
        ("FirewallRule", "block-telnet"): Action.CREATE,
        ("HostOverride", "www"): Action.CREATE,
    }
    # The bulk read: the firmware status and one model read per object type.
    assert emu.requests.count() == 4


def test_applied_documents_read_back_in_sync(firewall: tuple[EmulatorServer, DesiredState]) -> None:
    emu, state = firewall
    apply_by_hand(emu, state)
    result = plan(state)
    assert changed(result) == {}
    assert result.exit_code == 0


def test_hand_made_drift_missing_changed_and_extra(
    firewall: tuple[EmulatorServer, DesiredState],
) -> None:
    emu, state = firewall
    apply_by_hand(emu, state)
    drift = Drift(emu.state)
    alias_uuid = next(u for u, i in emu.state.list("alias").items() if i["name"] == "web_servers")
    drift.edit("alias", alias_uuid, {"content": "10.0.10.11\n10.0.10.99"})
    drift.edit("rule", object_uuid("edge-fw", "FirewallRule", "allow-https"), {"log": "0"})
    drift.remove("host", object_uuid("edge-fw", "HostOverride", "www"))
    drift.add("alias", {"name": "legacy_hosts", "type": "host", "content": "192.0.2.7"})

    result = plan(state)
    summary = {
        key: (item.action, [(c.field, c.live, c.desired) for c in item.changes])
        for key, item in changed(result).items()
    }
    assert summary == {
        ("FirewallAlias", "web-servers"): (
            Action.UPDATE,
            [("content", ["10.0.10.11", "10.0.10.99"], ["10.0.10.11", "10.0.10.12"])],
        ),
        ("FirewallRule", "allow-https"): (Action.UPDATE, [("log", False, True)]),
        ("HostOverride", "www"): (
            Action.CREATE,
            [("domain", None, "example.net"), ("enabled", None, True), ("hostname", None, "www"),
             ("rr", None, "A"), ("server", None, "10.0.10.11")],
        ),
    }  # fmt: skip
    assert result.exit_code == 1

    with_extra = plan(state, show_unmanaged=True)
    extras = [
        (i.kind, i.name) for n in with_extra.nodes for i in n.items if i.action is Action.UNMANAGED
    ]
    assert extras == [("FirewallAlias", "legacy_hosts")]
    assert with_extra.exit_code == 1


def test_unknown_alias_is_an_error_only_when_absent_from_the_firewall(
    firewall: tuple[EmulatorServer, DesiredState], tmp_path: Path
) -> None:
    emu, state = firewall
    docs = list(yaml.safe_load_all((Path(state.source.description) / "fw.yaml").read_text()))
    docs = [d for d in docs if d["metadata"]["name"] != "web-servers"]
    (Path(state.source.description) / "fw.yaml").write_text(yaml.safe_dump_all(docs))
    reduced = loader.load(open_source(state.source.description))
    assert any("web_servers" in str(w) for w in reduced.warnings)
    item = changed(plan(reduced))[("FirewallRule", "allow-https")]
    assert item.action is Action.ERROR
    assert item.error == (
        "destination refers to alias 'web_servers', which is neither in the desired state nor on "
        "the firewall"
    )
    Drift(emu.state).add("alias", {"name": "web_servers", "type": "host", "content": "10.0.10.11"})
    assert changed(plan(reduced))[("FirewallRule", "allow-https")].action is Action.CREATE
