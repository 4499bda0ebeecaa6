"""Transport and auth exactly as upstream's api.php, Router and ApiControllerBase."""

from __future__ import annotations

import httpx
import pytest

from controller.testing.opnsense import EmulatorServer


def test_unknown_endpoint_is_404_before_auth(fw: EmulatorServer) -> None:
    r = httpx.get(f"{fw.url}/api/firewall/alias/noSuchThing", auth=("bad", "creds"))
    assert r.status_code == 404
    assert r.json() == {"errorMessage": "Endpoint not found"}


@pytest.mark.parametrize(
    "path",
    ["/api/firewall/alias", "/api/nomodule/alias/searchItem", "/api/firewall/ALIAS/searchItem"],
)
def test_unroutable_paths_are_404(api: httpx.Client, path: str) -> None:
    assert api.get(path).status_code == 404


def test_missing_required_argument_is_404(api: httpx.Client) -> None:
    # setItemAction($uuid): ParameterMismatchException is a DispatchException.
    r = api.post("/api/firewall/alias/setItem", json={"alias": {"name": "x"}})
    assert r.status_code == 404
    assert r.json() == {"errorMessage": "Endpoint not found"}


def test_bad_credentials_are_401(fw: EmulatorServer) -> None:
    r = httpx.get(f"{fw.url}/api/firewall/alias/searchItem", auth=(fw.api_key, "wrong"))
    assert r.status_code == 401
    assert r.json() == {"status": 401, "message": "Authentication Failed"}


def test_no_authorization_header_is_bare_401(fw: EmulatorServer) -> None:
    r = httpx.get(f"{fw.url}/api/firewall/alias/searchItem")
    assert r.status_code == 401
    assert r.content == b""


def test_key_without_privilege_is_403(fw: EmulatorServer) -> None:
    fw.add_key("limited", "secret", privileges=("/api/unbound/",))
    r = httpx.get(f"{fw.url}/api/firewall/alias/searchItem", auth=("limited", "secret"))
    assert r.status_code == 403
    assert r.json() == {"status": 403, "message": "Forbidden"}
    ok = httpx.get(f"{fw.url}/api/unbound/settings/searchHostOverride", auth=("limited", "secret"))
    assert ok.status_code == 200


def test_json_content_type_with_empty_body_is_400(api: httpx.Client) -> None:
    r = api.post(
        "/api/firewall/alias/addItem", content=b"", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json() == {"status": 400, "message": "Invalid JSON syntax"}


def test_list_for_a_scalar_is_a_500_and_changes_nothing(
    api: httpx.Client, fw: EmulatorServer
) -> None:
    before = len(fw.state.backups)
    r = api.post("/api/firewall/alias/addItem", json={"alias": {"name": ["a"], "type": "host"}})
    assert r.status_code == 500
    assert r.json() == {"errorMessage": "Unexpected error, check log for details"}
    assert fw.state.list("alias") == {}
    assert len(fw.state.backups) == before


@pytest.mark.parametrize(
    "path",
    [
        "/api/firewall/alias/addItem",
        "/api/firewall/alias/setItem/8b7d0f5e-3c4a-4b1e-9f2d-1a2b3c4d5e6f",
        "/api/firewall/alias/delItem/8b7d0f5e-3c4a-4b1e-9f2d-1a2b3c4d5e6f",
        "/api/firewall/alias/toggleItem/8b7d0f5e-3c4a-4b1e-9f2d-1a2b3c4d5e6f",
        "/api/firewall/filter/addRule",
        "/api/unbound/settings/addHostOverride",
    ],
)
def test_write_command_with_get_fails_and_changes_nothing(
    api: httpx.Client, fw: EmulatorServer, path: str
) -> None:
    before = len(fw.state.backups)
    assert api.get(path).json() == {"result": "failed"}
    assert len(fw.state.backups) == before


@pytest.mark.parametrize(
    ("path", "answer"),
    [
        ("/api/firewall/alias/reconfigure", {"status": "failed"}),
        ("/api/firewall/filter/apply", {"status": "error"}),
        ("/api/firewall/filter/savepoint", {"status": "error"}),
        ("/api/unbound/service/reconfigure", {"status": "failed"}),
        ("/api/core/backup/revertBackup/config-1.xml", {"status": "failed"}),
    ],
)
def test_service_commands_with_get(api: httpx.Client, path: str, answer: dict[str, str]) -> None:
    assert api.get(path).json() == answer


@pytest.mark.parametrize("command", ["searchItem", "search_item", "searchitem", "SearchItem"])
def test_command_spellings_route(api: httpx.Client, command: str) -> None:
    r = api.get(f"/api/firewall/alias/{command}")
    assert r.status_code == 200
    assert "rows" in r.json()


def test_unknown_keys_ignored_and_json_scalars_become_strings(
    api: httpx.Client, fw: EmulatorServer
) -> None:
    body = {"rule": {"sequence": 10, "log": True, "enabled": 1, "bogus": "x", "description": "d"}}
    uuid = api.post("/api/firewall/filter/addRule", json=body).json()["uuid"]
    rule = fw.state.get("rule", uuid)
    assert rule is not None
    assert (rule["sequence"], rule["log"], rule["enabled"]) == ("10", "1", "1")
    assert "bogus" not in rule


def test_form_encoded_body_is_read_like_php(api: httpx.Client, fw: EmulatorServer) -> None:
    r = api.post(
        "/api/firewall/alias/addItem",
        content=b"alias[name]=formed&alias[type]=host&alias[content]=10.0.0.1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.json()["result"] == "saved"
    assert fw.state.find_alias("formed") is not None
