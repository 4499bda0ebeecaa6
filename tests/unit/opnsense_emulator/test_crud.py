"""CRUD answers of ApiMutableModelControllerBase and the item controllers."""

from __future__ import annotations

import re
import uuid as uuidlib
from typing import Any

import httpx
import pytest

from controller.testing.opnsense import EmulatorServer

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
ALIAS = "/api/firewall/alias"
FILTER = "/api/firewall/filter"
UNBOUND = "/api/unbound/settings"


def add_alias(api: httpx.Client, name: str, content: str = "10.0.0.1", **extra: str) -> str:
    body = {"alias": {"name": name, "type": "host", "content": content, **extra}}
    answer = api.post(f"{ALIAS}/addItem", json=body).json()
    assert answer["result"] == "saved", answer
    return str(answer["uuid"])


def test_add_answers_saved_with_a_fresh_uuid4(api: httpx.Client) -> None:
    first, second = add_alias(api, "one"), add_alias(api, "two")
    assert UUID4.match(first) and UUID4.match(second) and first != second


def test_get_item_renders_option_maps(api: httpx.Client) -> None:
    uuid = add_alias(api, "web", "10.0.0.1\n10.0.0.2", description="Web")
    alias = api.get(f"{ALIAS}/getItem/{uuid}").json()["alias"]
    assert alias["name"] == "web"
    assert alias["type"]["host"] == {"value": "Host(s)", "selected": 1}
    assert alias["type"]["network"]["selected"] == 0
    assert alias["content"]["10.0.0.1"] == {"value": "10.0.0.1", "selected": 1}
    # getItemAction appends every alias, selected or not, with its description.
    assert alias["content"]["web"] == {"selected": 0, "value": "web", "description": "Web"}
    assert alias["content"]["bogons"]["selected"] == 0


def test_get_unknown_uuid_answers_empty_list(api: httpx.Client) -> None:
    unknown = str(uuidlib.uuid4())
    assert api.get(f"{FILTER}/getRule/{unknown}").json() == []
    assert api.get(f"{UNBOUND}/getHostOverride/{unknown}").json() == []


def test_get_unknown_alias_still_lists_aliases(api: httpx.Client) -> None:
    # PHP creates $response['alias']['content'] on the fly, so never [] for aliases.
    answer = api.get(f"{ALIAS}/getItem/{uuidlib.uuid4()}").json()
    assert list(answer) == ["alias"] and list(answer["alias"]) == ["content"]
    assert "sshlockout" in answer["alias"]["content"]


def test_get_without_uuid_gives_defaults(api: httpx.Client) -> None:
    rule = api.get(f"{FILTER}/getRule").json()["rule"]
    assert rule["enabled"] == "1"
    assert rule["action"]["pass"]["selected"] == 1
    assert rule["protocol"]["any"]["selected"] == 1
    assert rule["source_net"] == "any"


def test_set_with_unknown_valid_uuid_creates_it(api: httpx.Client, fw: EmulatorServer) -> None:
    wanted = "11111111-2222-4333-8444-555555555555"
    answer = api.post(
        f"{ALIAS}/setItem/{wanted}",
        json={"alias": {"name": "det", "type": "host", "content": "10.1.1.1"}},
    )
    assert answer.json() == {"result": "saved"}
    assert fw.state.get("alias", wanted) is not None
    assert api.get(f"{ALIAS}/getAliasUUID/det").json() == {"uuid": wanted}


@pytest.mark.parametrize(
    "bad",
    ["not-a-uuid", "11111111-2222-1333-8444-555555555555", "ABCDEF12-2222-4333-8444-555555555555"],
)
def test_set_with_invalid_uuid_fails_without_validations(api: httpx.Client, bad: str) -> None:
    answer = api.post(f"{ALIAS}/setItem/{bad}", json={"alias": {"name": "x", "type": "host"}})
    assert answer.json() == {"result": "failed"}


def test_set_updates_and_validates(api: httpx.Client, fw: EmulatorServer) -> None:
    uuid = add_alias(api, "web")
    ok = api.post(f"{ALIAS}/setItem/{uuid}", json={"alias": {"content": "10.9.9.9"}}).json()
    assert ok == {"result": "saved"}
    assert fw.state.get("alias", uuid)["content"] == "10.9.9.9"  # type: ignore[index]
    bad = api.post(f"{ALIAS}/setItem/{uuid}", json={"alias": {"content": "not valid"}}).json()
    assert bad["result"] == "failed" and "alias.content" in bad["validations"]
    assert fw.state.get("alias", uuid)["content"] == "10.9.9.9"  # type: ignore[index]


def test_rename_follows_into_rules(api: httpx.Client, fw: EmulatorServer) -> None:
    uuid = add_alias(api, "old")
    rule = api.post(f"{FILTER}/addRule", json={"rule": {"source_net": "old"}}).json()["uuid"]
    api.post(f"{ALIAS}/setItem/{uuid}", json={"alias": {"name": "new"}})
    assert fw.state.get("rule", rule)["source_net"] == "new"  # type: ignore[index]


def test_delete_and_not_found(api: httpx.Client, fw: EmulatorServer) -> None:
    uuid = add_alias(api, "gone")
    assert api.post(f"{ALIAS}/delItem/{uuid}").json() == {"result": "deleted"}
    assert api.post(f"{ALIAS}/delItem/{uuid}").json() == {"result": "not found"}
    assert fw.state.get("alias", uuid) is None


def test_alias_in_use_cannot_be_deleted(api: httpx.Client, fw: EmulatorServer) -> None:
    uuid = add_alias(api, "used")
    api.post(f"{FILTER}/addRule", json={"rule": {"destination_net": "used"}})
    r = api.post(f"{ALIAS}/delItem/{uuid}")
    assert r.status_code == 500
    assert r.json() == {
        "errorMessage": "Cannot delete alias used. Currently in use by "
        "\n[OPNsense.Firewall.Filter.rules.rule.0/destination_net] ",
        "errorTitle": "Alias in use",
    }
    assert fw.state.get("alias", uuid) is not None


@pytest.mark.parametrize(
    ("suffix", "start", "answer", "end"),
    [
        ("", "1", {"result": "Disabled", "changed": True}, "0"),
        ("", "0", {"result": "Enabled", "changed": True}, "1"),
        ("/0", "1", {"result": "Disabled", "changed": True}, "0"),
        ("/1", "1", {"result": "Enabled", "changed": False}, "1"),
        ("/7", "1", {"result": "failed", "changed": False}, "1"),
    ],
)
def test_toggle(
    api: httpx.Client,
    fw: EmulatorServer,
    suffix: str,
    start: str,
    answer: dict[str, Any],
    end: str,
) -> None:
    uuid = add_alias(api, "t", enabled=start)
    assert api.post(f"{ALIAS}/toggleItem/{uuid}{suffix}").json() == answer
    assert fw.state.get("alias", uuid)["enabled"] == end  # type: ignore[index]


def test_toggle_unknown_uuid(api: httpx.Client) -> None:
    assert api.post(f"{FILTER}/toggleRule/{uuidlib.uuid4()}").json() == {"result": "failed"}


def test_get_alias_uuid_unknown_name(api: httpx.Client) -> None:
    assert api.get(f"{ALIAS}/getAliasUUID/nothere").json() == []


def test_host_override_crud(api: httpx.Client, fw: EmulatorServer) -> None:
    body = {"host": {"hostname": "www", "domain": "example.com", "rr": "A", "server": "10.0.0.5"}}
    uuid = api.post(f"{UNBOUND}/addHostOverride", json=body).json()["uuid"]
    host = api.get(f"{UNBOUND}/getHostOverride/{uuid}").json()["host"]
    assert host["server"] == "10.0.0.5" and host["rr"]["A"]["selected"] == 1
    assert api.post(f"{UNBOUND}/toggleHostOverride/{uuid}").json()["result"] == "Disabled"
    assert api.post(f"{UNBOUND}/delHostOverride/{uuid}").json() == {"result": "deleted"}


def search(api: httpx.Client, path: str, **params: Any) -> dict[str, Any]:
    answer: dict[str, Any] = api.post(path, json=params).json()
    return answer


def test_search_paging(api: httpx.Client) -> None:
    for n in range(5):
        add_alias(api, f"a{n}")
    page = search(api, f"{ALIAS}/searchItem", current=2, rowCount=2, searchPhrase="Host")
    assert (page["total"], page["rowCount"], page["current"]) == (5, 2, 2)
    assert [r["name"] for r in page["rows"]] == ["a2", "a3"]
    everything = search(api, f"{ALIAS}/searchItem", rowCount=-1)
    assert everything["total"] == 9  # five plus the four static aliases
    assert everything["rowCount"] == 9


def test_search_phrase_needs_every_token(api: httpx.Client) -> None:
    add_alias(api, "alpha", description="first web")
    add_alias(api, "beta", description="second web")
    rows = search(api, f"{ALIAS}/searchItem", searchPhrase="web SECOND")["rows"]
    assert [r["name"] for r in rows] == ["beta"]


def test_search_phrase_matches_displayed_labels(api: httpx.Client) -> None:
    add_alias(api, "hosts1")
    api.post(
        f"{ALIAS}/addItem",
        json={"alias": {"name": "nets1", "type": "network", "content": "10.0.0.0/8"}},
    )
    rows = search(api, f"{ALIAS}/searchItem", searchPhrase="Network(s)")["rows"]
    assert [r["name"] for r in rows] == ["nets1"]


def test_search_sort_descending(api: httpx.Client) -> None:
    for name in ("b", "a", "c"):
        add_alias(api, name)
    rows = search(api, f"{ALIAS}/searchItem", sort={"name": "desc"}, searchPhrase="Host")["rows"]
    assert [r["name"] for r in rows] == ["c", "b", "a"]


@pytest.mark.parametrize("fw", ["24.7"], indirect=True)
def test_search_rows_show_display_values_before_25_7(api: httpx.Client) -> None:
    add_alias(api, "old")
    row = search(api, f"{ALIAS}/searchItem", searchPhrase="old")["rows"][0]
    assert row["type"] == "Host(s)" and "%type" not in row


def test_search_rows_raw_plus_labels_from_25_7(api: httpx.Client) -> None:
    add_alias(api, "new")
    row = search(api, f"{ALIAS}/searchItem", searchPhrase="new")["rows"][0]
    assert row["type"] == "host" and row["%type"] == "Host(s)"
    assert row["categories_uuid"] == []


def test_rule_search_without_interface_lists_floating_rules_only(api: httpx.Client) -> None:
    api.post(f"{FILTER}/addRule", json={"rule": {"interface": "lan", "description": "one"}})
    api.post(f"{FILTER}/addRule", json={"rule": {"interface": "lan,wan", "description": "two"}})
    plain = search(api, f"{FILTER}/searchRule")
    assert [r["description"] for r in plain["rows"]] == ["two"]
    on_lan = search(api, f"{FILTER}/searchRule", interface="lan")
    assert [r["description"] for r in on_lan["rows"]] == ["one"]


@pytest.mark.parametrize("fw", ["26.7"], indirect=True)
def test_rule_search_lists_every_rule_in_26_7(api: httpx.Client) -> None:
    api.post(f"{FILTER}/addRule", json={"rule": {"interface": "lan", "description": "one"}})
    api.post(f"{FILTER}/addRule", json={"rule": {"interface": "lan,wan", "description": "two"}})
    rows = search(api, f"{FILTER}/searchRule")["rows"]
    assert sorted(r["description"] for r in rows) == ["one", "two"]


@pytest.mark.parametrize(("fw", "first"), [("25.1", "1"), ("25.7", "101")], indirect=["fw"])
def test_rule_sequence_default(api: httpx.Client, fw: EmulatorServer, first: str) -> None:
    uuid = api.post(f"{FILTER}/addRule", json={"rule": {}}).json()["uuid"]
    assert fw.state.get("rule", uuid)["sequence"] == first  # type: ignore[index]


def test_whole_model_get_for_oxl_client(api: httpx.Client) -> None:
    uuid = add_alias(api, "m")
    model = api.get(f"{ALIAS}/get").json()
    assert model["alias"]["aliases"]["alias"][uuid]["name"] == "m"
    rules = api.get(f"{FILTER}/get").json()
    assert rules["filter"]["rules"]["rule"] == []
    hosts = api.get(f"{UNBOUND}/get").json()
    assert hosts["unbound"]["hosts"]["host"] == []


def test_oxl_style_snake_case_writes(api: httpx.Client, fw: EmulatorServer) -> None:
    r = api.post(
        f"{ALIAS}/add_item", json={"alias": {"name": "ox", "type": "port", "content": "80\n443"}}
    )
    uuid = r.json()["uuid"]
    assert api.post(f"{ALIAS}/set_item/{uuid}", json={"alias": {"content": "8080"}}).json() == {
        "result": "saved"
    }
    assert api.post(f"{ALIAS}/del_item/{uuid}").json() == {"result": "deleted"}
