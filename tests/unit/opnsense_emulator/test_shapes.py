"""The emulator's answers have the shapes of upstream's (recorded in tests/data/opnsense)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.testing.opnsense import EmulatorServer

DATA = Path(__file__).resolve().parents[2] / "data" / "opnsense"


def shape(value: Any) -> Any:
    """Keys and value types; lists by the shape of their first element."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def covers(actual: Any, recorded: Any) -> bool:
    """Every key upstream records is there with the same type (extra keys allowed)."""
    if isinstance(recorded, dict):
        return isinstance(actual, dict) and all(
            k in actual and covers(actual[k], v) for k, v in recorded.items()
        )
    if isinstance(recorded, list):
        return isinstance(actual, list) and (
            not recorded or not actual or covers(actual[0], recorded[0])
        )
    return bool(actual == recorded)


def recorded(name: str) -> Any:
    return shape(json.loads((DATA / f"{name}.json").read_text())["example"])


def answers(fw: EmulatorServer, api: httpx.Client) -> dict[str, Any]:
    bad = httpx.Client(base_url=fw.url, auth=(fw.api_key, "nope"))
    fw.add_key("k2", "s2", privileges=("/api/unbound/",))
    limited = httpx.Client(base_url=fw.url, auth=("k2", "s2"))
    add = api.post(
        "/api/firewall/alias/addItem",
        json={"alias": {"name": "web", "type": "host", "content": "10.0.0.1"}},
    ).json()
    uuid = add["uuid"]
    rule = api.post("/api/firewall/filter/addRule", json={"rule": {"source_net": "web"}}).json()
    first = api.get("/api/core/backup/backups/this").json()["items"]
    return {
        "error_401": bad.get("/api/firewall/alias/searchItem").json(),
        "error_403": limited.get("/api/firewall/alias/searchItem").json(),
        "error_400": api.post(
            "/api/firewall/alias/addItem", content=b"", headers={"Content-Type": "application/json"}
        ).json(),
        "error_404": api.get("/api/x/y/z").json(),
        "error_500_user": api.post(f"/api/firewall/alias/delItem/{uuid}").json(),
        "add_saved": add,
        "add_failed": api.post(
            "/api/firewall/alias/addItem", json={"alias": {"type": "host"}}
        ).json(),
        "set_saved": api.post(
            f"/api/firewall/alias/setItem/{uuid}", json={"alias": {"description": "d"}}
        ).json(),
        "toggle": api.post(f"/api/firewall/alias/toggleItem/{uuid}").json(),
        "del_deleted": api.post(f"/api/firewall/filter/delRule/{rule['uuid']}").json(),
        "search": api.get("/api/firewall/alias/searchItem?searchPhrase=web").json(),
        "get_alias": api.get(f"/api/firewall/alias/getItem/{uuid}").json(),
        "alias_uuid": api.get("/api/firewall/alias/getAliasUUID/web").json(),
        "reconfigure": api.post("/api/firewall/alias/reconfigure").json(),
        "filter_apply": api.post("/api/firewall/filter/apply").json(),
        "savepoint": api.post("/api/firewall/filter/savepoint").json(),
        "backups": api.get("/api/core/backup/backups/this").json(),
        "backup_diff": api.get(
            f"/api/core/backup/diff/this/{first[0]['id']}/{first[1]['id']}"
        ).json(),
        "backup_revert": api.post(f"/api/core/backup/revertBackup/{first[1]['id']}").json(),
        "firmware_status": api.get("/api/core/firmware/status").json(),
    }


def test_answers_match_recorded_shapes(fw: EmulatorServer, api: httpx.Client) -> None:
    got = answers(fw, api)
    names = sorted(p.stem for p in DATA.glob("*.json"))
    assert sorted(got) == names
    for name in names:
        assert covers(shape(got[name]), recorded(name)), (name, shape(got[name]))


@pytest.mark.parametrize(
    "name",
    [
        "add_saved",
        "set_saved",
        "del_deleted",
        "toggle",
        "reconfigure",
        "error_401",
        "error_403",
        "error_400",
        "error_404",
    ],
)
def test_small_answers_have_exactly_upstream_keys(
    fw: EmulatorServer, api: httpx.Client, name: str
) -> None:
    got = answers(fw, api)[name]
    assert sorted(got) == sorted(json.loads((DATA / f"{name}.json").read_text())["example"])
