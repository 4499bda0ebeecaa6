"""Apply against the OPNsense emulator over real HTTPS: the transaction end to end.

Releases 24.7 and 26.1 have the filter rollback API (savepoint, apply/{revision}, the
60 s dead-man timer); 26.7 has none. Every test drives ``OpnsenseTransaction`` the way
the engine will: snapshot -> write -> verify -> commit, or rollback(snapshot).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.errors import ApiError, NodeError, ServerError, UnreachableError
from controller.model import loader
from controller.model.state import DesiredState
from controller.plan.diff import Action, Observed, compare
from controller.providers.base import Change, Intent, Observation
from controller.providers.opnsense.apply import (
    LockoutError,
    OpnsenseTransaction,
    RefusedByFirewallError,
)
from controller.providers.opnsense.identity import object_uuid
from controller.providers.opnsense.provider import OpnsenseProvider
from controller.source.open import open_source
from controller.testing.opnsense import EmulatorServer
from tests.integration.firewallkit import firewall_node

NODE = "edge-fw"
WITH_TIMER = ["24.7", "26.1"]
VERSIONS = ["24.7", "26.1", "26.7"]
PROVIDER = OpnsenseProvider()


# -- helpers ---------------------------------------------------------------------------


@dataclass
class MemoryJournal:
    """A StepJournal kept in memory: (kind, name, action, payload, status, message)."""

    steps: list[dict[str, Any]] = field(default_factory=list)

    def intend(self, kind: str, name: str, action: str, payload: Mapping[str, Any]) -> int:
        json.dumps(payload)  # the store needs JSON
        self.steps.append(
            {"kind": kind, "name": name, "action": action, "payload": payload, "status": "intended"}
        )
        return len(self.steps) - 1

    def done(self, step: int) -> None:
        assert self.steps[step]["status"] == "intended"
        self.steps[step]["status"] = "done"

    def intend_many(self, intents: Sequence[Intent]) -> list[int]:
        return [self.intend(i.kind, i.name, i.action, i.payload) for i in intents]

    def done_many(self, steps: Sequence[int]) -> None:
        for step in steps:
            self.done(step)

    def failed(self, step: int, message: str) -> None:
        assert self.steps[step]["status"] == "intended"
        self.steps[step]["status"] = "failed"
        self.steps[step]["message"] = message


def doc(kind: str, doc_name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "fazai.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": doc_name},
        "spec": {"target": {"node": NODE}, **spec},
    }


BASE: list[dict[str, Any]] = [
    doc("FirewallAlias", "web-servers", name="web_servers", type="host",
        content=["10.0.10.11", "10.0.10.12"], description="Web tier"),
    doc("FirewallAlias", "https-ports", name="https_ports", type="port", content=["443", "8443"]),
    doc("FirewallAlias", "old-hosts", name="old_hosts", type="host", content=["192.0.2.7"]),
    doc("FirewallRule", "allow-https", interface="lan", protocol="TCP",
        destination={"net": "web_servers", "port": "https_ports"}, sequence=100, log=True,
        description="HTTPS to the web tier"),
    doc("FirewallRule", "block-old", action="block", interface="wan",
        source={"net": "old_hosts"}, sequence=200),
    doc("HostOverride", "www", hostname="www", domain="example.net", server="10.0.10.11"),
    doc("HostOverride", "mail", hostname="mail", domain="example.net", server="10.0.10.20"),
]  # fmt: skip

# The second generation: updates, creates, and (by leaving them out) prunes of block-old,
# old_hosts (which only block-old uses) and the mail override.
NEXT: list[dict[str, Any]] = [
    doc("FirewallAlias", "web-servers", name="web_servers", type="host",
        content=["10.0.10.11", "10.0.10.13"], description="Web tier"),
    doc("FirewallAlias", "https-ports", name="https_ports", type="port", content=["443", "8443"]),
    doc("FirewallAlias", "dns-servers", name="dns_servers", type="host", content=["10.0.0.53"]),
    doc("FirewallRule", "allow-https", interface="lan", protocol="TCP",
        destination={"net": "web_servers", "port": "https_ports"}, sequence=100, log=False,
        description="HTTPS to the web tier"),
    doc("FirewallRule", "allow-dns", interface="lan", protocol="UDP",
        destination={"net": "dns_servers", "port": 53}, sequence=150),
    doc("HostOverride", "www", hostname="www", domain="example.net", server="10.0.10.13"),
]  # fmt: skip
PRUNED = [("FirewallRule", "block-old"), ("FirewallAlias", "old-hosts"), ("HostOverride", "mail")]


@dataclass
class Firewall:
    emu: EmulatorServer
    folder: Path
    node_doc: dict[str, Any]

    def state(self, documents: list[dict[str, Any]]) -> DesiredState:
        path = self.folder / "fw.yaml"
        path.write_text(yaml.safe_dump_all([self.node_doc, *documents], sort_keys=False))
        return loader.load(open_source(str(self.folder)))

    def items(self) -> dict[str, Any]:
        """Everything the transaction may touch, saved and live."""
        state = self.emu.state
        kinds = ("alias", "rule", "host")
        return {
            "items": {k: state.list(k) for k in kinds},
            "applied": {k: state.applied_items(k) for k in kinds},
        }


@contextlib.contextmanager
def emulated(
    version: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rollback_seconds: float = 60.0
) -> Iterator[Firewall]:
    with EmulatorServer(version=version, tls=True, rollback_seconds=rollback_seconds) as emu:
        folder = tmp_path / "state"
        folder.mkdir()
        node = firewall_node(NODE, emu, tmp_path, monkeypatch)
        yield Firewall(emu, folder, node)


@pytest.fixture(params=VERSIONS)
def firewall(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Firewall]:
    with emulated(request.param, tmp_path, monkeypatch) as fw:
        yield fw


async def changes_for(state: DesiredState, prune: Sequence[tuple[str, str]] = ()) -> list[Change]:
    """What the engine would hand the transaction: a plan's non-noop changes, plus prunes
    of owned objects no document describes any more (named as the engine names them)."""
    node = state.nodes[NODE]
    resources = state.resources_for(NODE)
    observed = await PROVIDER.observe(node, resources, state.source)
    changes = []
    for document in resources:
        seen = observed.resources[document]
        action, _ = compare(seen)
        assert action is not Action.ERROR, seen.error
        if action is not Action.NOOP:
            changes.append(Change(document.kind, document.name, action.value, document, seen))
    live_by_label = {u.name: u.live for u in observed.unmanaged}
    for kind, name in prune:
        if kind == "FirewallAlias":
            alias = name.replace("-", "_")
            live = live_by_label[alias]
        else:
            uuid = object_uuid(NODE, kind, name)
            live = next(v for k, v in live_by_label.items() if k.endswith(f"({uuid})"))
        changes.append(Change(kind, name, "delete", None, Observed(None, live)))
    return changes


def all_noop(observation: Observation) -> bool:
    return all(compare(o)[0] is Action.NOOP for o in observation.resources.values())


async def apply(
    fw: Firewall,
    state: DesiredState,
    prune: Sequence[tuple[str, str]] = (),
    journal: MemoryJournal | None = None,
) -> dict[str, Any]:
    """A whole successful apply; returns the snapshot."""
    changes = await changes_for(state, prune)
    async with PROVIDER.transaction(state.nodes[NODE], changes) as txn:
        snapshot = dict(await txn.snapshot())
        await txn.write(journal or MemoryJournal())
        observation = await txn.verify()
        assert all_noop(observation)
        await txn.commit()
    return snapshot


def _is_write(path: str) -> bool:
    bulk = path in ("firewall/alias/import", "firewall/filter/uploadRules")
    return bulk or "Item" in path or "Rule/" in path or "Override/" in path


def posts(fw: Firewall) -> list[str]:
    return [r.path.removeprefix("/api/") for r in fw.emu.requests if r.method == "POST"]


# -- apply -----------------------------------------------------------------------------


async def test_apply_creates_then_updates_and_prunes(firewall: Firewall) -> None:
    fw = firewall
    journal = MemoryJournal()
    await apply(fw, fw.state(BASE), journal=journal)
    timer = fw.emu.version in WITH_TIMER
    sent = posts(fw)
    # Writes: the 3 aliases in one import; the 2 rules in one CSV upload where the release
    # has it (26.1+), else with setRule/{FazAI's uuid}; the 2 overrides one by one.
    assert sum(p == "firewall/alias/import" for p in sent) == 1
    assert not any("alias/addItem" in p or "alias/setItem" in p for p in sent)
    rule_uuid = object_uuid(NODE, "FirewallRule", "allow-https")
    bulk_rules = fw.emu.version != "24.7"
    if bulk_rules:
        assert sum(p == "firewall/filter/uploadRules" for p in sent) == 1
        assert not any("setRule" in p for p in sent)
    else:
        assert f"firewall/filter/setRule/{rule_uuid}" in sent
    # Exactly one reload per subsystem, after every write.
    assert fw.emu.requests.count("POST", r"/firewall/alias/reconfigure$") == 1
    assert fw.emu.requests.count("POST", r"/firewall/filter/apply") == 1
    assert fw.emu.requests.count("POST", r"/unbound/service/reconfigure$") == 1
    reloads = [i for i, p in enumerate(sent) if "reconfigure" in p or "filter/apply" in p]
    writes = [i for i, p in enumerate(sent) if _is_write(p)]
    assert max(writes) < min(reloads)
    # Aliases before the rules that use them.
    assert max(i for i, p in enumerate(sent) if "alias/import" in p) < min(
        i for i, p in enumerate(sent) if "setRule" in p or "uploadRules" in p
    )
    if timer:
        assert fw.emu.requests.count("POST", r"/firewall/filter/savepoint$") == 1
        assert fw.emu.requests.count("POST", r"/firewall/filter/apply/[0-9.]+$") == 1
        assert fw.emu.requests.count("POST", r"/firewall/filter/cancelRollback/") == 1
        assert fw.emu.rollback.armed is None  # committed: the timer is stopped
    else:
        assert fw.emu.requests.count(path=r"savepoint|cancelRollback") == 0
    # Every step journaled and done; nothing left pending on the firewall.
    assert [s["status"] for s in journal.steps] == ["done"] * 10
    for subsystem in ("alias", "filter", "unbound"):
        assert not fw.emu.state.pending(subsystem)

    # The next generation: updates, a create, and three prunes.
    fw.emu.requests.clear()
    await apply(fw, fw.state(NEXT), prune=PRUNED)
    sent = posts(fw)
    names = {i["name"] for i in fw.emu.state.list("alias").values()}
    assert names == {"web_servers", "https_ports", "dns_servers"}
    assert object_uuid(NODE, "FirewallRule", "block-old") not in fw.emu.state.list("rule")
    assert object_uuid(NODE, "HostOverride", "mail") not in fw.emu.state.list("host")
    # The rule that used old_hosts goes before the alias (the firewall refuses otherwise).
    rule_del = next(i for i, p in enumerate(sent) if p.startswith("firewall/filter/delRule/"))
    alias_del = next(i for i, p in enumerate(sent) if p.startswith("firewall/alias/delItem/"))
    assert rule_del < alias_del
    assert fw.emu.requests.count("POST", r"/firewall/alias/reconfigure$") == 1
    assert fw.emu.requests.count("POST", r"/firewall/filter/apply") == 1
    assert fw.emu.requests.count("POST", r"/unbound/service/reconfigure$") == 1
    # A fresh plan finds nothing to do.
    assert await changes_for(fw.state(NEXT)) == []


async def test_host_override_alone_reloads_only_unbound(firewall: Firewall) -> None:
    fw = firewall
    await apply(fw, fw.state(BASE))
    fw.emu.requests.clear()
    changed = [d for d in BASE if d["metadata"]["name"] != "www"]
    changed.append(doc("HostOverride", "www", hostname="www", domain="example.net",
                       server="10.0.10.99"))  # fmt: skip
    await apply(fw, fw.state(changed))
    assert posts(fw) == [
        f"unbound/settings/setHostOverride/{object_uuid(NODE, 'HostOverride', 'www')}",
        "unbound/service/reconfigure",
    ]


# -- failures mid-way and rollback -----------------------------------------------------


async def _fail_midway(fw: Firewall, inject: str) -> tuple[dict[str, Any], Exception]:
    await apply(fw, fw.state(BASE))
    before = fw.items()
    changes = await changes_for(fw.state(NEXT), PRUNED)
    if inject == "5xx":
        # The second setRule, or the one CSV upload of both rules (26.1+).
        bulk = fw.emu.version != "24.7"
        fw.emu.faults.fail(503, path=r"/firewall/filter/(setRule/|uploadRules$)", method="POST",
                           nth=1 if bulk else 2)  # fmt: skip
    else:
        fw.emu.faults.drop(path=r"/unbound/settings/setHostOverride/", method="POST")
    journal = MemoryJournal()
    async with PROVIDER.transaction(fw.state(NEXT).nodes[NODE], changes) as txn:
        snapshot = await txn.snapshot()
        with pytest.raises((ServerError, UnreachableError)) as caught:
            await txn.write(journal)
        # Every call was journaled before the first was sent (the reloads too): the ones
        # before the failure are done, the ones after it never sent, still only intended.
        # A batch fails as one: every object it carried.
        statuses = [s["status"] for s in journal.steps]
        failed = statuses.index("failed")
        refused = statuses.count("failed")
        assert failed > 0
        assert statuses == ["done"] * failed + ["failed"] * refused + ["intended"] * (
            len(statuses) - failed - refused
        )
        assert journal.steps[-1]["kind"] == "OPNsense"  # a reload, intended, never sent
        # Some writes landed: the firewall is half-changed now.
        assert fw.items()["items"] != before["items"]
        await txn.rollback(snapshot)
    return before, caught.value


@pytest.mark.parametrize("inject", ["5xx", "drop"])
async def test_failure_mid_write_rolls_back_exactly(firewall: Firewall, inject: str) -> None:
    fw = firewall
    before, error = await _fail_midway(fw, inject)
    assert isinstance(error, ServerError if inject == "5xx" else UnreachableError)
    after = fw.items()
    assert after["items"] == before["items"]
    assert after["applied"] == before["applied"]
    assert fw.emu.requests.count("POST", r"/core/backup/revertBackup/") == 1
    if fw.emu.version in WITH_TIMER:
        assert fw.emu.rollback.armed is None


async def test_validation_refusal_rolls_back_with_file_and_line(firewall: Firewall) -> None:
    fw = firewall
    await apply(fw, fw.state(BASE))
    before = fw.items()
    # The emulated firewall has no gateway WAN_GW: FazAI's own checks cannot know that.
    refused = [*NEXT, doc("FirewallRule", "via-gw", interface="lan", gateway="WAN_GW",
                          sequence=300)]  # fmt: skip
    state = fw.state(refused)
    changes = await changes_for(state, PRUNED)
    async with PROVIDER.transaction(state.nodes[NODE], changes) as txn:
        snapshot = await txn.snapshot()
        with pytest.raises(RefusedByFirewallError) as caught:
            await txn.write(MemoryJournal())
        await txn.rollback(snapshot)
    text = str(caught.value)
    line = next(
        i
        for i, t in enumerate((fw.folder / "fw.yaml").read_text().splitlines(), 1)
        if "WAN_GW" in t
    )
    assert f"fw.yaml:{line}:" in text
    assert "FirewallRule/via-gw: spec.gateway: the firewall refused it" in text
    assert caught.value.diagnostics[0].location.line == line
    assert fw.items() == before


async def test_rollback_in_a_new_transaction_from_the_stored_snapshot(firewall: Firewall) -> None:
    fw = firewall
    await apply(fw, fw.state(BASE))
    before = fw.items()
    state = fw.state(NEXT)
    changes = await changes_for(state, PRUNED)
    async with PROVIDER.transaction(state.nodes[NODE], changes) as txn:
        stored = json.dumps(await txn.snapshot())
        assert "secret" not in stored.lower() and fw.emu.api_secret not in stored
        await txn.write(MemoryJournal())
        # The controller dies here: no verify, no commit, the object is dropped.
    assert fw.items()["applied"] != before["applied"]  # the change is live
    # A restarted controller knows only the node and the stored snapshot.
    async with PROVIDER.transaction(fw.state(NEXT).nodes[NODE], []) as fresh:
        await fresh.rollback(json.loads(stored))
    assert fw.items() == before


async def test_rollback_reports_objects_that_differ(firewall: Firewall) -> None:
    from controller.providers.opnsense.apply import RollbackError

    fw = firewall
    await apply(fw, fw.state(BASE))
    state = fw.state(NEXT)
    changes = await changes_for(state, PRUNED)
    async with PROVIDER.transaction(state.nodes[NODE], changes) as txn:
        snapshot = copy.deepcopy(dict(await txn.snapshot()))
        await txn.write(MemoryJournal())
        # Tamper with the snapshot: the restored rule cannot equal it.
        target = next(o for o in snapshot["objects"] if o["name"] == "allow-https")
        target["before"]["description"] = "not what the backup holds"
        with pytest.raises(RollbackError) as caught:
            await txn.rollback(snapshot)
    assert caught.value.differences == ("FirewallRule/allow-https differs from its snapshot",)


# -- the dead-man timer (up to 26.1) ---------------------------------------------------


@pytest.mark.parametrize("version", WITH_TIMER)
@pytest.mark.parametrize("committed", [False, True])
async def test_uncommitted_apply_is_reverted_by_the_firewall_timer(
    version: str, committed: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with emulated(version, tmp_path, monkeypatch, rollback_seconds=0.5) as fw:
        state = fw.state(BASE)
        changes = await changes_for(state)
        async with PROVIDER.transaction(state.nodes[NODE], changes) as txn:
            await txn.snapshot()
            await txn.write(MemoryJournal())
            assert fw.emu.rollback.armed is not None
            if committed:
                assert all_noop(await txn.verify())
                await txn.commit()
            # else: the controller dies; the transaction object is simply dropped.
        rules_applied = fw.emu.state.list("rule")
        assert len(rules_applied) == 2
        await asyncio.sleep(1.2)  # well past the timer
        if committed:
            assert fw.emu.rollback.fired == []
            assert fw.emu.state.list("rule") == rules_applied
            assert fw.emu.state.applied_items("rule") == rules_applied
        else:
            assert len(fw.emu.rollback.fired) == 1
            # The firewall restored the rules of the savepoint: none.
            assert fw.emu.state.list("rule") == {}
            assert fw.emu.state.applied_items("rule") == {}


@pytest.mark.parametrize("version", WITH_TIMER)
async def test_commit_fails_when_the_timer_already_fired(
    version: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with emulated(version, tmp_path, monkeypatch, rollback_seconds=0.2) as fw:
        state = fw.state(BASE)
        changes = await changes_for(state)
        async with PROVIDER.transaction(state.nodes[NODE], changes) as txn:
            await txn.snapshot()
            await txn.write(MemoryJournal())
            assert all_noop(await txn.verify())
            await asyncio.sleep(0.6)  # the controller stalls past the timer
            assert fw.emu.rollback.fired
            with pytest.raises(ApiError, match="could not be cancelled"):
                await txn.commit()


async def test_commit_refused_without_a_clean_verify(firewall: Firewall) -> None:
    fw = firewall
    state = fw.state(BASE)
    changes = await changes_for(state)
    async with PROVIDER.transaction(state.nodes[NODE], changes) as txn:
        await txn.snapshot()
        await txn.write(MemoryJournal())
        with pytest.raises(NodeError, match="not verified"):
            await txn.commit()


# -- a stale plan ----------------------------------------------------------------------


async def test_a_plan_older_than_the_firewall_is_refused_before_any_write(
    firewall: Firewall,
) -> None:
    from controller.providers.opnsense.apply import StalePlanError
    from controller.testing.opnsense import Drift

    fw = firewall
    await apply(fw, fw.state(BASE))
    changes = await changes_for(fw.state(NEXT), PRUNED)
    # Someone edits the rule that the plan is about to delete.
    Drift(fw.emu.state).edit("rule", object_uuid(NODE, "FirewallRule", "block-old"), {"log": "1"})
    fw.emu.requests.clear()
    async with PROVIDER.transaction(fw.state(NEXT).nodes[NODE], changes) as txn:
        with pytest.raises(StalePlanError, match="FirewallRule/block-old"):
            await txn.snapshot()
    assert fw.emu.requests.count("POST") == 0


# -- anti-lockout ----------------------------------------------------------------------


def _block_controller(port: int, sequence: int) -> dict[str, Any]:
    return doc("FirewallRule", "block-mgmt", action="block", interface="lan", protocol="TCP",
               source={"net": "127.0.0.1/32"},
               destination={"net": "127.0.0.1", "port": port}, sequence=sequence)  # fmt: skip


async def test_a_rule_blocking_the_controller_is_refused_with_nothing_written(
    firewall: Firewall,
) -> None:
    fw = firewall
    documents = [*BASE, _block_controller(fw.emu.port, 50)]
    state = fw.state(documents)
    changes = await changes_for(state)
    async with PROVIDER.transaction(state.nodes[NODE], changes) as txn:
        with pytest.raises(LockoutError) as caught:
            await txn.snapshot()
        with pytest.raises(RuntimeError):
            await txn.write(MemoryJournal())  # no snapshot, no write
    assert fw.emu.requests.count("POST") == 0
    line = next(
        i
        for i, t in enumerate((fw.folder / "fw.yaml").read_text().splitlines(), 1)
        if "block-mgmt" in t
    )
    message = str(caught.value)
    assert f"FirewallRule/block-mgmt (fw.yaml:{line}:" in message
    assert f"127.0.0.1 -> 127.0.0.1:{fw.emu.port}/tcp" in message
    assert fw.emu.state.list("rule") == {}


async def test_an_earlier_pass_rule_makes_the_block_acceptable(firewall: Firewall) -> None:
    fw = firewall
    allow = doc("FirewallRule", "allow-mgmt", interface="lan", protocol="TCP",
                source={"net": "127.0.0.0/8"}, destination={"net": "(self)"},
                sequence=10)  # fmt: skip
    state = fw.state([*BASE, allow, _block_controller(fw.emu.port, 50)])
    await apply(fw, state)
    assert object_uuid(NODE, "FirewallRule", "block-mgmt") in fw.emu.state.list("rule")
    # Moving the pass rule after the block makes it a lockout again.
    later = {**allow, "spec": {**allow["spec"], "sequence": 60}}
    state = fw.state([*BASE, later, _block_controller(fw.emu.port, 50)])
    fw.emu.requests.clear()
    changes = await changes_for(state)
    assert [c.name for c in changes] == ["allow-mgmt"]
    # The block rule is already live and unchanged: it is named by its uuid.
    block_uuid = object_uuid(NODE, "FirewallRule", "block-mgmt")
    async with PROVIDER.transaction(state.nodes[NODE], changes) as txn:
        with pytest.raises(LockoutError, match=f"rule {block_uuid} on the firewall"):
            await txn.snapshot()
    assert fw.emu.requests.count("POST") == 0


async def test_deleting_the_pass_rule_the_controller_needs_is_refused(firewall: Firewall) -> None:
    fw = firewall
    allow = doc("FirewallRule", "allow-mgmt", interface="lan", protocol="TCP",
                destination={"net": "(self)", "port": fw.emu.port}, sequence=10)  # fmt: skip
    await apply(fw, fw.state([*BASE, allow]))
    state = fw.state(BASE)
    changes = await changes_for(state, [("FirewallRule", "allow-mgmt")])
    async with PROVIDER.transaction(state.nodes[NODE], changes) as txn:
        with pytest.raises(LockoutError, match="no rule FazAI can see passes it"):
            await txn.snapshot()


async def test_controller_address_override_moves_the_path(firewall: Firewall) -> None:
    fw = firewall
    state = fw.state([*BASE, _block_controller(fw.emu.port, 50)])
    changes = await changes_for(state)
    # The firewall sees the controller as 192.0.2.10 (behind NAT, say): the block of
    # 127.0.0.1 does not concern it.
    async with PROVIDER.transaction(
        state.nodes[NODE], changes, controller_address="192.0.2.10"
    ) as txn:
        assert isinstance(txn, OpnsenseTransaction)
        path = await txn.management_path()
        assert str(path.source) == "192.0.2.10"
        await txn.snapshot()
        await txn.write(MemoryJournal())
        assert all_noop(await txn.verify())
        await txn.commit()
