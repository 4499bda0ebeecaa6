"""Which writes the transaction batches, and how it reads a bulk answer."""

from __future__ import annotations

from typing import Any

import pytest

from controller.errors import ApiError
from controller.model.document import Document
from controller.plan.diff import Observed
from controller.providers.base import Change
from controller.providers.opnsense import bulk
from controller.providers.opnsense.apply import Batch, OpnsenseTransaction
from controller.providers.opnsense.live import LiveFirewall

NODE = Document("Node", "fw", {"platform": "opnsense", "url": "http://unused"})
TAKEN = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"


def alias_change(name: str, **extra: Any) -> Change:
    spec = {"name": name, "type": "host", "content": ["10.0.0.1"], "enabled": True, **extra}
    return Change("FirewallAlias", name, "create", Document("FirewallAlias", name, spec),
                  Observed({}, None))  # fmt: skip


def sends(changes: list[Change], live_aliases: dict[str, Any]) -> list[Any]:
    firewall = LiveFirewall((26, 1), "26.1", {"FirewallAlias": live_aliases, "FirewallRule": {}})
    txn = OpnsenseTransaction(NODE, changes, client=None)  # type: ignore[arg-type]
    txn._writes = txn._plan_writes(firewall)
    return txn._sends(firewall)


def test_alias_creates_go_in_one_import() -> None:
    (batch,) = sends([alias_change("a"), alias_change("b")], {})
    assert isinstance(batch, Batch)
    assert batch.path == bulk.ALIAS_IMPORT
    assert list(batch.body["data"]["aliases"]["alias"]) == ["a", "b"]
    assert batch.creates == 2


def test_a_create_whose_name_another_alias_holds_keeps_add_item() -> None:
    """The import matches by name and would overwrite the other alias; addItem refuses."""
    other = {TAKEN: {"name": "b", "type": "host", "content": "192.0.2.1"}}
    adopting = alias_change("b", adopt={"uuid": "cccccccc-cccc-4ccc-8ccc-cccccccccccc"})
    found = sends([alias_change("a"), adopting], other)
    assert [type(s).__name__ for s in found] == ["Write", "Write"]
    assert [s.path for s in found] == ["firewall/alias/addItem"] * 2


def test_one_alias_keeps_its_own_endpoint() -> None:
    (write,) = sends([alias_change("a")], {})
    assert not isinstance(write, Batch)


def test_rules_csv_refuses_what_upstreams_reader_would_change() -> None:
    rows = [("u1", {"description": 'plain, "quoted"'}), ("u2", {"description": "x"})]
    assert bulk.rules_csv(rows) == ('"@uuid","description"\n"u1","plain, ""quoted"""\n"u2","x"\n')
    for bad in ("back\\slash", "two\nlines", "nul\0"):
        assert bulk.rules_csv([("u1", {"description": bad}), ("u2", {"description": "x"})]) is None
    assert bulk.rules_csv([("u1", {"a": "1"}), ("u2", {"b": "1"})]) is None


def test_an_answer_for_other_objects_is_an_error_not_a_success() -> None:
    with pytest.raises(ApiError, match="1 new and 0 existing"):
        bulk.alias_import_result("fw", {"status": "ok", "new": 1, "existing": 0}, ["a", "b"], 2)
    answer = {"validations": [], "inserted": 2, "updated": 0, "uuids": {"u1": 0, "u3": 1}}
    with pytest.raises(ApiError, match="2 inserted"):
        bulk.rule_upload_result("fw", answer, ["u1", "u2"], 2)
    refused = {
        "validations": [
            {"sequence": 1, "field": "gateway", "message": "no"},
            {"sequence": None, "field": "interface", "message": "gone"},
        ]
    }
    assert bulk.rule_upload_result("fw", refused, ["u1", "u2"], 2) == [
        bulk.Refusal(1, "gateway", "no"),
        bulk.Refusal(None, "interface", "gone"),
    ]
    keyed = {"status": "failed", "validations": {"b.content": "bad", ".name": "odd"}}
    assert bulk.alias_import_result("fw", keyed, ["a", "b"], 2) == [
        bulk.Refusal(1, "content", "bad"),
        bulk.Refusal(None, "name", "odd"),
    ]
