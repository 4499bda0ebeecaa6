"""Bulk writes in the OPNsense transaction, against the emulator over HTTPS: aliases in
one ``firewall/alias/import``, rules in one ``firewall/filter/uploadRules`` from 26.1,
and every way such a request can fail still rolling back to the snapshot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller.errors import ServerError, UnreachableError
from controller.providers.opnsense.apply import RefusedByFirewallError, RollbackError
from controller.providers.opnsense.identity import object_uuid
from tests.integration.test_apply_opnsense import (
    NODE,
    PROVIDER,
    Firewall,
    MemoryJournal,
    apply,
    changes_for,
    doc,
    emulated,
    posts,
)

VERSIONS = ["24.7", "26.1", "26.7"]


def aliases(n: int) -> list[dict[str, Any]]:
    return [
        doc("FirewallAlias", f"net-{i}", name=f"net_{i}", type="network",
            content=[f"10.{i}.0.0/24"], description=f"net {i}")
        for i in range(n)
    ]  # fmt: skip


def rules(n: int, **extra: Any) -> list[dict[str, Any]]:
    return [
        doc("FirewallRule", f"r-{i}", interface="lan", protocol="TCP",
            destination={"net": f"net_{i}", "port": 443}, sequence=100 + i,
            description=f"rule {i}", **extra)
        for i in range(n)
    ]  # fmt: skip


@pytest.fixture(params=VERSIONS)
def firewall(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Any:
    with emulated(request.param, tmp_path, monkeypatch) as fw:
        yield fw


def bulk_rules(fw: Firewall) -> bool:
    return fw.emu.version != "24.7"


async def test_bulk_apply_sends_one_request_per_kind_and_journals_every_object(
    firewall: Firewall,
) -> None:
    fw = firewall
    journal = MemoryJournal()
    await apply(fw, fw.state([*aliases(5), *rules(5)]), journal=journal)
    sent = posts(fw)
    assert sent.count("firewall/alias/import") == 1
    setrules = [p for p in sent if p.startswith("firewall/filter/setRule/")]
    if bulk_rules(fw):
        assert sent.count("firewall/filter/uploadRules") == 1
        assert setrules == []
    else:
        assert len(setrules) == 5
    # One journal step per object (and per reload), each with its batch's path.
    objects = [s for s in journal.steps if s["kind"] != "OPNsense"]
    assert [s["status"] for s in journal.steps] == ["done"] * len(journal.steps)
    assert len(objects) == 10
    assert {s["payload"]["path"] for s in objects if s["kind"] == "FirewallAlias"} == {
        "firewall/alias/import"
    }
    # The rules sit at FazAI's uuids; a second plan finds nothing to do.
    live_rules = fw.emu.state.list("rule")
    assert {object_uuid(NODE, "FirewallRule", f"r-{i}") for i in range(5)} == set(live_rules)
    assert await changes_for(fw.state([*aliases(5), *rules(5)])) == []

    # Updates go the same way, matched by name (aliases) and uuid (rules).
    fw.emu.requests.clear()
    changed = [*aliases(5), *rules(5, log=True)]
    changed[0]["spec"]["content"] = ["10.99.0.0/24"]
    changed[1]["spec"]["content"] = ["10.98.0.0/24"]
    await apply(fw, fw.state(changed))
    assert posts(fw).count("firewall/alias/import") == 1
    assert {i["name"]: i["content"] for i in fw.emu.state.list("alias").values()}["net_0"] == (
        "10.99.0.0/24"
    )
    assert all(r["log"] == "1" for r in fw.emu.state.list("rule").values())
    assert await changes_for(fw.state(changed)) == []


async def test_alias_ids_for_the_inventory_come_from_the_verify_read(firewall: Firewall) -> None:
    """The import answers no uuid: the inventory records the one verify read by name."""
    fw = firewall
    state = fw.state(aliases(3))
    changes = await changes_for(state)
    async with PROVIDER.transaction(state.nodes[NODE], changes) as txn:
        await txn.snapshot()
        await txn.write(MemoryJournal())
        await txn.verify()
        ids = txn.platform_ids()
        await txn.commit()
    live = {i["name"]: u for u, i in fw.emu.state.list("alias").items()}
    assert ids == {("FirewallAlias", f"net-{i}"): f"net_{i}@{live[f'net_{i}']}" for i in range(3)}


async def test_a_refused_rule_in_an_upload_rolls_back_what_was_saved(
    firewall: Firewall,
) -> None:
    """uploadRules saves the rows it did not refuse: the rollback must undo them, and
    the aliases the import wrote before, and name the refused document's file:line."""
    fw = firewall
    await apply(fw, fw.state(aliases(1)))
    before = fw.items()
    # The emulated firewall has no gateway WAN_GW: FazAI's own checks cannot know that.
    docs = [*aliases(4), *rules(4)]
    docs[-2]["spec"]["gateway"] = "WAN_GW"
    state = fw.state(docs)
    changes = await changes_for(state)
    journal = MemoryJournal()
    async with PROVIDER.transaction(state.nodes[NODE], changes) as txn:
        snapshot = await txn.snapshot()
        with pytest.raises(RefusedByFirewallError) as caught:
            await txn.write(journal)
        if bulk_rules(fw):
            # Upstream dropped the refused row and saved the other three.
            saved = set(fw.emu.state.list("rule"))
            assert saved == {object_uuid(NODE, "FirewallRule", f"r-{i}") for i in (0, 1, 3)}
            statuses = [s["status"] for s in journal.steps if s["kind"] == "FirewallRule"]
            assert statuses == ["failed"] * 4
        await txn.rollback(snapshot)
    assert fw.items() == before
    line = next(
        i for i, t in enumerate((fw.folder / "fw.yaml").read_text().splitlines(), 1)
        if "WAN_GW" in t
    )  # fmt: skip
    text = str(caught.value)
    assert f"fw.yaml:{line}:" in text
    assert "FirewallRule/r-2: spec.gateway: the firewall refused it" in text
    assert [d.location.line for d in caught.value.diagnostics] == [line]


async def test_an_alias_import_refusal_writes_nothing_and_names_the_document(
    firewall: Firewall,
) -> None:
    fw = firewall
    before = fw.items()
    docs = aliases(3)
    # A name in a network alias may be an alias on the firewall, for all FazAI's own
    # checks can tell; the firewall knows none of that name.
    docs[1]["spec"]["content"] = ["no_such_net"]
    state = fw.state(docs)
    changes = await changes_for(state)
    async with PROVIDER.transaction(state.nodes[NODE], changes) as txn:
        snapshot = await txn.snapshot()
        try:
            await txn.write(MemoryJournal())
        except RefusedByFirewallError as exc:
            caught = exc
        else:
            pytest.fail("the import was not refused")
        assert fw.emu.state.list("alias") == {}  # all or nothing
        await txn.rollback(snapshot)
    assert fw.items() == before
    assert "FirewallAlias/net-1: spec.content: the firewall refused it" in str(caught)
    assert "fw.yaml:" in str(caught)


async def test_a_connection_lost_after_the_import_rolls_everything_back(
    firewall: Firewall,
) -> None:
    """The import landed, then the rules' request died mid-way: roll back to the snapshot."""
    fw = firewall
    await apply(fw, fw.state(aliases(1)))
    before = fw.items()
    state = fw.state([*aliases(4), *rules(4)])
    changes = await changes_for(state)
    fw.emu.faults.drop(path=r"/firewall/filter/(uploadRules$|setRule/)", method="POST")
    async with PROVIDER.transaction(state.nodes[NODE], changes) as txn:
        snapshot = await txn.snapshot()
        with pytest.raises(UnreachableError):
            await txn.write(MemoryJournal())
        assert len(fw.emu.state.list("alias")) == 4  # the import was saved
        await txn.rollback(snapshot)
    assert fw.items() == before


@pytest.mark.parametrize("firewall", ["26.1"], indirect=True)
async def test_an_invalid_rule_already_there_makes_the_upload_fall_back_to_set_rule(
    firewall: Firewall,
) -> None:
    """Upstream reports rules already on the firewall that fail validation (an interface
    removed since) and saves nothing; setRule validates only the rule it gets."""
    fw = firewall
    odd = "33333333-3333-4333-8333-333333333333"
    with fw.emu.state.lock:
        defaults = fw.emu.state.collections["rule"].defaults()
        fw.emu.state.items["rule"][odd] = {**defaults, "interface": "opt9", "sequence": "900"}
    journal = MemoryJournal()
    await apply(fw, fw.state([*aliases(3), *rules(3)]), journal=journal)
    sent = posts(fw)
    assert sent.count("firewall/filter/uploadRules") == 1
    assert len([p for p in sent if p.startswith("firewall/filter/setRule/")]) == 3
    rule_steps = [s["status"] for s in journal.steps if s["kind"] == "FirewallRule"]
    assert rule_steps == ["failed"] * 3 + ["done"] * 3
    assert len(fw.emu.state.list("rule")) == 4


@pytest.mark.parametrize("firewall", ["26.1"], indirect=True)
async def test_a_value_csv_cannot_carry_goes_rule_by_rule(firewall: Firewall) -> None:
    fw = firewall
    docs = [*aliases(2), *rules(2)]
    docs[-1]["spec"]["description"] = "back\\slash"
    await apply(fw, fw.state(docs))
    sent = posts(fw)
    assert "firewall/filter/uploadRules" not in sent
    assert len([p for p in sent if p.startswith("firewall/filter/setRule/")]) == 2
    described = {r["description"] for r in fw.emu.state.list("rule").values()}
    assert described == {"rule 0", "back\\slash"}


@pytest.mark.parametrize("firewall", ["26.1"], indirect=True)
async def test_one_backup_listing_and_a_rollback_target_a_small_backup_count_keeps(
    firewall: Firewall,
) -> None:
    """The backup is noted after the savepoint (whose save copies the running
    configuration), from the one listing: with 4 backups kept, the one before the
    savepoint is pruned by the writes, the savepoint's is not."""
    fw = firewall
    await apply(fw, fw.state(aliases(1)))
    assert fw.emu.requests.count("GET", r"/core/backup/backups/this$") == 1
    before = fw.items()
    fw.emu.state.backup_count = 4
    www = doc("HostOverride", "www", hostname="www", domain="example.net", server="10.0.0.5")
    state = fw.state([*aliases(2), *rules(2), www])
    changes = await changes_for(state)
    fw.emu.faults.fail(503, path=r"/firewall/filter/apply/", method="POST")
    async with PROVIDER.transaction(state.nodes[NODE], changes) as txn:
        snapshot = await txn.snapshot()
        with pytest.raises(ServerError):
            await txn.write(MemoryJournal())
        # savepoint, import, upload, setHostOverride: four saves, four backups kept.
        kept = [b.id for b in fw.emu.state.backups]
        assert snapshot["backup"] in kept
        try:
            await txn.rollback(snapshot)
        except RollbackError as exc:
            # revertBackup's own save then prunes the savepoint's backup: the firewall's
            # revert/{revision} finds nothing, but the configuration is back all the same.
            assert exc.differences and all("filter/revert/" in d for d in exc.differences)
    assert fw.items()["items"] == before["items"]
