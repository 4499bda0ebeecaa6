"""One read of a firewall serves a base and a head (the OPNsense emulator, real HTTP)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from controller.forges import review
from controller.model import loader
from controller.model.state import DesiredState
from controller.plan import review as reviewed
from controller.plan.diff import Action
from controller.source.open import open_source
from controller.testing.opnsense import EmulatorServer

SECRET_ENV = "FAZAI_SHARED_READ_SECRET"


def doc(kind: str, doc_name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "fazai.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": doc_name},
        "spec": {"target": {"node": "edge-fw"}, **spec},
    }


def state(folder: Path, emu: EmulatorServer, key: Path, *docs: dict[str, Any]) -> DesiredState:
    node = {
        "apiVersion": "fazai.dev/v1alpha1",
        "kind": "Node",
        "metadata": {"name": "edge-fw"},
        "spec": {
            "platform": "opnsense",
            "url": emu.url,
            "apiKeyRef": {"file": str(key)},
            "apiSecretRef": {"env": SECRET_ENV},
            "requestTimeout": 5,
        },
    }
    folder.mkdir()
    (folder / "state.yaml").write_text(yaml.safe_dump_all([node, *docs]))
    return loader.load(open_source(str(folder)))


@pytest.fixture
def firewall(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[EmulatorServer, Path]]:
    with EmulatorServer(version="26.1") as emu:
        key = tmp_path / "key"
        key.write_text(emu.api_key)
        monkeypatch.setenv(SECRET_ENV, emu.api_secret)
        # A rule made by hand, that no document describes.
        with httpx.Client(base_url=emu.url + "/api/", auth=emu.auth) as api:
            rule = {"rule": {"interface": "lan", "description": "by hand", "protocol": "any"}}
            assert api.post("firewall/filter/addRule", json=rule).json()["result"] == "saved"
        emu.requests.clear()
        yield emu, key


async def test_one_read_serves_both(firewall: tuple[EmulatorServer, Path], tmp_path: Path) -> None:
    emu, key = firewall
    alias = doc("FirewallAlias", "web", name="web", type="host", content=["10.0.0.1"])
    rule = doc("FirewallRule", "ssh", interface="lan", protocol="TCP",
               destination={"net": "web", "port": 22})  # fmt: skip
    base = state(tmp_path / "base", emu, key, alias)
    head = state(tmp_path / "head", emu, key, alias, rule)
    result = await review.build(base, head, show_unmanaged=True)

    assert result.reads == {"edge-fw": 1}
    assert emu.requests.count("GET", r"core/firmware/status") == 1
    assert emu.requests.count("GET", r"firewall/alias/get") == 1
    assert emu.requests.count("GET", r"firewall/filter/get") == 1
    head_items = {(i.kind, i.action) for n in result.head.nodes for i in n.items}
    assert result.base is not None
    base_items = {(i.kind, i.action) for n in result.base.nodes for i in n.items}
    # The head manages rules, so it sees the rule made by hand; the base, describing
    # aliases only, is compared with the aliases alone, as a read of its own would be.
    assert ("FirewallRule", Action.UNMANAGED) in head_items
    assert ("FirewallRule", Action.UNMANAGED) not in base_items
    assert dict(result.markings) == {
        ("edge-fw", "FirewallAlias", "web"): reviewed.Marking.PENDING,
        ("edge-fw", "FirewallRule", "ssh"): reviewed.Marking.INTRODUCED,
    }


async def test_a_failed_read_fails_both_plans_alike(
    firewall: tuple[EmulatorServer, Path], tmp_path: Path
) -> None:
    emu, key = firewall
    alias = doc("FirewallAlias", "web", name="web", type="host", content=["10.0.0.1"])
    base = state(tmp_path / "base", emu, key, alias)
    head = state(tmp_path / "head", emu, key, alias)
    emu.faults.fail(403, path="firmware/status", times=None)
    result = await review.build(base, head)
    (node,) = result.head.nodes
    assert node.error is not None
    assert result.base is not None and result.base.nodes[0].error == node.error
    assert result.markings == {} and result.dropped == ()


@pytest.mark.parametrize(
    "documents",
    [
        [],  # no firewall document: every type is read, for the unmanaged listing
        [doc("FirewallAlias", "web", name="web", type="host", content=["10.0.0.1"])],
        [doc("FirewallAlias", "gone", name="gone", state="absent")],  # needs the rules too
    ],
    ids=["none", "alias", "absent-alias"],
)
async def test_a_shared_read_observes_what_the_provider_does(
    firewall: tuple[EmulatorServer, Path], tmp_path: Path, documents: list[dict[str, Any]]
) -> None:
    # observe.py composes the provider's own pieces; this keeps the two from drifting.
    from controller.forges.observe import read_together
    from controller.providers.opnsense.provider import PROVIDER

    emu, key = firewall
    one = state(tmp_path / "one", emu, key, *documents)
    node = one.nodes["edge-fw"]
    resources = one.resources_for("edge-fw")
    (shared,) = await read_together(node, [(resources, one.source)])
    assert shared == await PROVIDER.observe(node, resources, one.source)
