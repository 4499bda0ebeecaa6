"""The transaction against the emulator over plain HTTP: ordering, the journal in the real
state store, and snapshots that survive it."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.model import kinds
from controller.model.document import Document
from controller.plan.diff import Action, Observed, compare
from controller.providers.base import Change, Intent
from controller.providers.opnsense import essence
from controller.providers.opnsense.apply import OpnsenseTransaction
from controller.providers.opnsense.client import ApiTarget, OpnsenseClient
from controller.providers.opnsense.identity import object_uuid
from controller.secrets import Secret
from controller.store.records import Command, StepStatus, Trigger
from controller.store.store import StateStore
from controller.testing.opnsense import Drift, EmulatorServer

NODE = Document("Node", "fw", {"platform": "opnsense", "url": "http://unused"})


@pytest.fixture(params=["24.7", "26.7"])
def emu(request: pytest.FixtureRequest) -> Iterator[EmulatorServer]:
    with EmulatorServer(version=request.param) as server:
        yield server


def target(emu: EmulatorServer) -> ApiTarget:
    return ApiTarget("fw", emu.url, Secret(emu.api_key), Secret(emu.api_secret), timeout=5)


def alias(name: str, content: list[str], kind: str = "host") -> Document:
    spec = {"name": name, "type": kind, "content": content, "enabled": True}
    return Document("FirewallAlias", name, spec)


def create(document: Document) -> Change:
    return Change(document.kind, document.name, "create", document, Observed({}, None))


class StoreJournal:
    """The engine's StepJournal as the state store backs it."""

    def __init__(self, store: StateStore, txn: int) -> None:
        self.store, self.txn, self.seq = store, txn, 0

    def intend(self, kind: str, name: str, action: str, payload: Mapping[str, Any]) -> int:
        self.seq += 1
        return self.store.intend(self.txn, self.seq, kind, name, action, payload)

    def done(self, step: int) -> None:
        self.store.mark_done(step)

    def intend_many(self, intents: Sequence[Intent]) -> list[int]:
        steps = self.store.intend_many(self.txn, self.seq + 1, intents)
        self.seq += len(intents)
        return steps

    def done_many(self, steps: Sequence[int]) -> None:
        self.store.mark_done_many(steps)

    def failed(self, step: int, message: str) -> None:
        self.store.mark_failed(step, message)


async def test_nested_aliases_go_after_what_they_name_and_are_deleted_before_it(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    # Given in the wrong order on purpose: outer names middle, middle names inner.
    outer = alias("outer", ["middle"], "networkgroup")
    middle = alias("middle", ["inner", "10.0.0.0/24"], "network")
    inner = alias("inner", ["10.1.0.0/24"], "network")
    changes = [create(outer), create(middle), create(inner)]
    with StateStore(tmp_path / "state.db") as store:
        run = store.start_run(Trigger.CLI, Command.APPLY, "test", None)
        txn_id = store.begin_transaction(run, "fw")
        async with OpnsenseClient(target(emu)) as client:
            txn = OpnsenseTransaction(NODE, changes, client)
            snapshot = await txn.snapshot()
            store.record_snapshot(txn_id, "node", "fw", "snapshot", snapshot)
            await txn.write(StoreJournal(store, txn_id))
            observation = await txn.verify()
            assert all(compare(o)[0] is Action.NOOP for o in observation.resources.values())
            await txn.commit()
        store.commit(txn_id)
        record = store.transaction(txn_id)
        assert record is not None
        assert [s.name for s in record.steps][:3] == ["inner", "middle", "outer"]
        assert all(s.status is StepStatus.DONE for s in record.steps)
        stored = record.snapshots[0].before
        assert stored == json.loads(json.dumps(snapshot))

    names = {i["name"]: u for u, i in emu.state.list("alias").items()}
    assert set(names) == {"inner", "middle", "outer"}
    emu.requests.clear()
    prunes = [
        Change("FirewallAlias", d.name, "delete", None, Observed(None, live))
        for d in (inner, middle, outer)
        for live in [_live_alias(emu, d.name)]
    ]
    async with OpnsenseClient(target(emu)) as client:
        txn = OpnsenseTransaction(NODE, prunes, client)
        await txn.snapshot()
        journal = ListJournal()
        await txn.write(journal)
        assert all(compare(o)[0] is Action.NOOP for o in (await txn.verify()).resources.values())
    deleted = [r.path.rsplit("/", 1)[-1] for r in emu.requests if "delItem" in r.path]
    assert deleted == [names["outer"], names["middle"], names["inner"]]
    assert emu.state.list("alias") == {}


def _live_alias(emu: EmulatorServer, name: str) -> dict[str, Any]:
    """What a plan sees of the alias: the essence of the model read."""
    model = httpx.get(f"{emu.url}/api/firewall/alias/get", auth=emu.auth).json()
    item = next(i for i in model["alias"]["aliases"]["alias"].values() if i["name"] == name)
    return essence.live_alias(item)


class ListJournal:
    def __init__(self) -> None:
        self.steps: list[tuple[str, str, str]] = []

    def intend(self, kind: str, name: str, action: str, payload: Mapping[str, Any]) -> int:
        self.steps.append((kind, name, action))
        return len(self.steps)

    def done(self, step: int) -> None:
        pass

    def intend_many(self, intents: Sequence[Intent]) -> list[int]:
        return [self.intend(i.kind, i.name, i.action, i.payload) for i in intents]

    def done_many(self, steps: Sequence[int]) -> None:
        for step in steps:
            self.done(step)

    def failed(self, step: int, message: str) -> None:
        raise AssertionError(message)


async def test_snapshot_of_a_url_alias_holds_no_credentials(tmp_path: Path) -> None:
    with EmulatorServer(version="26.1") as emu:
        Drift(emu.state).add(
            "alias",
            {"name": "feed", "type": "urltable", "content": "https://example.net/list",
             "username": "u", "password": "hunter2-secret"},
        )  # fmt: skip
        import httpx

        from controller.providers.opnsense import essence

        model = httpx.get(f"{emu.url}/api/firewall/alias/get", auth=emu.auth).json()
        item = next(iter(model["alias"]["aliases"]["alias"].values()))
        update = alias("feed", ["https://example.net/other"], "urltable")
        change = Change("FirewallAlias", "feed", "update", update,
                        Observed({}, essence.live_alias(item)))  # fmt: skip
        async with OpnsenseClient(target(emu)) as client:
            txn = OpnsenseTransaction(NODE, [change], client)
            snapshot = await txn.snapshot()
        text = json.dumps(snapshot)
        assert "hunter2" not in text
        assert snapshot["objects"][0]["before"]["username"] == "u"
        assert snapshot["savepoint"] is None  # no rule changes: no timer to arm
        assert emu.requests.count("POST") == 0


@pytest.mark.parametrize("answers_uuid", [True, False])
async def test_the_ids_for_the_inventory_are_the_firewalls(
    emu: EmulatorServer, answers_uuid: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An alias is recorded as name@uuid: the uuid addItem answered or, where the answer
    carries none, the one the verify read finds under its name; a rule at its uuid."""
    web = alias("web", ["10.0.0.1"])
    spec = {"target": {"node": "fw"}, "interface": "lan", "protocol": "TCP",
            "destination": {"net": "web", "port": 443}}  # fmt: skip
    registered = kinds.get("FirewallRule")
    assert registered is not None
    rule = Document("FirewallRule", "allow-web", kinds.apply_defaults(registered, "x", spec))
    changes = [create(web), create(rule)]
    async with OpnsenseClient(target(emu)) as client:
        if not answers_uuid:
            post = client.post

            async def without_uuid(path: str, body: Any = None) -> Any:
                answer = await post(path, body)
                return {k: v for k, v in answer.items() if k != "uuid"}

            monkeypatch.setattr(client, "post", without_uuid)
        txn = OpnsenseTransaction(NODE, changes, client, controller_address="192.0.2.99")
        await txn.snapshot()
        await txn.write(ListJournal())
        await txn.verify()
        ids = txn.platform_ids()
    (web_uuid,) = [u for u, i in emu.state.list("alias").items() if i["name"] == "web"]
    assert ids == {
        ("FirewallAlias", "web"): f"web@{web_uuid}",
        ("FirewallRule", "allow-web"): object_uuid("fw", "FirewallRule", "allow-web"),
    }
