"""Adopting what already exists on a firewall, end to end over real HTTPS.

A host override made by hand is found by Unbound's own key (hostname, domain, record
type) and updated in place, never created a second time; a rule is bound to an existing
one with ``spec.adopt.uuid``; either way the apply records the real uuid as owned, the
next plan is in sync, and prune reaches that object. Two overrides already sharing a
key are refused with both uuids named and nothing written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from rich.console import Console

from controller.engine import apply as applying
from controller.engine import plan as planning
from controller.engine import prune
from controller.engine.diff import Action
from controller.model import loader
from controller.model.state import DesiredState
from controller.output import plan_json, plan_markdown, plan_text
from controller.source.open import open_source
from controller.store import NodeStatus, StateStore
from controller.testing.opnsense import Drift, EmulatorServer

NODE = "edge-fw"


def doc(kind: str, doc_name: str, /, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "fazai.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": doc_name},
        "spec": {"target": {"node": NODE}, **spec},
    }


APP = doc("HostOverride", "app", hostname="app", domain="example.internal", server="10.0.10.50")


@dataclass
class Firewall:
    emu: EmulatorServer
    folder: Path
    node_doc: dict[str, Any]
    db: Path

    def state(self, documents: list[dict[str, Any]]) -> DesiredState:
        (self.folder / "fw.yaml").write_text(
            yaml.safe_dump_all([self.node_doc, *documents], sort_keys=False)
        )
        return loader.load(open_source(str(self.folder)))

    def plan(self, state: DesiredState) -> planning.Plan:
        return asyncio.run(planning.build(state))

    def apply(self, state: DesiredState) -> applying.ApplyResult:
        plan = self.plan(state)
        with StateStore(self.db) as store:
            return asyncio.run(applying.apply(state, plan, store))

    def hosts(self) -> dict[str, dict[str, str]]:
        return self.emu.state.list("host")

    def records(self) -> dict[tuple[str, str], str]:
        with StateStore(self.db) as store:
            return {(o.kind, o.name): o.platform_id for o in store.owned(NODE)}

    def pruned(self, documents: list[dict[str, Any]]) -> DesiredState:
        state = self.state(documents)
        with StateStore(self.db) as store:
            owned = {NODE: store.owned(NODE)}
        return prune.plan(state, owned, [NODE]).state

    def posts(self) -> list[str]:
        return [r.path for r in self.emu.requests if r.method == "POST"]


@contextlib.contextmanager
def emulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Firewall]:
    with EmulatorServer(version="26.1", tls=True) as emu:
        key_file = tmp_path / "fw.key"
        key_file.write_text(emu.api_key + "\n")
        monkeypatch.setenv("FAZAI_TEST_FW_SECRET", emu.api_secret)
        folder = tmp_path / "state"
        folder.mkdir()
        node = {
            "apiVersion": "fazai.dev/v1alpha1",
            "kind": "Node",
            "metadata": {"name": NODE},
            "spec": {
                "platform": "opnsense",
                "url": emu.url,
                "apiKeyRef": {"file": str(key_file)},
                "apiSecretRef": {"env": "FAZAI_TEST_FW_SECRET"},
                "tls": {"caBundle": str(emu.certificate)},
                "requestTimeout": 5,
            },
        }
        yield Firewall(emu, folder, node, tmp_path / "state.db")


@pytest.fixture
def firewall(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Firewall]:
    with emulated(tmp_path, monkeypatch) as fw:
        yield fw


def by_hand(fw: Firewall, kind: str, fields: dict[str, Any]) -> str:
    uuid = Drift(fw.emu.state).add(kind, fields)
    fw.emu.state.mark_applied(["alias", "filter", "unbound"])
    return uuid


def only_item(plan: planning.Plan) -> planning.PlanItem:
    (node,) = plan.nodes
    (item,) = node.items
    return item


def test_an_existing_override_is_adopted_in_place_never_duplicated(firewall: Firewall) -> None:
    fw = firewall
    hand = by_hand(fw, "host", {"hostname": "app", "domain": "example.internal",
                                "server": "10.0.10.99"})  # fmt: skip
    state = fw.state([APP])
    plan = fw.plan(state)
    item = only_item(plan)
    assert (item.action, item.adopt) == (Action.UPDATE, hand)
    rendered = plan_json.to_dict(plan)
    jsonschema.validate(rendered, plan_json.schema())  # the contract, extended
    [change] = rendered["changes"]
    assert (change["action"], change["adopt"], change["adoptedId"]) == ("update", True, hand)
    assert f"adopt existing `{hand}`" in plan_markdown.render(plan)
    console = Console(record=True, width=200)
    plan_text.render(plan, console)
    assert f"HostOverride/app  update  adopt {hand}" in console.export_text()

    result = fw.apply(state)
    assert [n.status for n in result.nodes] == [NodeStatus.CONVERGED]
    # One override, the one made by hand, now answering what the document says.
    assert {u: (h["hostname"], h["server"]) for u, h in fw.hosts().items()} == {
        hand: ("app", "10.0.10.50")
    }
    assert fw.records() == {("HostOverride", "app"): hand}
    assert only_item(fw.plan(fw.state([APP]))).action is Action.NOOP

    # Owned by its uuid: once the document goes, prune deletes that override.
    gone = fw.pruned([])
    assert [i.action for i in only_item_list(fw.plan(gone))] == [Action.DELETE]
    assert [n.status for n in fw.apply(gone).nodes] == [NodeStatus.CONVERGED]
    assert fw.hosts() == {}
    assert fw.records() == {}


def only_item_list(plan: planning.Plan) -> list[planning.PlanItem]:
    return [i for n in plan.nodes for i in n.items]


def test_the_issue_s_firewall_ends_with_one_record_for_the_name(firewall: Firewall) -> None:
    """The reproduction: a hand-made override and a document for the same name gave two
    A records; now the one override answers the document's address."""
    fw = firewall
    by_hand(fw, "host", {"hostname": "app", "domain": "example.internal", "server": "10.0.10.99"})
    fw.apply(fw.state([APP]))
    assert sorted(h["server"] for h in fw.hosts().values()) == ["10.0.10.50"]


def test_two_overrides_sharing_the_key_are_an_error_naming_both(firewall: Firewall) -> None:
    fw = firewall
    fields = {"hostname": "app", "domain": "example.internal", "server": "10.0.10.99"}
    first = by_hand(fw, "host", fields)
    second = by_hand(fw, "host", {**fields, "server": "10.0.10.98"})
    state = fw.state([APP])
    item = only_item(fw.plan(state))
    assert item.action is Action.ERROR
    assert item.error is not None and first in item.error and second in item.error
    before = fw.posts()
    result = fw.apply(state)
    assert [n.status for n in result.nodes] == [NodeStatus.FAILED]
    assert fw.posts() == before  # nothing written
    assert len(fw.hosts()) == 2


def test_a_rule_is_bound_by_spec_adopt_uuid(firewall: Firewall) -> None:
    fw = firewall
    hand = by_hand(fw, "rule", {"interface": "lan", "protocol": "TCP",
                                "destination_net": "10.0.10.5", "destination_port": "22",
                                "description": "ssh by hand"})  # fmt: skip
    rule = doc("FirewallRule", "ssh-in", interface="lan", protocol="TCP",
               destination={"net": "10.0.10.5", "port": 22}, description="ssh to the box",
               adopt={"uuid": hand})  # fmt: skip
    state = fw.state([rule])
    item = only_item(fw.plan(state))
    assert (item.action, item.adopt) == (Action.UPDATE, hand)
    assert [n.status for n in fw.apply(state).nodes] == [NodeStatus.CONVERGED]
    rules = fw.emu.state.list("rule")
    assert list(rules) == [hand] and rules[hand]["description"] == "ssh to the box"
    assert fw.records() == {("FirewallRule", "ssh-in"): hand}
    assert only_item(fw.plan(fw.state([rule]))).action is Action.NOOP


def test_adopting_a_uuid_the_firewall_lacks_is_a_plan_error(firewall: Firewall) -> None:
    fw = firewall
    missing = "0b7c1f0e-3c1a-4d7e-9a55-1d2b3c4d5e6f"
    rule = doc("FirewallRule", "ssh-in", interface="lan", adopt={"uuid": missing})
    item = only_item(fw.plan(fw.state([rule])))
    assert item.action is Action.ERROR
    assert item.error is not None and missing in item.error
    assert "adopt" not in json.dumps(plan_json.to_dict(fw.plan(fw.state([])))["changes"])


def fazai(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from controller.cli import run; run()", *args],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_import_prints_documents_that_plan_in_sync_and_are_owned_once_applied(
    firewall: Firewall,
) -> None:
    fw = firewall
    alias = by_hand(fw, "alias", {"name": "Office_Nets", "type": "network",
                                  "content": "10.9.0.0/16\n10.8.0.0/16",
                                  "description": "offices"})  # fmt: skip
    rule = by_hand(fw, "rule", {"interface": "lan,wan", "protocol": "TCP",
                                "source_net": "Office_Nets", "destination_port": "443",
                                "description": "Offices: HTTPS!", "sequence": "20"})  # fmt: skip
    rule_2 = by_hand(fw, "rule", {"interface": "wan", "action": "block", "log": "1",
                                  "source_net": "192.0.2.0/24",
                                  "description": "Offices: HTTPS!"})  # fmt: skip
    host = by_hand(fw, "host", {"hostname": "app", "domain": "example.internal",
                                "server": "10.0.10.99", "description": "by hand"})  # fmt: skip
    mine = doc("FirewallRule", "offices-https", interface="lan", protocol="UDP",
               destination={"net": "10.0.0.53", "port": 53})  # fmt: skip
    fw.state([mine])
    first = fw.apply(fw.state([mine]))
    assert [n.status for n in first.nodes] == [NodeStatus.CONVERGED], first.nodes
    owned_before = fw.records()

    out = fazai("import", str(fw.folder), "--node", NODE)
    assert out.returncode == 0, out.stderr
    imported = list(yaml.safe_load_all(out.stdout))
    assert fw.emu.state.list("host")[host]["server"] == "10.0.10.99"  # read, not written
    names = {(d["kind"], d["metadata"]["name"]) for d in imported}
    assert names == {
        ("FirewallAlias", "office-nets"),
        ("FirewallRule", "offices-https-2"),  # "offices-https" is a document's already
        ("FirewallRule", "offices-https-3"),
        ("HostOverride", "app-example-internal"),
    }
    adopted = {d["spec"]["adopt"]["uuid"] for d in imported}
    assert adopted == {alias, rule, rule_2, host}
    assert "secret" not in out.stdout.lower()

    (fw.folder / "imported.yaml").write_text(out.stdout)
    planned = fazai("plan", str(fw.folder), "--output", "json")
    assert planned.returncode == 0, planned.stdout + planned.stderr  # in sync: no creates
    assert json.loads(planned.stdout)["changes"] == []

    applied = fazai("apply", str(fw.folder), "--state", str(fw.db), "--auto-approve")
    assert applied.returncode == 0, applied.stderr
    assert "nothing to apply" in applied.stderr and f"is owned as {host}" in applied.stderr
    records = fw.records()
    assert {records[k] for k in names if k[0] != "FirewallAlias"} == {rule, rule_2, host}
    assert records[("FirewallAlias", "office-nets")] == f"Office_Nets@{alias}"
    assert {k: v for k, v in records.items() if k not in names} == owned_before
    # Nothing was written: every object is still the one made by hand.
    assert set(fw.emu.state.list("rule")) == {rule, rule_2, *owned_before.values()}
    again = fazai("apply", str(fw.folder), "--state", str(fw.db), "--auto-approve")
    assert again.returncode == 0 and "owned as" not in again.stderr  # recorded once
    assert fw.records() == records

    # Prune, the imported documents gone: it reaches exactly those objects.
    (fw.folder / "imported.yaml").unlink()
    gone = fw.pruned([mine])
    deletes = {(i.kind, i.name) for i in only_item_list(fw.plan(gone)) if i.action is Action.DELETE}
    assert deletes == names
    assert [n.status for n in fw.apply(gone).nodes] == [NodeStatus.CONVERGED]
    assert fw.emu.state.list("host") == {}
    assert set(fw.emu.state.list("rule")) == set(owned_before.values())
    assert fw.records() == owned_before


def test_import_of_one_kind_and_refusals(firewall: Firewall) -> None:
    fw = firewall
    by_hand(fw, "alias", {"name": "lonely", "type": "host", "content": "192.0.2.1"})
    host = by_hand(fw, "host", {"hostname": "db", "domain": "example.internal",
                                "server": "10.0.10.7"})  # fmt: skip
    fw.state([])
    out = fazai("import", str(fw.folder), "--node", NODE, "--kind", "hostoverride")
    assert out.returncode == 0, out.stderr
    assert [(d["kind"], d["spec"]["adopt"]["uuid"]) for d in yaml.safe_load_all(out.stdout)] == [
        ("HostOverride", host)
    ]
    bad = fazai("import", str(fw.folder), "--node", NODE, "--kind", "Firewall")
    assert bad.returncode == 2 and "unknown kind Firewall" in bad.stderr
    missing = fazai("import", str(fw.folder), "--node", "nope")
    assert missing.returncode == 2 and "no Node named nope" in missing.stderr


def test_an_alias_adopted_by_uuid_must_be_the_alias_of_that_name(firewall: Firewall) -> None:
    fw = firewall
    hand = by_hand(fw, "alias", {"name": "office", "type": "host", "content": "192.0.2.1"})
    other = "0b7c1f0e-3c1a-4d7e-9a55-1d2b3c4d5e6f"
    alias = doc("FirewallAlias", "office", name="office", type="host",
                content=["192.0.2.2"], adopt={"uuid": other})  # fmt: skip
    item = only_item(fw.plan(fw.state([alias])))
    assert item.action is Action.ERROR
    assert item.error is not None and other in item.error and hand in item.error
    alias["spec"]["adopt"] = {"uuid": hand}
    state = fw.state([alias])
    item = only_item(fw.plan(state))
    assert (item.action, item.adopt) == (Action.UPDATE, f"office@{hand}")
    assert [n.status for n in fw.apply(state).nodes] == [NodeStatus.CONVERGED]
    assert fw.records() == {("FirewallAlias", "office"): f"office@{hand}"}
    assert list(fw.emu.state.list("alias")) == [hand]
