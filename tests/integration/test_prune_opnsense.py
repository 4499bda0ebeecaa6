"""Prune on a firewall, end to end: the inventory, the plan, the transaction, the store.

Against the OPNsense emulator over real HTTPS, through the engine the CLI drives (plan,
then apply with a real state store): FazAI deletes the rule and the alias it created and
no document describes any more, rules before the aliases they use; what was made by hand
is listed as unmanaged and never touched; a failure during the deletes rolls the
firewall back to the snapshot exactly.
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

import pytest
import yaml

from controller.engine import apply as applying
from controller.engine import plan as planning
from controller.engine import prune
from controller.model.state import DesiredState
from controller.pipeline import source
from controller.plan import items as planitems
from controller.plan.diff import Action, compare
from controller.providers.base import Change
from controller.providers.opnsense.apply import AliasInUseError, StalePlanError
from controller.providers.opnsense.identity import object_uuid
from controller.providers.opnsense.provider import OpnsenseProvider
from controller.source.open import open_source
from controller.store import NodeStatus, StateStore
from controller.testing.opnsense import Drift, EmulatorServer
from tests.integration.firewallkit import firewall_node

NODE = "edge-fw"
VERSIONS = ["24.7", "26.1", "26.7"]  # with the dead-man timer up to 26.1, without after


def doc(kind: str, doc_name: str, /, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "fazai.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": doc_name},
        "spec": {"target": {"node": NODE}, **spec},
    }


KEEP: list[dict[str, Any]] = [
    doc("FirewallAlias", "web-servers", name="web_servers", type="host",
        content=["10.0.10.11", "10.0.10.12"]),
    doc("FirewallRule", "allow-web", interface="lan", protocol="TCP",
        destination={"net": "web_servers", "port": 443}, sequence=100),
]  # fmt: skip
GONE: list[dict[str, Any]] = [
    doc("FirewallAlias", "old-hosts", name="old_hosts", type="host", content=["192.0.2.7"]),
    doc("FirewallRule", "block-old", action="block", interface="wan",
        source={"net": "old_hosts"}, sequence=200),
]  # fmt: skip
# An alias no rule uses, so that a person can delete it by hand.
LONE_ALIAS = doc("FirewallAlias", "old-hosts", name="old_hosts", type="host", content=["192.0.2.7"])
BLOCK_OLD = object_uuid(NODE, "FirewallRule", "block-old")
OWN_RULES = {
    "apiVersion": "fazai.dev/v1alpha1",
    "kind": "Policy",
    "metadata": {"name": "test-rules"},
    "spec": {
        "match": {"kinds": ["FirewallRule"]},
        "rules": [{"name": "own-rules", "effect": "allow", "expression": "true",
                   "message": "this test's rules", "reason": "the emulator is the test's own",
                   "overrides": ["fazai-firewall-rules/rule-delete-needs-approval",
                                 "fazai-firewall-rules/block-on-controller-interface"]}],
    },
}  # fmt: skip
ALLOW_WEB = object_uuid(NODE, "FirewallRule", "allow-web")


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
        return source.load(open_source(str(self.folder)))  # Policy documents known too

    def items(self) -> dict[str, Any]:
        state = self.emu.state
        kinds = ("alias", "rule", "host")
        return {
            "items": {k: state.list(k) for k in kinds},
            "applied": {k: state.applied_items(k) for k in kinds},
        }

    def aliases(self) -> set[str]:
        return {i["name"] for i in self.emu.state.list("alias").values()}

    def posts(self) -> list[str]:
        return [r.path.removeprefix("/api/") for r in self.emu.requests if r.method == "POST"]

    def pruned(self, documents: list[dict[str, Any]]) -> tuple[DesiredState, prune.Pruning]:
        state = self.state(documents)
        with StateStore(self.db) as store:
            owned = {NODE: store.owned(NODE)}
        pruning = prune.plan(state, owned, [NODE])
        return pruning.state, pruning

    def plan(self, state: DesiredState, unmanaged: bool = False) -> planitems.Plan:
        return asyncio.run(planning.build(state, show_unmanaged=unmanaged))

    def apply(self, state: DesiredState) -> applying.ApplyResult:
        plan = self.plan(state)
        assert not plan.has_errors, [i.error for n in plan.nodes for i in n.items if i.error]
        with StateStore(self.db) as store:
            return asyncio.run(applying.apply(state, plan, store))

    def owned(self) -> set[tuple[str, str]]:
        with StateStore(self.db) as store:
            return {(o.kind, o.name) for o in store.owned(NODE)}

    def records(self) -> dict[tuple[str, str], str]:
        """The inventory: (kind, name) -> the platform id apply recorded."""
        with StateStore(self.db) as store:
            return {(o.kind, o.name): o.platform_id for o in store.owned(NODE)}

    def alias_uuid(self, name: str) -> str:
        (uuid,) = [u for u, i in self.emu.state.list("alias").items() if i["name"] == name]
        return uuid


@contextlib.contextmanager
def emulated(version: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Firewall]:
    with EmulatorServer(version=version, tls=True) as emu:
        folder = tmp_path / "state"
        folder.mkdir()
        node = firewall_node(NODE, emu, tmp_path, monkeypatch)
        fw = Firewall(emu, folder, node, tmp_path / "state.db")
        # Made by hand: an alias, and a rule that uses it. FazAI never owns them.
        hand = Drift(emu.state)
        hand.add("alias", {"name": "hand_made", "type": "network", "content": "10.8.0.0/16"})
        hand.add("rule", {"interface": "lan", "source_net": "hand_made", "description": "hand"})
        emu.state.mark_applied(["alias", "filter"])  # and live, as after Apply in the UI
        yield fw


@pytest.fixture(params=VERSIONS)
def firewall(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Firewall]:
    with emulated(request.param, tmp_path, monkeypatch) as fw:
        yield fw


def converged(result: applying.ApplyResult) -> bool:
    return [(n.node, n.status) for n in result.nodes] == [(NODE, NodeStatus.CONVERGED)]


def test_prune_deletes_the_owned_rule_and_alias_and_nothing_else(firewall: Firewall) -> None:
    fw = firewall
    assert converged(fw.apply(fw.state([*KEEP, *GONE])))
    assert fw.owned() == {
        ("FirewallAlias", "web-servers"),
        ("FirewallAlias", "old-hosts"),
        ("FirewallRule", "allow-web"),
        ("FirewallRule", "block-old"),
    }
    hand_rules = {u: i for u, i in fw.emu.state.list("rule").items() if i["description"] == "hand"}
    (hand_rule,) = hand_rules

    # Without prune, removing documents deletes nothing.
    plain = fw.plan(fw.state(KEEP))
    assert not plain.has_changes and not plain.has_errors

    state, pruning = fw.pruned(KEEP)
    assert pruning.notes == () and pruning.releases == ()
    plan = fw.plan(state)
    changes = [(i.kind, i.name, i.action) for n in plan.nodes for i in n.changed]
    assert sorted(changes) == [
        ("FirewallAlias", "old-hosts", Action.DELETE),
        ("FirewallRule", "block-old", Action.DELETE),
    ]
    # What no document and no inventory entry names shows only with --show-unmanaged.
    listed = fw.plan(state, unmanaged=True)
    unmanaged = {
        (i.kind, i.name) for n in listed.nodes for i in n.items if i.action is Action.UNMANAGED
    }
    assert unmanaged == {
        ("FirewallAlias", "hand_made"),
        ("FirewallRule", f"hand ({hand_rule})"),
    }
    assert not any(i.action is Action.UNMANAGED for n in plan.nodes for i in n.items)

    fw.emu.requests.clear()
    assert converged(fw.apply(state))
    assert fw.aliases() == {"web_servers", "hand_made"}
    rules = fw.emu.state.list("rule")
    assert set(rules) == {ALLOW_WEB, hand_rule}
    assert rules[hand_rule] == hand_rules[hand_rule]  # untouched, field for field
    assert fw.emu.state.applied_items("rule") == rules  # and live
    posts = fw.posts()
    rule_delete = posts.index(f"firewall/filter/delRule/{BLOCK_OLD}")
    alias_delete = next(i for i, p in enumerate(posts) if p.startswith("firewall/alias/delItem/"))
    assert rule_delete < alias_delete  # the rule that used old_hosts goes first
    assert sum(p.startswith("firewall/alias/delItem/") for p in posts) == 1
    assert fw.owned() == {("FirewallAlias", "web-servers"), ("FirewallRule", "allow-web")}

    # In sync afterwards; the next prune has nothing left to do.
    state, pruning = fw.pruned(KEEP)
    after = fw.plan(state)
    assert not after.has_changes and not after.has_errors
    assert pruning.state.resources == state.resources


@pytest.mark.parametrize("failing", [r"/firewall/alias/delItem/", r"/firewall/filter/delRule/"])
def test_a_5xx_during_the_deletes_rolls_back_to_the_snapshot_exactly(
    failing: str, firewall: Firewall
) -> None:
    fw = firewall
    assert converged(fw.apply(fw.state([*KEEP, *GONE])))
    before = fw.items()
    owned = fw.owned()
    state, _ = fw.pruned(KEEP)
    fw.emu.faults.fail(503, path=failing, method="POST")
    fw.emu.requests.clear()
    result = fw.apply(state)
    (outcome,) = result.nodes
    assert outcome.status is NodeStatus.ROLLED_BACK, outcome.message
    assert "503" in outcome.message
    if "alias" in failing:
        # The rule delete had landed: the rollback had something to undo.
        assert f"firewall/filter/delRule/{BLOCK_OLD}" in fw.posts()
    assert fw.emu.requests.count("POST", r"/core/backup/revertBackup/") == 1
    assert fw.items() == before
    assert fw.owned() == owned  # a rolled-back delete keeps the ownership
    if fw.emu.version in ("24.7", "26.1"):
        assert fw.emu.rollback.armed is None
    # And the next apply, without the fault, finishes the job.
    fw.emu.faults.clear()
    assert converged(fw.apply(state))
    assert fw.aliases() == {"web_servers", "hand_made"}


@pytest.mark.parametrize("version", ["26.1"])
def test_a_pruned_alias_a_hand_made_rule_uses_is_refused_at_plan_time(
    version: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with emulated(version, tmp_path, monkeypatch) as fw:
        assert converged(fw.apply(fw.state([*KEEP, *GONE])))
        # Someone points a rule of their own at FazAI's alias.
        extra = Drift(fw.emu.state).add("rule", {"interface": "wan", "source_net": "old_hosts"})
        before = fw.items()
        state, _ = fw.pruned(KEEP)
        plan = fw.plan(state)
        (item,) = [i for n in plan.nodes for i in n.items if i.error]
        assert (item.kind, item.name, item.action) == ("FirewallAlias", "old-hosts", Action.ERROR)
        assert item.error == (
            f"cannot delete alias 'old_hosts': still used by rule {extra} on the firewall; "
            "remove those uses first (or delete them in the same apply)"
        )
        assert plan.exit_code == 2
        assert fw.items() == before


@pytest.mark.parametrize("version", ["24.7", "26.7"])
async def test_a_use_appearing_after_the_plan_is_refused_before_any_write(
    version: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with emulated(version, tmp_path, monkeypatch) as fw:
        await asyncio.to_thread(lambda: converged(fw.apply(fw.state([*KEEP, *GONE]))))
        state, _ = fw.pruned(KEEP)
        provider = OpnsenseProvider()
        resources = state.resources_for(NODE)
        observed = await provider.observe(state.nodes[NODE], resources, state.source)
        changes = [
            Change(d.kind, d.name, action.value, d, observed.resources[d])
            for d in resources
            for action in [compare(observed.resources[d])[0]]
            if action is not Action.NOOP
        ]
        assert sorted(c.name for c in changes) == ["block-old", "old-hosts"]
        # Between the plan and the apply, a hand-made alias starts to nest FazAI's.
        Drift(fw.emu.state).add("alias", {"name": "all_old", "type": "host",
                                          "content": "old_hosts\n10.9.9.9"})  # fmt: skip
        fw.emu.requests.clear()
        async with provider.transaction(state.nodes[NODE], changes) as txn:
            with pytest.raises(AliasInUseError, match="still used by alias 'all_old'"):
                await txn.snapshot()
        assert fw.emu.requests.count("POST") == 0


def test_the_cli_prunes_and_lists_hand_made_objects_only_on_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with emulated("26.7", tmp_path, monkeypatch) as fw:
        folder = str(fw.folder)
        # Creating a block rule and deleting a rule need a second person by default: this
        # repository lifts that, with its reason, as a user would to run such a change.
        (fw.folder / "policies.yaml").write_text(yaml.safe_dump(OWN_RULES, sort_keys=False))
        fw.state([*KEEP, *GONE])
        first = fazai("apply", folder, "--state", str(fw.db), "--auto-approve")
        assert first.returncode == 0, first.stderr
        fw.state(KEEP)
        planned = fazai("plan", folder, "--state", str(fw.db), "--prune", "-o", "json")
        assert planned.returncode == 1, planned.stderr
        changes = json.loads(planned.stdout)["changes"]
        assert sorted((c["kind"], c["name"], c["action"]) for c in changes) == [
            ("FirewallAlias", "old-hosts", "delete"),
            ("FirewallRule", "block-old", "delete"),
        ]
        listed = fazai("plan", folder, "--state", str(fw.db), "--show-unmanaged", "-o", "json")
        names = {(c["kind"], c["action"]) for c in json.loads(listed.stdout)["changes"]}
        assert ("FirewallAlias", "unmanaged") in names
        assert all(action != "delete" for _, action in names)
        applied = fazai("apply", folder, "--state", str(fw.db), "--prune", "--auto-approve")
        assert applied.returncode == 0, applied.stderr
        assert fw.aliases() == {"web_servers", "hand_made"}
        assert BLOCK_OLD not in fw.emu.state.list("rule")
        assert len(fw.emu.state.list("rule")) == 2


# -- what the inventory records, and what prune reaches by it ---------------------------


@pytest.mark.parametrize("version", ["24.7", "26.7"])
def test_apply_records_the_uuid_of_each_object_it_wrote(
    version: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with emulated(version, tmp_path, monkeypatch) as fw:
        assert converged(fw.apply(fw.state([*KEEP, *GONE])))
        web, old = fw.alias_uuid("web_servers"), fw.alias_uuid("old_hosts")
        assert fw.records() == {
            ("FirewallAlias", "web-servers"): f"web_servers@{web}",
            ("FirewallAlias", "old-hosts"): f"old_hosts@{old}",
            ("FirewallRule", "allow-web"): ALLOW_WEB,
            ("FirewallRule", "block-old"): BLOCK_OLD,
        }
        # An update (setItem at the uuid it has) records the same object again.
        changed = [doc("FirewallAlias", "web-servers", name="web_servers", type="host",
                       content=["10.0.10.11"]), *KEEP[1:], *GONE]  # fmt: skip
        assert converged(fw.apply(fw.state(changed)))
        assert fw.records()[("FirewallAlias", "web-servers")] == f"web_servers@{web}"


def test_an_alias_made_again_by_hand_under_its_name_is_not_pruned(firewall: Firewall) -> None:
    fw = firewall
    assert converged(fw.apply(fw.state([*KEEP, LONE_ALIAS])))
    ours = fw.alias_uuid("old_hosts")
    # A person deletes FazAI's alias, then makes one of their own under the same name.
    hand = Drift(fw.emu.state)
    hand.remove("alias", ours)
    theirs = hand.add("alias", {"name": "old_hosts", "type": "network", "content": "10.66.0.0/16"})
    fw.emu.state.mark_applied(["alias"])
    theirs_before = fw.emu.state.list("alias")[theirs]

    state, pruning = fw.pruned(KEEP)
    assert pruning.notes == ()
    plan = fw.plan(state)
    assert not plan.has_changes and not plan.has_errors  # FazAI's alias is gone already
    listed = fw.plan(state, unmanaged=True)
    unmanaged = {
        (i.kind, i.name) for n in listed.nodes for i in n.items if i.action is Action.UNMANAGED
    }
    assert ("FirewallAlias", "old_hosts") in unmanaged  # theirs: listed, never touched

    fw.emu.requests.clear()
    assert converged(fw.apply(state))
    assert not any(p.startswith("firewall/alias/delItem/") for p in fw.posts())
    assert fw.emu.state.list("alias")[theirs] == theirs_before


@pytest.mark.parametrize("version", ["26.1"])
async def test_an_alias_replaced_between_plan_and_apply_is_not_deleted(
    version: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with emulated(version, tmp_path, monkeypatch) as fw:
        await asyncio.to_thread(lambda: converged(fw.apply(fw.state([*KEEP, LONE_ALIAS]))))
        state, _ = fw.pruned(KEEP)
        provider = OpnsenseProvider()
        resources = state.resources_for(NODE)
        observed = await provider.observe(state.nodes[NODE], resources, state.source)
        changes = [
            Change(d.kind, d.name, action.value, d, observed.resources[d])
            for d in resources
            for action in [compare(observed.resources[d])[0]]
            if action is not Action.NOOP
        ]
        assert [(c.name, c.action) for c in changes] == [("old-hosts", "delete")]
        # Between the plan and the apply, the alias is deleted and made again, with the
        # same content even: the plan's delete must not reach the new one.
        hand = Drift(fw.emu.state)
        hand.remove("alias", fw.alias_uuid("old_hosts"))
        theirs = hand.add("alias", {"name": "old_hosts", "type": "host", "content": "192.0.2.7"})
        fw.emu.requests.clear()
        async with provider.transaction(state.nodes[NODE], changes) as txn:
            with pytest.raises(StalePlanError, match="FirewallAlias/old-hosts"):
                await txn.snapshot()
        assert fw.emu.requests.count("POST") == 0
        assert theirs in fw.emu.state.list("alias")


def test_records_of_before_holding_names_only_still_prune(firewall: Firewall) -> None:
    fw = firewall
    assert converged(fw.apply(fw.state([*KEEP, *GONE])))
    with StateStore(fw.db) as store:  # as an earlier FazAI recorded them
        store.own(NODE, "FirewallAlias", "old-hosts", "old_hosts", None)
        store.own(NODE, "FirewallRule", "block-old", "block-old", None)
    state, pruning = fw.pruned(KEEP)
    assert pruning.notes == ()
    plan = fw.plan(state)
    assert sorted((i.kind, i.name, i.action) for n in plan.nodes for i in n.changed) == [
        ("FirewallAlias", "old-hosts", Action.DELETE),
        ("FirewallRule", "block-old", Action.DELETE),
    ]
    assert converged(fw.apply(state))
    assert fw.aliases() == {"web_servers", "hand_made"}
    assert BLOCK_OLD not in fw.emu.state.list("rule")


def fazai(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from controller.cli import run; run()", *args],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
