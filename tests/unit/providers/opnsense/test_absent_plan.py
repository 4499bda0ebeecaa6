"""Plans of ``state: absent`` firewall objects, against the emulator over plain HTTP.

Absent and on the firewall: delete; absent and missing: noop. An alias to delete that
something staying on the firewall still uses is an error of its document, naming the
users, so the apply never starts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.engine import plan as planning
from controller.engine import prune
from controller.model import loader
from controller.model.state import DesiredState
from controller.plan import items as planitems
from controller.plan.diff import Action
from controller.providers.opnsense.identity import object_uuid
from controller.source.open import open_source
from controller.store import OwnedObject
from controller.testing.opnsense import Drift, EmulatorServer

NODE = "fw"


def doc(kind: str, doc_name: str, /, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "fazai.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": doc_name},
        "spec": {"target": {"node": NODE}, **spec},
    }


class Firewall:
    def __init__(self, emu: EmulatorServer, folder: Path) -> None:
        self.emu = emu
        self.folder = folder
        self.drift = Drift(emu.state)

    def state(self, *documents: dict[str, Any]) -> DesiredState:
        node = {
            "apiVersion": "fazai.dev/v1alpha1",
            "kind": "Node",
            "metadata": {"name": NODE},
            "spec": {
                "platform": "opnsense",
                "url": self.emu.url,
                "apiKeyRef": {"env": "FAZAI_TEST_FW_KEY"},
                "apiSecretRef": {"env": "FAZAI_TEST_FW_SECRET"},
                "requestTimeout": 5,
            },
        }
        (self.folder / "fw.yaml").write_text(yaml.safe_dump_all([node, *documents]))
        return loader.load(open_source(str(self.folder)))

    def plan(self, state: DesiredState) -> dict[tuple[str, str], planitems.PlanItem]:
        result = asyncio.run(planning.build(state, show_unmanaged=True))
        (node,) = result.nodes
        assert node.error is None, node.error
        return {(i.kind, i.name): i for i in node.items}


@pytest.fixture(params=["24.7", "26.7"])
def fw(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Firewall]:
    with EmulatorServer(version=request.param) as emu:
        monkeypatch.setenv("FAZAI_TEST_FW_KEY", emu.api_key)
        monkeypatch.setenv("FAZAI_TEST_FW_SECRET", emu.api_secret)
        firewall = Firewall(emu, tmp_path)
        firewall.drift.add("alias", {"name": "old_hosts", "type": "host", "content": "192.0.2.7"})
        firewall.drift.add(
            "rule",
            {"interface": "wan", "action": "block", "source_net": "old_hosts"},
            uuid=object_uuid(NODE, "FirewallRule", "block-old"),
        )
        firewall.drift.add(
            "host",
            {"hostname": "mail", "domain": "example.net", "rr": "A", "server": "10.0.10.20"},
            uuid=object_uuid(NODE, "HostOverride", "mail"),
        )
        yield firewall


def test_absent_objects_on_the_firewall_plan_as_deletes_and_missing_ones_as_noops(
    fw: Firewall,
) -> None:
    items = fw.plan(
        fw.state(
            doc("FirewallAlias", "old-hosts", name="old_hosts", state="absent"),
            doc("FirewallRule", "block-old", state="absent"),
            doc("HostOverride", "mail", state="absent"),
            doc("FirewallAlias", "never", name="never_there", state="absent"),
            doc("FirewallRule", "never", state="absent"),
            doc("HostOverride", "never", state="absent"),
        )
    )
    actions = {key: item.action for key, item in items.items()}
    assert actions == {
        ("FirewallAlias", "old-hosts"): Action.DELETE,
        ("FirewallRule", "block-old"): Action.DELETE,
        ("HostOverride", "mail"): Action.DELETE,
        ("FirewallAlias", "never"): Action.NOOP,
        ("FirewallRule", "never"): Action.NOOP,
        ("HostOverride", "never"): Action.NOOP,
    }
    # A delete lists what the firewall holds, every field going.
    alias = {c.field: (c.live, c.desired) for c in items[("FirewallAlias", "old-hosts")].changes}
    assert alias["content"] == (["192.0.2.7"], None) and alias["name"] == ("old_hosts", None)
    rule = {c.field: (c.live, c.desired) for c in items[("FirewallRule", "block-old")].changes}
    assert rule["source_net"] == ("old_hosts", None) and rule["action"] == ("block", None)
    host = {c.field: c.live for c in items[("HostOverride", "mail")].changes}
    assert host["server"] == "10.0.10.20"


def test_deleting_an_alias_a_remaining_rule_uses_is_an_error(fw: Firewall) -> None:
    # block-old is on the firewall and no document deletes or rewrites it.
    items = fw.plan(fw.state(doc("FirewallAlias", "old-hosts", name="old_hosts", state="absent")))
    item = items[("FirewallAlias", "old-hosts")]
    uuid = object_uuid(NODE, "FirewallRule", "block-old")
    assert item.action is Action.ERROR
    assert item.error == (
        f"cannot delete alias 'old_hosts': still used by rule {uuid} on the firewall; remove "
        "those uses first (or delete them in the same apply)"
    )


def test_a_rule_rewritten_to_stop_using_the_alias_frees_it(fw: Firewall) -> None:
    items = fw.plan(
        fw.state(
            doc("FirewallAlias", "old-hosts", name="old_hosts", state="absent"),
            doc(
                "FirewallRule",
                "block-old",
                action="block",
                interface="wan",
                source={"net": "192.0.2.7"},
            ),
        )
    )
    assert items[("FirewallAlias", "old-hosts")].action is Action.DELETE
    assert items[("FirewallRule", "block-old")].action is Action.UPDATE


def test_an_alias_nesting_it_on_the_firewall_keeps_it(fw: Firewall) -> None:
    fw.drift.add("alias", {"name": "all_old", "type": "host", "content": "old_hosts\n10.9.9.9"})
    items = fw.plan(
        fw.state(
            doc("FirewallAlias", "old-hosts", name="old_hosts", state="absent"),
            doc("FirewallRule", "block-old", state="absent"),
        )
    )
    item = items[("FirewallAlias", "old-hosts")]
    assert item.action is Action.ERROR
    assert item.error is not None and "still used by alias 'all_old' on the firewall" in item.error


def test_a_pruned_alias_a_present_rule_document_uses_is_an_error_naming_it(
    fw: Firewall,
) -> None:
    # The prune's absent documents are not checked at validate time: plan must catch it.
    state = fw.state(
        doc("FirewallRule", "block-old", action="block", interface="wan",
            source={"net": "old_hosts"}),
    )  # fmt: skip
    entry = OwnedObject(NODE, "FirewallAlias", "old-hosts", "old_hosts", 1, datetime.now(UTC))
    pruned = prune.plan(state, {NODE: [entry]}, [NODE]).state
    items = fw.plan(pruned)
    item = items[("FirewallAlias", "old-hosts")]
    assert item.action is Action.ERROR
    assert item.error is not None
    assert "still used by FirewallRule/block-old (fw.yaml:" in item.error


def test_objects_no_document_claims_show_only_as_unmanaged(fw: Firewall) -> None:
    hand = fw.drift.add("rule", {"interface": "lan", "description": "by hand"})
    items = fw.plan(
        fw.state(
            doc("FirewallRule", "block-old", state="absent"),
            doc("FirewallAlias", "never", name="never_there", state="absent"),
            doc("HostOverride", "never", state="absent"),
        )
    )
    assert items[("FirewallRule", "block-old")].action is Action.DELETE
    unmanaged = {k for k, i in items.items() if i.action is Action.UNMANAGED}
    assert unmanaged == {
        ("FirewallAlias", "old_hosts"),
        ("FirewallRule", f"by hand ({hand})"),
        ("HostOverride", f"mail.example.net ({object_uuid(NODE, 'HostOverride', 'mail')})"),
    }


def test_the_firewalls_own_aliases_are_never_deleted(fw: Firewall) -> None:
    fw.drift.add("alias", {"name": "ext_feed", "type": "external"})
    items = fw.plan(fw.state(doc("FirewallAlias", "ext-feed", name="ext_feed", state="absent")))
    item = items[("FirewallAlias", "ext-feed")]
    assert (item.action, item.error) == (
        Action.ERROR,
        "'ext_feed' is one of the firewall's own aliases; never deleted",
    )
