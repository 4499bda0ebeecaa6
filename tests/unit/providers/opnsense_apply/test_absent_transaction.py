"""Deletes from ``state: absent`` documents through the transaction, against the emulator.

The order of deletes comes from what the firewall holds (the documents of absent aliases
carry no content), and verify reads every deleted object back as gone.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from controller.model.document import Document
from controller.plan.diff import Action, compare
from controller.providers.base import Change, Intent
from controller.providers.opnsense import live
from controller.providers.opnsense.apply import OpnsenseTransaction
from controller.providers.opnsense.client import ApiTarget, OpnsenseClient
from controller.providers.opnsense.identity import object_uuid
from controller.providers.opnsense.provider import compare as observe_firewall
from controller.secrets import Secret
from controller.testing.opnsense import Drift, EmulatorServer

NODE = Document("Node", "fw", {"platform": "opnsense", "url": "http://unused"})


@pytest.fixture(params=["24.7", "26.7"])
def emu(request: pytest.FixtureRequest) -> Iterator[EmulatorServer]:
    with EmulatorServer(version=request.param) as server:
        yield server


def target(emu: EmulatorServer) -> ApiTarget:
    return ApiTarget("fw", emu.url, Secret(emu.api_key), Secret(emu.api_secret), timeout=5)


def absent(kind: str, doc_name: str, /, **spec: Any) -> Document:
    return Document(kind, doc_name, {"target": {"node": "fw"}, **spec, "state": "absent"})


class Journal:
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


async def test_absent_documents_delete_nested_aliases_outermost_first(
    emu: EmulatorServer,
) -> None:
    hand = Drift(emu.state)
    hand.add("alias", {"name": "inner", "type": "network", "content": "10.1.0.0/24"})
    hand.add("alias", {"name": "middle", "type": "network", "content": "inner\n10.0.0.0/24"})
    hand.add("alias", {"name": "outer", "type": "networkgroup", "content": "middle"})
    rule = object_uuid("fw", "FirewallRule", "use-outer")
    hand.add("rule", {"interface": "lan", "source_net": "outer"}, uuid=rule)
    # The documents carry no content: only what the firewall holds can tell the order.
    # Listed outermost first, so that an order read from the list alone (deletes go in
    # reverse) would delete the innermost first, which the firewall refuses.
    documents = [
        absent("FirewallAlias", "outer", name="outer"),
        absent("FirewallAlias", "middle", name="middle"),
        absent("FirewallAlias", "inner", name="inner"),
        absent("FirewallRule", "use-outer"),
    ]
    names = {i["name"]: u for u, i in emu.state.list("alias").items()}
    async with OpnsenseClient(target(emu)) as client:
        firewall = await live.read(client, {"FirewallAlias", "FirewallRule"})
        observation = observe_firewall("fw", documents, firewall)
        changes = []
        for document in documents:
            seen = observation.resources[document]
            action, _ = compare(seen)
            assert action is Action.DELETE, seen.error
            changes.append(Change(document.kind, document.name, "delete", document, seen))
        txn = OpnsenseTransaction(NODE, changes, client)
        snapshot = await txn.snapshot()
        journal = Journal()
        await txn.write(journal)
        verified = await txn.verify()
        assert set(verified.resources) == set(documents)
        assert all(compare(o)[0] is Action.NOOP for o in verified.resources.values())
        await txn.commit()
    deleted = [r.path.rsplit("/", 1)[-1] for r in emu.requests if "/del" in r.path]
    assert deleted == [rule, names["outer"], names["middle"], names["inner"]]
    assert emu.state.list("alias") == {} and emu.state.list("rule") == {}
    # Every deleted object is in the snapshot, as it was, to check a rollback against.
    before = {o["name"]: o["before"] for o in snapshot["objects"]}
    assert set(before["middle"]["content"]) == {"inner", "10.0.0.0/24"}
    assert before["use-outer"]["source_net"] == "outer"


async def test_verify_is_not_clean_while_a_deleted_object_is_still_there(
    emu: EmulatorServer,
) -> None:
    uuid = object_uuid("fw", "HostOverride", "mail")
    Drift(emu.state).add(
        "host", {"hostname": "mail", "domain": "example.net", "server": "10.0.0.2"}, uuid=uuid
    )
    document = absent("HostOverride", "mail")
    async with OpnsenseClient(target(emu)) as client:
        firewall = await live.read(client, {"HostOverride"})
        seen = observe_firewall("fw", [document], firewall).resources[document]
        txn = OpnsenseTransaction(NODE, [Change("HostOverride", "mail", "delete", document, seen)],
                                  client)  # fmt: skip
        await txn.snapshot()
        # Someone puts it back between the write and the verify.
        await txn.write(Journal())
        Drift(emu.state).add("host", {"hostname": "mail", "domain": "example.net",
                                      "server": "10.0.0.2"}, uuid=uuid)  # fmt: skip
        verified = await txn.verify()
        assert compare(verified.resources[document])[0] is Action.DELETE
        with pytest.raises(Exception, match="not verified"):
            await txn.commit()
