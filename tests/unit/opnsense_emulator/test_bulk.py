"""The bulk writes: AliasController::importAction and FilterController::uploadRulesAction
(26.1+), as upstream answers them and as they leave the configuration."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx
import pytest

from controller.testing.opnsense import Drift, EmulatorServer
from controller.testing.opnsense.bulk import fgetcsv

IMPORT = "/api/firewall/alias/import"
UPLOAD = "/api/firewall/filter/uploadRules"
R1 = "11111111-1111-4111-8111-111111111111"
R2 = "22222222-2222-4222-8222-222222222222"
R3 = "33333333-3333-4333-8333-333333333333"


def aliases(**entries: dict[str, str]) -> dict[str, Any]:
    return {"data": {"aliases": {"alias": entries}}}


def names(fw: EmulatorServer) -> dict[str, dict[str, str]]:
    return {i["name"]: i for i in fw.state.list("alias").values()}


def rules_csv(*rows: dict[str, str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def rule(uuid: str, **fields: str) -> dict[str, str]:
    return {"@uuid": uuid, "interface": "lan", "protocol": "TCP", "destination_net": "any",
            "description": uuid[:1],
            **fields}  # fmt: skip


# -- alias import ----------------------------------------------------------------------


@pytest.mark.parametrize("fw", ["24.7", "26.1", "26.7"], indirect=True)
def test_import_adds_and_updates_by_name_in_one_save(fw: EmulatorServer, api: httpx.Client) -> None:
    Drift(fw.state).add("alias", {"name": "web", "type": "host", "content": "10.0.0.1"})
    web_uuid = fw.state.find_alias("web")
    backups = len(fw.state.backups)
    answer = api.post(IMPORT, json=aliases(
        a={"name": "web", "type": "host", "content": "10.0.0.2\n10.0.0.3"},
        # Nested names resolve against the import itself, in any order.
        b={"name": "outer", "type": "networkgroup", "content": "inner"},
        c={"name": "inner", "type": "network", "content": "10.1.0.0/24", "enabled": "1"},
    )).json()  # fmt: skip
    assert answer == {"existing": 1, "new": 2, "status": "ok"}
    found = names(fw)
    assert set(found) == {"web", "outer", "inner"}
    assert fw.state.find_alias("web") == web_uuid  # updated in place
    assert found["web"]["content"] == "10.0.0.2\n10.0.0.3"
    assert len(fw.state.backups) == backups + 1
    assert fw.state.pending("alias")  # saved, not live until reconfigure


def test_import_refusal_saves_nothing_and_keys_messages_by_entry(
    fw: EmulatorServer, api: httpx.Client
) -> None:
    backups = len(fw.state.backups)
    answer = api.post(IMPORT, json=aliases(
        good={"name": "good", "type": "host", "content": "10.0.0.1"},
        bad={"name": "bad", "type": "port", "content": "notaport"},
    )).json()  # fmt: skip
    assert answer["status"] == "failed"
    assert answer["validations"] == {"bad.content": 'Entry "notaport" is not a valid port number.'}
    assert (answer["new"], answer["existing"]) == (2, 0)  # counted before validating
    assert fw.state.list("alias") == {}
    assert len(fw.state.backups) == backups


def test_import_refuses_a_get_and_ignores_a_body_without_aliases(
    fw: EmulatorServer, api: httpx.Client
) -> None:
    got = api.get(IMPORT)
    assert got.status_code == 500
    assert got.json() == {"errorMessage": "Unsupported request type", "errorTitle": ""}
    bodies: list[dict[str, Any]] = [{}, {"data": {}}, {"data": {"aliases": {"alias": {}}}}]
    for body in bodies:
        assert api.post(IMPORT, json=body).json() == {"existing": 0, "new": 0, "status": "failed"}
    # Internal aliases and entries without a name are skipped.
    answer = api.post(IMPORT, json=aliases(
        x={"name": "lan_net", "type": "internal"}, y={"type": "host", "content": "10.0.0.1"}
    )).json()  # fmt: skip
    assert answer == {"existing": 0, "new": 0, "status": "ok"}


def test_import_of_an_unknown_property_is_a_plain_500(
    fw: EmulatorServer, api: httpx.Client
) -> None:
    got = api.post(IMPORT, json=aliases(a={"name": "web", "type": "host", "nosuch": "1"}))
    assert got.status_code == 500
    assert got.json() == {"errorMessage": "Unexpected error, check log for details"}
    assert fw.state.list("alias") == {}


# -- rule upload -----------------------------------------------------------------------


@pytest.mark.parametrize("fw", ["24.7", "25.7"], indirect=True)
def test_upload_rules_is_missing_before_26_1(fw: EmulatorServer, api: httpx.Client) -> None:
    got = api.post(UPLOAD, json={"payload": rules_csv(rule(R1))})
    assert got.status_code == 404


@pytest.mark.parametrize("fw", ["26.1", "26.7"], indirect=True)
def test_upload_creates_at_the_offered_uuids_and_updates_in_place(
    fw: EmulatorServer, api: httpx.Client
) -> None:
    Drift(fw.state).add("rule", {"interface": "wan", "description": "old", "sequence": "500"}, R3)
    backups = len(fw.state.backups)
    payload = rules_csv(
        rule(R1), rule(R2, description='quoted, "x"'), rule(R3, interface="lan,wan")
    )
    answer = api.post(UPLOAD, json={"payload": payload}).json()
    assert answer == {
        "validations": [], "inserted": 2, "updated": 1, "uuids": {R1: 0, R2: 1, R3: 2},
        "fieldnames": ["@uuid", "interface", "protocol", "destination_net", "description"],
    }  # fmt: skip
    items = fw.state.list("rule")
    assert set(items) == {R1, R2, R3}
    assert items[R2]["description"] == 'quoted, "x"'
    assert items[R3]["interface"] == "lan,wan"
    assert items[R3]["sequence"] == "500"  # a field the CSV leaves out is kept
    # New rows take FilterSequenceField's default in turn: the highest so far plus 100.
    assert (items[R1]["sequence"], items[R2]["sequence"]) == ("600", "700")
    assert len(fw.state.backups) == backups + 1


@pytest.mark.parametrize("fw", ["26.1", "26.7"], indirect=True)
def test_a_refused_row_is_dropped_and_the_others_saved(
    fw: EmulatorServer, api: httpx.Client
) -> None:
    payload = rules_csv(rule(R1), rule(R2, destination_net="no_such_alias"), rule(R3))
    answer = api.post(UPLOAD, json={"payload": payload}).json()
    # The answer is the first pass's: every row counted, the refused one named by index.
    assert answer["validations"] == [{
        "sequence": 1, "message": "no_such_alias is not a valid source IP address or alias.",
        "field": "destination_net",
    }]  # fmt: skip
    assert (answer["inserted"], answer["updated"]) == (3, 0)
    # ... yet the second pass saved the rows that passed.
    assert set(fw.state.list("rule")) == {R1, R3}


def test_an_invalid_rule_already_there_refuses_the_upload_and_saves_nothing(
    fw: EmulatorServer, api: httpx.Client
) -> None:
    # An interface removed since the rule was made: the rule fails validation now.
    with fw.state.lock:
        fw.state.items["rule"][R3] = {
            **fw.state.collections["rule"].defaults(),
            "interface": "opt9",
        }
    answer = api.post(UPLOAD, json={"payload": rules_csv(rule(R1), rule(R2))}).json()
    assert [v["sequence"] for v in answer["validations"]] == [None]
    assert answer["validations"][0]["field"] == "interface"
    assert set(fw.state.list("rule")) == {R3}


@pytest.mark.parametrize(("fw", "refused"), [("26.1", False), ("26.7", True)], indirect=["fw"])
def test_a_malformed_uuid_is_refused_from_26_7(
    fw: EmulatorServer, api: httpx.Client, refused: bool
) -> None:
    answer = api.post(UPLOAD, json={"payload": rules_csv(rule("NOT-A-UUID"), rule(R2))}).json()
    if refused:
        assert answer["validations"] == [
            {"sequence": 0, "field": "@uuid", "message": "Invalid UUID offered (NOT-A-UUID)"}
        ]
        assert set(fw.state.list("rule")) == {R2}
    else:
        # 26.1's ArrayField::add() takes any key.
        assert answer["validations"] == []
        assert set(fw.state.list("rule")) == {"NOT-A-UUID", R2}


def test_upload_without_a_payload_fails(api: httpx.Client) -> None:
    assert api.post(UPLOAD, json={"other": 1}).json() == {"status": "failed"}
    assert api.get(UPLOAD).json() == {"status": "failed"}


def test_fgetcsv_keeps_backslash_escapes_and_reads_blank_lines() -> None:
    text = 'a,b\n"x, y","say ""hi"""\n\n"back\\"slash",2\n'
    assert fgetcsv(text, ",") == [
        ["a", "b"], ["x, y", 'say "hi"'], [None], ['back\\"slash', "2"],
    ]  # fmt: skip
    assert fgetcsv('a;"b;c"\n', ";") == [["a", "b;c"]]
