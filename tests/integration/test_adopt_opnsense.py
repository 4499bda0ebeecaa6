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
from controller.engine import prune, recorded
from controller.errors import InvalidInputError
from controller.model import kinds, loader
from controller.model.document import Document
from controller.model.state import DesiredState
from controller.output import plan_markdown, plan_text
from controller.plan import items as planitems
from controller.plan import plan_json
from controller.plan.diff import Action
from controller.providers.opnsense.kinds import FIREWALL_RULE
from controller.source.open import open_source
from controller.store import NodeStatus, StateStore
from controller.testing.opnsense import Drift, EmulatorServer
from tests.integration.firewallkit import firewall_node

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

    def plan(self, state: DesiredState) -> planitems.Plan:
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
        folder = tmp_path / "state"
        folder.mkdir()
        node = firewall_node(NODE, emu, tmp_path, monkeypatch)
        yield Firewall(emu, folder, node, tmp_path / "state.db")


@pytest.fixture
def firewall(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Firewall]:
    with emulated(tmp_path, monkeypatch) as fw:
        yield fw


def by_hand(fw: Firewall, kind: str, fields: dict[str, Any]) -> str:
    uuid = Drift(fw.emu.state).add(kind, fields)
    fw.emu.state.mark_applied(["alias", "filter", "unbound"])
    return uuid


def only_item(plan: planitems.Plan) -> planitems.PlanItem:
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


def only_item_list(plan: planitems.Plan) -> list[planitems.PlanItem]:
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


def refused(fw: Firewall, documents: list[dict[str, Any]]) -> list[str]:
    """The validate errors of ``documents`` (which must have some)."""
    with pytest.raises(InvalidInputError) as caught:
        fw.state(documents)
    return [str(d) for d in caught.value.diagnostics]


def rule_by_hand(fw: Firewall) -> str:
    return by_hand(fw, "rule", {"interface": "lan", "protocol": "TCP",
                                "destination_port": "22",
                                "description": "ops team ssh (managed elsewhere)"})  # fmt: skip


def test_a_deleting_document_cannot_name_an_object_fazai_does_not_own(firewall: Firewall) -> None:
    """state: absent with spec.adopt.uuid would delete a hand-made rule FazAI never owned:
    validate refuses it, apply refuses it, and the rule stays."""
    fw = firewall
    hand = rule_by_hand(fw)
    cleanup = doc("FirewallRule", "cleanup", interface="lan", state="absent",
                  adopt={"uuid": hand})  # fmt: skip
    (problem,) = refused(fw, [cleanup])
    assert "FirewallRule/cleanup" in problem and "not allowed with state: absent" in problem
    applied = fazai("apply", str(fw.folder), "--state", str(fw.db), "--auto-approve")
    assert applied.returncode == 2 and "not allowed with state: absent" in applied.stderr
    assert list(fw.emu.state.list("rule")) == [hand]
    assert [p for p in fw.posts() if "del" in p] == []


def test_a_deleting_document_that_skipped_validate_deletes_nothing(firewall: Firewall) -> None:
    """Defence in depth: the same document reaching the plan (here built by hand) is an
    error, never a delete."""
    fw = firewall
    hand = rule_by_hand(fw)
    state = fw.state([])
    spec = {"target": {"node": NODE}, "interface": "lan", "state": "absent",
            "adopt": {"uuid": hand}}  # fmt: skip
    rule = Document("FirewallRule", "cleanup", kinds.apply_defaults(FIREWALL_RULE, "x", spec))
    state = DesiredState(state.source, state.nodes, [rule], [])
    item = only_item(fw.plan(state))
    assert item.action is Action.ERROR and "state: absent" in str(item.error)
    assert [n.status for n in fw.apply(state).nodes] == [NodeStatus.FAILED]
    assert list(fw.emu.state.list("rule")) == [hand]


MX_1 = doc("HostOverride", "mx-primary", hostname="mail", domain="example.com", rr="MX",
           mx="mx1.example.com", mxprio=10)  # fmt: skip
MX_2 = doc("HostOverride", "mx-backup", hostname="mail", domain="example.com", rr="MX",
           mx="mx2.example.com", mxprio=20)  # fmt: skip


def test_several_mx_and_txt_records_of_one_name_are_several_overrides(firewall: Firewall) -> None:
    fw = firewall
    spf = doc("HostOverride", "spf", hostname="mail", domain="example.com", rr="TXT",
              txtdata="v=spf1 -all")  # fmt: skip
    verify = doc("HostOverride", "verify", hostname="mail", domain="example.com", rr="TXT",
                 txtdata="google-site-verification=x")  # fmt: skip
    state = fw.state([MX_1, MX_2, spf, verify])
    plan = fw.plan(state)
    assert [(i.action, i.adopt) for i in only_item_list(plan)] == [(Action.CREATE, None)] * 4
    assert [n.status for n in fw.apply(state).nodes] == [NodeStatus.CONVERGED]
    assert sorted((h["mx"], h["txtdata"]) for h in fw.hosts().values()) == [
        ("", "google-site-verification=x"), ("", "v=spf1 -all"),
        ("mx1.example.com", ""), ("mx2.example.com", ""),
    ]  # fmt: skip
    assert all(i.action is Action.NOOP for i in only_item_list(fw.plan(state)))


def test_a_backup_mx_beside_a_hand_made_primary_is_created_not_adopted(firewall: Firewall) -> None:
    fw = firewall
    primary = by_hand(fw, "host", {"hostname": "mail", "domain": "example.com", "rr": "MX",
                                   "mx": "mx1.example.com", "mxprio": "10"})  # fmt: skip
    state = fw.state([MX_2])
    assert (only_item(fw.plan(state)).action, only_item(fw.plan(state)).adopt) == (
        Action.CREATE, None
    )  # fmt: skip
    fw.apply(state)
    hosts = fw.hosts()
    assert hosts[primary]["mx"] == "mx1.example.com"  # the primary MX is untouched
    assert sorted(h["mx"] for h in hosts.values()) == ["mx1.example.com", "mx2.example.com"]
    # The same mail host is that very override: adopted, its priority changed in place.
    again = doc("HostOverride", "mx-primary", hostname="mail", domain="example.com", rr="MX",
                mx="MX1.example.com", mxprio=5)  # fmt: skip
    items = {i.name: (i.action, i.adopt) for i in only_item_list(fw.plan(fw.state([again, MX_2])))}
    assert items == {"mx-primary": (Action.UPDATE, primary), "mx-backup": (Action.NOOP, None)}


def test_a_document_adopting_another_document_s_object_is_refused(firewall: Firewall) -> None:
    """The reviewer's s2: `sneaky` adopting the uuid FazAI derives for `allow-dns`."""
    fw = firewall
    dns = doc("FirewallRule", "allow-dns", interface="lan", protocol="UDP",
              destination={"net": "10.0.0.53", "port": 53}, description="dns")  # fmt: skip
    fw.apply(fw.state([dns]))
    (made,) = fw.emu.state.list("rule")
    sneaky = doc("FirewallRule", "sneaky", interface="wan", protocol="TCP",
                 destination={"port": 23}, description="telnet",
                 adopt={"uuid": made})  # fmt: skip
    (problem,) = refused(fw, [dns, sneaky])
    assert "FirewallRule/sneaky" in problem and "conflicts with FirewallRule/allow-dns" in problem
    assert f"both bind the same firewall object (uuid {made})" in problem
    (first,) = refused(fw, [sneaky, dns])  # the adopter is in error, wherever it stands
    assert "FirewallRule/sneaky" in first and "conflicts with FirewallRule/allow-dns" in first


def test_two_documents_resolving_to_one_override_at_plan_time_are_errors(
    firewall: Firewall,
) -> None:
    """What only the live firewall shows: one document names the hand-made override by
    uuid, another finds that same override by its key. Both are errors; nothing is
    written."""
    fw = firewall
    hand = by_hand(fw, "host", {"hostname": "app", "domain": "example.internal",
                                "server": "10.0.10.99"})  # fmt: skip
    named = doc("HostOverride", "named", hostname="web", domain="example.internal",
                server="10.0.10.7", adopt={"uuid": hand})  # fmt: skip
    state = fw.state([named, APP])
    items = only_item_list(fw.plan(state))
    assert [i.action for i in items] == [Action.ERROR, Action.ERROR]
    assert all(hand in str(i.error) for i in items)
    before = fw.posts()
    assert [n.status for n in fw.apply(state).nodes] == [NodeStatus.FAILED]
    assert fw.posts() == before
    assert fw.hosts()[hand]["hostname"] == "app"


def test_renaming_an_override_with_prune_never_deletes_it(firewall: Firewall) -> None:
    """The reviewer's s3: app renamed app-renamed, prune on. Found by its key alone, the
    plan is an error that says how to hand the override over (nothing deleted); bound by
    spec.adopt.uuid, prune hands the record over and the plan is in sync."""
    fw = firewall
    fw.apply(fw.state([APP]))
    (made,) = fw.hosts()
    renamed = json.loads(json.dumps(APP))
    renamed["metadata"]["name"] = "app-renamed"
    state = fw.pruned([renamed])
    items = {i.name: i for i in only_item_list(fw.plan(state))}
    assert {n: i.action for n, i in items.items()} == {"app": Action.ERROR,
                                                       "app-renamed": Action.ERROR}  # fmt: skip
    assert f"spec.adopt.uuid: {made}" in str(items["app-renamed"].error)
    assert [n.status for n in fw.apply(state).nodes] == [NodeStatus.FAILED]
    assert list(fw.hosts()) == [made]
    assert fw.records() == {("HostOverride", "app"): made}

    renamed["spec"]["adopt"] = {"uuid": made}
    result = apply_pruned(fw, [renamed])
    assert [n.status for n in result.nodes] == [NodeStatus.CONVERGED]
    assert list(fw.hosts()) == [made]
    assert fw.records() == {("HostOverride", "app-renamed"): made}
    assert [i.action for i in only_item_list(fw.plan(fw.pruned([renamed])))] == [Action.NOOP]


def test_renaming_an_adopted_rule_with_prune_hands_it_over(firewall: Firewall) -> None:
    """The reviewer's s7: an imported rule's document renamed keeps its spec.adopt.uuid."""
    fw = firewall
    hand = by_hand(fw, "rule", {"interface": "lan", "protocol": "TCP",
                                "destination_port": "443", "description": "https"})  # fmt: skip
    https = doc("FirewallRule", "https", interface="lan", protocol="TCP",
                destination={"port": 443}, description="https", adopt={"uuid": hand})  # fmt: skip
    fw.apply(fw.state([https]))
    assert fw.records() == {("FirewallRule", "https"): hand}
    renamed = json.loads(json.dumps(https))
    renamed["metadata"]["name"] = "allow-https"
    state = fw.pruned([renamed])
    assert [(i.name, i.action) for i in only_item_list(fw.plan(state))] == [
        ("allow-https", Action.NOOP)
    ]
    result = apply_pruned(fw, [renamed])
    assert [n.status for n in result.nodes] == [NodeStatus.CONVERGED]
    assert list(fw.emu.state.list("rule")) == [hand]
    assert fw.records() == {("FirewallRule", "allow-https"): hand}


def apply_pruned(fw: Firewall, documents: list[dict[str, Any]]) -> applying.ApplyResult:
    """An apply with prune, as the CLI runs it: the handovers are carried out."""
    state = fw.state(documents)
    with StateStore(fw.db) as store:
        pruning = prune.plan(state, {NODE: store.owned(NODE)}, [NODE])
        plan = fw.plan(pruning.state)
        result = asyncio.run(applying.apply(pruning.state, plan, store))
        succeeded = {n.node for n in result.nodes if n.status is NodeStatus.CONVERGED}
        prune.release(store, pruning.releases, succeeded)
    return result


def test_import_leaves_out_what_fazai_owns_already(firewall: Firewall) -> None:
    """The reviewer's s7/s13: a document removed with prune off leaves its objects owned;
    import must not write a second, adopting document for them (two owners: prune of one
    deletes the other's object)."""
    fw = firewall
    mine = doc("FirewallRule", "owned-by-fazai", interface="lan", protocol="TCP",
               destination={"port": 8443}, description="mine")  # fmt: skip
    web = doc("HostOverride", "web", hostname="web", domain="example.internal",
              server="10.0.10.8")  # fmt: skip
    office = doc("FirewallAlias", "office", name="office", type="host", content=["192.0.2.1"])
    fw.apply(fw.state([mine, web, office]))
    hand = by_hand(fw, "host", {"hostname": "db", "domain": "example.internal",
                                "server": "10.0.10.7"})  # fmt: skip
    fw.state([])
    out = fazai("import", str(fw.folder), "--node", NODE, "--state", str(fw.db))
    assert out.returncode == 0, out.stderr
    assert [d["spec"]["adopt"]["uuid"] for d in yaml.safe_load_all(out.stdout)] == [hand]
    for owned in ("FirewallRule/owned-by-fazai", "HostOverride/web", "FirewallAlias/office"):
        assert f"FazAI owns it already as {owned}" in " ".join(out.stderr.split())
    missing = fazai("import", str(fw.folder), "--node", NODE, "--state", str(fw.db) + "x")
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert not Path(str(fw.db) + "x").exists()


def test_import_emits_only_documents_that_validate(firewall: Firewall) -> None:
    """A floating rule on no interface has no document FazAI accepts: left out with a
    line naming it and why; the rest of the import is saved and validates."""
    fw = firewall
    floating = by_hand(fw, "rule", {"interface": "", "protocol": "TCP",
                                    "destination_port": "25",
                                    "description": "floating smtp"})  # fmt: skip
    host = by_hand(fw, "host", {"hostname": "db", "domain": "example.internal",
                                "server": "10.0.10.7"})  # fmt: skip
    fw.state([])
    with StateStore(fw.db):
        pass  # an empty inventory
    out = fazai("import", str(fw.folder), "--node", NODE, "--state", str(fw.db))
    assert out.returncode == 0, out.stderr
    imported = list(yaml.safe_load_all(out.stdout))
    assert [d["spec"]["adopt"]["uuid"] for d in imported] == [host]
    said = " ".join(out.stderr.split())
    assert f"({floating})" in said and "would not validate" in said and "interface" in said
    (fw.folder / "imported.yaml").write_text(out.stdout)
    checked = fazai("validate", str(fw.folder))
    assert checked.returncode == 0, checked.stderr


def plan_recorded(fw: Firewall, documents: list[dict[str, Any]]) -> planitems.Plan:
    """A plan as the CLI and serve make it: documents bound to what FazAI owns."""
    state = fw.state(documents)
    with StateStore(fw.db) as store:
        return fw.plan(recorded.bind(state, {NODE: store.owned(NODE)}))


def apply_recorded(fw: Firewall, documents: list[dict[str, Any]]) -> applying.ApplyResult:
    state = fw.state(documents)
    with StateStore(fw.db) as store:
        bound = recorded.bind(state, {NODE: store.owned(NODE)})
        return asyncio.run(applying.apply(bound, fw.plan(bound), store))


def test_an_adopted_override_whose_key_moves_never_takes_over_another(
    firewall: Firewall,
) -> None:
    """The reviewer's s14: `app` adopted by its key, then its hostname changed to `db`,
    which a hand-made override has. It stays bound to the override FazAI owns: that
    update would make two `db` records, a plan error, and nothing is written."""
    fw = firewall
    app = by_hand(fw, "host", {"hostname": "app", "domain": "ex.internal",
                               "server": "10.0.0.1"})  # fmt: skip
    db = by_hand(fw, "host", {"hostname": "db", "domain": "ex.internal", "server": "10.0.0.2",
                              "description": "db by hand"})  # fmt: skip
    document = doc("HostOverride", "app", hostname="app", domain="ex.internal",
                   server="10.0.0.9")  # fmt: skip
    apply_recorded(fw, [document])
    assert fw.records() == {("HostOverride", "app"): app}
    document["spec"]["hostname"] = "db"
    item = only_item(plan_recorded(fw, [document]))
    assert item.action is Action.ERROR and app in str(item.error) and db in str(item.error)
    before = fw.posts()
    assert [n.status for n in apply_recorded(fw, [document]).nodes] == [NodeStatus.FAILED]
    assert fw.posts() == before
    assert fw.hosts()[db]["description"] == "db by hand"
    # A free name: the owned override is renamed in place, no second one appears.
    document["spec"]["hostname"] = "api"
    assert [n.status for n in apply_recorded(fw, [document]).nodes] == [NodeStatus.CONVERGED]
    assert {u: h["hostname"] for u, h in fw.hosts().items()} == {app: "api", db: "db"}
    assert fw.records() == {("HostOverride", "app"): app}


def test_a_rule_document_that_drops_spec_adopt_keeps_its_rule(firewall: Firewall) -> None:
    """Removing spec.adopt from an adopted rule's document updates that rule; it does not
    create a second one at the derived uuid."""
    fw = firewall
    hand = rule_by_hand(fw)
    rule = doc("FirewallRule", "ssh", interface="lan", protocol="TCP",
               destination={"port": 22}, description="ssh", adopt={"uuid": hand})  # fmt: skip
    apply_recorded(fw, [rule])
    del rule["spec"]["adopt"]
    rule["spec"]["description"] = "ssh, documented"
    item = only_item(plan_recorded(fw, [rule]))
    assert item.action is Action.UPDATE
    assert [n.status for n in apply_recorded(fw, [rule]).nodes] == [NodeStatus.CONVERGED]
    rules = fw.emu.state.list("rule")
    assert list(rules) == [hand] and rules[hand]["description"] == "ssh, documented"
    assert fw.records() == {("FirewallRule", "ssh"): hand}


def test_the_cli_plan_binds_documents_to_what_fazai_owns(firewall: Firewall) -> None:
    fw = firewall
    hand = rule_by_hand(fw)
    rule = doc("FirewallRule", "ssh", interface="lan", protocol="TCP",
               destination={"port": 22}, description="ssh", adopt={"uuid": hand})  # fmt: skip
    apply_recorded(fw, [rule])
    del rule["spec"]["adopt"]
    fw.state([rule])
    planned = fazai("plan", str(fw.folder), "--state", str(fw.db), "--output", "json")
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert json.loads(planned.stdout)["changes"] == []  # in sync: no second rule
