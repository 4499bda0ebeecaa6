"""Snapshots: what is kept, what the journal masks, and how they come back from it."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from controller.model.document import Document
from controller.plan.diff import Observed
from controller.providers.base import Change
from controller.providers.linux import operations, remote_snapshot
from controller.providers.linux import snapshot as snapshots
from controller.providers.linux.apply import ApplyRefusedError, LinuxTransaction
from controller.providers.linux.operations import SYSCTL_FILE, Target, rollback_steps
from controller.store import Command, StateStore, Trigger

NODE = Document(
    "Node", "web-1", {"platform": "linux", "address": "192.0.2.10", "hostKeyChecking": False}
)

ANSWER: dict[str, Any] = {
    "host": {"packageManager": "dpkg", "serviceManager": None, "nft": True},
    "files": {
        "/etc/app/token": {
            "exists": True,
            "type": "file",
            "mode": "0600",
            "uid": 0,
            "gid": 0,
            "content": "c2VjcmV0Cg==",
            "missingDirs": [],
        },
        "/etc/motd": {"exists": False, "missingDirs": []},
        SYSCTL_FILE: {"exists": False, "missingDirs": []},
    },
    "users": {
        "deploy": {
            "exists": True,
            "passwd": "deploy:x:2001:2001::/home/deploy:/bin/sh",
            "shadow": "deploy:$6$salt$HASH:19000:0:99999:7:::",
            "groupLines": {"deploy": "deploy:x:2001:", "adm": "adm:x:4:deploy"},
            "gshadowLines": {"deploy": "deploy:$6$g$GHASH::", "adm": "adm:*::deploy"},
        }
    },
    "sysctls": {"net.ipv4.ip_forward": {"exists": True, "value": "0"}},
}

TARGETS = [
    Target(
        "Sysctl", "fwd", "net.ipv4.ip_forward", "update", {"key": "net.ipv4.ip_forward", "value": 1}
    ),
    Target(
        "File",
        "token",
        "/etc/app/token",
        "update",
        {"path": "/etc/app/token", "content": "x"},
        b"x",
        sensitive=True,
    ),
    Target("File", "motd", "/etc/motd", "create", {"path": "/etc/motd"}, b"hi\n"),
    Target("User", "deploy", "deploy", "update", {"name": "deploy", "groups": ["adm"]}),
]


def test_request_reads_every_object_once_with_the_groups_usermod_may_touch() -> None:
    request = snapshots.request_for(TARGETS)
    assert request["files"] == ["/etc/app/token", "/etc/motd", SYSCTL_FILE]
    assert request["users"] == [{"name": "deploy", "groups": ["adm"]}]
    assert request["sysctls"] == ["net.ipv4.ip_forward"]


def test_objects_in_apply_order_with_secrets_split_out() -> None:
    snap = snapshots.build("web-1", TARGETS, ANSWER)
    assert [(o["kind"], o["key"]) for o in snap["objects"]] == [
        ("User", "deploy"),
        ("File", "/etc/app/token"),
        ("File", "/etc/motd"),
        ("Sysctl", "net.ipv4.ip_forward"),
        ("Sysctl", SYSCTL_FILE),
        ("File", operations.TEMP_KEY),
    ]
    # a tag of its own per snapshot, which names its transaction's temp files
    assert snapshots.tag_of(snap) != snapshots.tag_of(snapshots.build("web-1", TARGETS, ANSWER))
    user = snap["objects"][0]["before"]
    assert user["shadow"] == "deploy:***:19000:0:99999:7:::"
    assert user["passwordHash"] == "$6$salt$HASH"
    # nothing the store would mask but the secrets: no "passwd" field, no group-name keys
    assert user["userLine"] == "deploy:x:2001:2001::/home/deploy:/bin/sh"
    assert user["gshadowLines"] == [["adm", "adm:*::deploy"], ["deploy", "deploy:***::"]]
    assert snapshots.objects_of(snap)[0]["before"]["gshadowLines"] == {
        "deploy": "deploy:***::",
        "adm": "adm:*::deploy",
    }
    assert user["groupPasswordHashes"] == {"deploy": "$6$g$GHASH"}
    token = snap["objects"][1]["before"]
    assert "content" not in token and token["secretContent"] == "c2VjcmV0Cg=="
    assert snapshots.errors(snap) == []


def test_journal_masks_secrets_and_the_snapshot_comes_back_in_order(tmp_path: Path) -> None:
    snap = snapshots.build("web-1", TARGETS, ANSWER)
    with StateStore(tmp_path / "state.db") as store:
        txn = store.begin_transaction(
            store.start_run(Trigger.CLI, Command.APPLY, "s", None), "web-1"
        )
        for kind, name, key, before in snapshots.journal_records(snap):
            store.record_snapshot(txn, kind, name, key, before)
        back = snapshots.from_journal("web-1", store.snapshots(txn))
    text = json.dumps(back)
    assert "HASH" not in text and "c2VjcmV0" not in text  # no hash, no sensitive content
    assert [o["key"] for o in back["objects"]] == [o["key"] for o in snap["objects"]]
    assert back["objects"][3] == snap["objects"][3]  # nothing secret: kept as it was
    assert back["objects"][0]["before"]["passwordHash"] == "***"


def test_rollback_keeps_the_live_hash_when_the_journal_masked_it() -> None:
    snap = snapshots.build("web-1", TARGETS[3:], ANSWER)
    masked = json.loads(json.dumps(snap).replace("$6$salt$HASH", "***"))
    current = {
        "users": {
            "deploy": dict(
                ANSWER["users"]["deploy"], passwd="deploy:x:2001:2001::/home/deploy:/bin/bash"
            )
        }
    }
    plan = rollback_steps(snapshots.objects_of(masked), current)
    (step,) = plan.steps
    sent = json.loads(base64.b64decode(step.stdin))
    assert sent["shadow"] == "deploy:$6$salt$HASH:19000:0:99999:7:::"
    assert sent["passwd"] == "deploy:x:2001:2001::/home/deploy:/bin/sh"
    assert plan.problems == []


def test_a_prune_without_an_owned_key_is_refused(tmp_path: Path) -> None:
    change = Change("File", "gone", "delete", None, Observed(None, {"type": "file"}))
    with pytest.raises(ApplyRefusedError, match="refusing to guess"):
        LinuxTransaction.build(NODE, [change], [], tree=None)  # type: ignore[arg-type]
    owned = {("File", "gone"): "/etc/gone"}
    txn = LinuxTransaction.build(NODE, [change], [], None, owned)  # type: ignore[arg-type]
    (target,) = txn.targets
    assert (target.key, target.present, target.sensitive) == ("/etc/gone", False, True)


def test_rollback_refuses_a_snapshot_of_another_node() -> None:
    snap = snapshots.build("db-1", TARGETS[:1], ANSWER)
    with pytest.raises(ValueError, match="db-1"):
        asyncio.run(LinuxTransaction(NODE).rollback(snap))
    with pytest.raises(ValueError, match="not a Linux snapshot"):
        asyncio.run(LinuxTransaction(NODE).rollback({"objects": []}))


def test_account_lines_are_replaced_inserted_and_removed_in_place(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0::/root:/bin/sh\nold:x:5:5::/:/bin/sh\nb:x:7:7::/:/bin/sh\n")
    passwd.chmod(0o640)
    assert remote_snapshot.replace_lines(
        str(passwd), {"old": "old:x:5:5:back:/:/bin/sh", "b": None, "new": "new:x:9:9::/:/bin/sh"}
    )
    assert passwd.read_text() == (
        "root:x:0:0::/root:/bin/sh\nold:x:5:5:back:/:/bin/sh\nnew:x:9:9::/:/bin/sh\n"
    )
    assert passwd.stat().st_mode & 0o777 == 0o640
    # the same again changes nothing (rollback is idempotent)
    assert not remote_snapshot.replace_lines(
        str(passwd), {"b": None, "new": "new:x:9:9::/:/bin/sh"}
    )
    assert [p.name for p in tmp_path.iterdir()] == ["passwd"]  # no temp file left


def test_gather_runs_as_nodes_run_it(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"\x00\xffbinary")
    target.chmod(0o604)
    request = {"files": [str(target), str(tmp_path / "a" / "b" / "c")]}
    out = subprocess.run(
        ["sh", "-c", snapshots.gather_command()],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    files = json.loads(out.stdout)["files"]
    assert files[str(target)]["content"] == "AP9iaW5hcnk="
    assert files[str(target)]["mode"] == "0604"
    missing = files[str(tmp_path / "a" / "b" / "c")]
    assert missing == {"exists": False, "missingDirs": [str(tmp_path / "a"), str(tmp_path / "a/b")]}
