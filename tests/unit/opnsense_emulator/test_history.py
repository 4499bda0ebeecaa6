"""Config history (/api/core/backup/), apply/pending tracking, and the rollback endpoints."""

from __future__ import annotations

import time

import httpx
import pytest

from controller.testing.opnsense import EmulatorServer

FILTER = "/api/firewall/filter"


def backups(api: httpx.Client) -> list[dict[str, object]]:
    items: list[dict[str, object]] = api.get("/api/core/backup/backups/this").json()["items"]
    return items


def add_rule(api: httpx.Client, description: str) -> str:
    answer = api.post(f"{FILTER}/addRule", json={"rule": {"description": description}}).json()
    assert answer["result"] == "saved"
    return str(answer["uuid"])


def test_every_save_adds_a_backup_newest_first(api: httpx.Client) -> None:
    start = len(backups(api))
    uuid = add_rule(api, "r1")
    api.post(f"{FILTER}/setRule/{uuid}", json={"rule": {"description": "r2"}})
    api.post(f"{FILTER}/toggleRule/{uuid}")
    api.post(f"{FILTER}/delRule/{uuid}")
    items = backups(api)
    assert len(items) == start + 4
    times = [float(str(i["time"])) for i in items]
    assert times == sorted(times, reverse=True)
    assert items[0]["description"] == f"/api/firewall/filter/delRule/{uuid} made changes"
    assert items[0]["id"] == f"config-{items[0]['time']}.xml"


def test_history_keeps_backup_count_entries(api: httpx.Client, fw: EmulatorServer) -> None:
    fw.state.backup_count = 3
    for n in range(5):
        add_rule(api, f"r{n}")
    items = backups(api)
    assert len(items) == 3
    assert items[-1]["description"] == "/api/firewall/filter/addRule made changes"


def test_failed_writes_add_no_backup(api: httpx.Client) -> None:
    start = len(backups(api))
    api.post(f"{FILTER}/addRule", json={"rule": {"action": "nope"}})
    api.post(f"{FILTER}/delRule/8b7d0f5e-3c4a-4b1e-9f2d-1a2b3c4d5e6f")
    assert len(backups(api)) == start


def test_download_diff_and_revert(api: httpx.Client, fw: EmulatorServer) -> None:
    add_rule(api, "keep")
    before = str(backups(api)[0]["id"])
    add_rule(api, "later")
    after = str(backups(api)[0]["id"])
    latest = api.get("/api/core/backup/download/this")
    assert latest.headers["content-type"] == "application/octet-stream"
    assert b"<description>later</description>" in latest.content
    old = api.get(f"/api/core/backup/download/this/{before}")
    assert b"later" not in old.content and b"keep" in old.content
    diff = api.get(f"/api/core/backup/diff/this/{after}/{before}").json()["items"]
    # htmlspecialchars() on every line, as BackupController::diffAction does
    assert "+            &lt;description&gt;later&lt;/description&gt;" in diff
    assert api.post(f"/api/core/backup/revertBackup/{before}").json() == {"status": "reverted"}
    assert [r["description"] for r in fw.state.list("rule").values()] == ["keep"]
    assert api.post("/api/core/backup/revertBackup/config-1.xml").json() == {"status": "not_found"}


def test_apply_and_reconfigure_track_pending_changes(api: httpx.Client, fw: EmulatorServer) -> None:
    add_rule(api, "r")
    assert fw.state.pending("filter")
    assert api.post(f"{FILTER}/apply").json() == {"status": "OK\n\n"}
    assert not fw.state.pending("filter")
    api.post(
        "/api/unbound/settings/addHostOverride",
        json={"host": {"hostname": "a", "domain": "b.c", "server": "10.0.0.1"}},
    )
    assert fw.state.pending("unbound")
    assert api.post("/api/unbound/service/reconfigure").json() == {"status": "ok"}
    assert not fw.state.pending("unbound")
    api.post(
        "/api/firewall/alias/addItem",
        json={"alias": {"name": "al", "type": "host", "content": "10.0.0.1"}},
    )
    assert fw.state.pending("alias")
    assert api.post("/api/firewall/alias/reconfigure").json() == {"status": "ok"}
    assert not fw.state.pending("alias")


def savepoint(api: httpx.Client) -> str:
    answer = api.post(f"{FILTER}/savepoint").json()
    assert answer["status"] == "ok" and answer["retention"] == "100"
    return str(answer["revision"])


def wait_for(check: object, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(check) and check():
            return True
        time.sleep(0.05)
    return False


def test_savepoint_then_apply_rolls_back_after_the_timer(
    api: httpx.Client, fw: EmulatorServer
) -> None:
    add_rule(api, "before")
    revision = savepoint(api)
    assert fw.state.backups[-1].time == revision
    add_rule(api, "after")
    assert api.post(f"{FILTER}/apply/{revision}").json() == {"status": "OK\n\n"}
    assert len(fw.state.list("rule")) == 2  # not yet
    assert wait_for(lambda: len(fw.state.list("rule")) == 1)
    assert [r["description"] for r in fw.state.list("rule").values()] == ["before"]
    assert fw.rollback.fired == [revision]
    assert not fw.state.pending("filter")  # the rollback reloads the filter


def test_cancel_rollback_keeps_the_change(api: httpx.Client, fw: EmulatorServer) -> None:
    revision = savepoint(api)
    add_rule(api, "after")
    api.post(f"{FILTER}/apply/{revision}")
    assert api.post(f"{FILTER}/cancelRollback/{revision}").json() == {"status": "\n\n"}
    time.sleep(0.8)
    assert len(fw.state.list("rule")) == 1
    assert fw.rollback.fired == []
    again = api.post(f"{FILTER}/cancelRollback/{revision}").json()
    assert again == {"status": "Execute error\n\n"}


def test_only_one_rollback_timer_runs(api: httpx.Client, fw: EmulatorServer) -> None:
    first = savepoint(api)
    second = savepoint(api)
    api.post(f"{FILTER}/apply/{first}")
    api.post(f"{FILTER}/apply/{second}")  # flock -n: nothing armed
    assert fw.rollback.armed == first
    assert api.post(f"{FILTER}/cancelRollback/{second}").json()["status"] == "Execute error\n\n"
    assert api.post(f"{FILTER}/cancelRollback/{first}").json()["status"] == "\n\n"


def test_revert_restores_at_once(api: httpx.Client, fw: EmulatorServer) -> None:
    revision = savepoint(api)
    add_rule(api, "after")
    assert api.post(f"{FILTER}/revert/{revision}").json() == {"status": "ok"}
    assert fw.state.list("rule") == {}
    unknown = api.post(f"{FILTER}/revert/123.4").json()
    assert unknown == {"status": "unknown (or removed) savepoint"}


@pytest.mark.parametrize("fw", ["26.7"], indirect=True)
@pytest.mark.parametrize("path", ["savepoint", "cancelRollback/1.2", "revert/1.2"])
def test_rollback_endpoints_gone_in_26_7(api: httpx.Client, path: str) -> None:
    r = api.post(f"{FILTER}/{path}")
    assert r.status_code == 404
    assert r.json() == {"errorMessage": "Endpoint not found"}


@pytest.mark.parametrize("fw", ["26.7"], indirect=True)
def test_apply_takes_no_revision_in_26_7(api: httpx.Client, fw: EmulatorServer) -> None:
    add_rule(api, "x")
    # PHP ignores surplus arguments: apply/{rev} is a plain apply, no timer.
    assert api.post(f"{FILTER}/apply/123.4").json() == {"status": "OK\n\n"}
    assert fw.rollback.armed is None
    assert not fw.state.pending("filter")


@pytest.mark.parametrize("fw", ["24.7", "25.7", "26.1"], indirect=True)
def test_rollback_endpoints_exist_up_to_26_1(api: httpx.Client) -> None:
    assert api.post(f"{FILTER}/savepoint").json()["status"] == "ok"
