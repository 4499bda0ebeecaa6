"""Linux snapshots through the journal's escrow: secrets come back exactly, or masked."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path
from typing import Any

from controller.providers.linux import snapshot as snapshots
from controller.providers.linux.operations import Target, rollback_steps
from controller.store import Command, StateStore, Trigger, default_escrow_key_path

ANSWER: dict[str, Any] = {
    "files": {
        "/etc/app/token": {"exists": True, "type": "file", "mode": "0600", "uid": 0, "gid": 0,
                           "content": "AP9zZWNyZXQK", "missingDirs": []},
        "/etc/motd": {"exists": False, "missingDirs": []},
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
}  # fmt: skip
TARGETS = [
    Target("File", "token", "/etc/app/token", "update", {"path": "/etc/app/token"}, b"x",
           sensitive=True),
    Target("File", "motd", "/etc/motd", "create", {"path": "/etc/motd"}, b"hi\n"),
    Target("User", "deploy", "deploy", "update", {"name": "deploy", "groups": ["adm"]}),
]  # fmt: skip


def journaled(store: StateStore, snap: dict[str, object]) -> int:
    txn = store.begin_transaction(store.start_run(Trigger.CLI, Command.APPLY, "s", None), "web-1")
    for kind, name, key, before in snapshots.journal_records(snap):
        store.record_snapshot(txn, kind, name, key, before, escrow=snapshots.ESCROW)
    return txn


def test_the_snapshot_names_the_secrets_its_rollback_needs() -> None:
    snap = snapshots.build("web-1", TARGETS, ANSWER)
    assert snap["escrow"] == [
        "groupPasswordHashes",
        "passwordHash",
        "secretContent",
        "secretEnvironment",
    ]


def test_escrowed_secrets_come_back_from_the_journal_exactly(tmp_path: Path) -> None:
    snap = snapshots.build("web-1", TARGETS, ANSWER)
    with StateStore(tmp_path / "state.db") as store:
        txn = journaled(store, snap)
        stored = store.snapshots(txn)
        assert "HASH" not in json.dumps([s.before for s in stored])
        assert "AP9zZWNyZXQK" not in json.dumps([s.before for s in stored])
        opened = [dataclasses.replace(s, before=store.reveal(txn, s).before) for s in stored]
    back = snapshots.from_journal("web-1", opened)
    assert back["objects"] == snap["objects"]


def test_a_secret_left_sealed_reads_as_masked_and_rollback_says_so(tmp_path: Path) -> None:
    snap = snapshots.build("web-1", TARGETS, ANSWER)
    with StateStore(tmp_path / "state.db") as store:
        txn = journaled(store, snap)
        default_escrow_key_path(store.path).unlink()
        revealed = [store.reveal(txn, s) for s in store.snapshots(txn)]
        sealed_back = snapshots.from_journal("web-1", store.snapshots(txn))
    failures = [str(f) for r in revealed for f in r.failures]
    assert failures == [
        "File/token (/etc/app/token): secretContent could not be restored from the escrow: "
        f"no escrow key: key file {tmp_path / 'state.escrow.key'} does not exist; it is made"
        " by the first apply that escrows a secret, and the secrets sealed with it cannot be"
        " opened without it",
        *[
            f"User/deploy: {field} could not be restored from the escrow: no escrow key: key "
            f"file {tmp_path / 'state.escrow.key'} does not exist; it is made by the first "
            "apply that escrows a secret, and the secrets sealed with it cannot be opened "
            "without it"
            for field in ("groupPasswordHashes", "passwordHash")
        ],
    ]
    # Not even unopened ciphertext reaches a step: the file is left, the hash kept from
    # the node, exactly as for a masked value.
    objects = snapshots.objects_of(sealed_back)
    token = next(o for o in objects if o["key"] == "/etc/app/token")
    assert token["before"]["secretContent"] == "***"
    current = {
        "files": {"/etc/app/token": dict(ANSWER["files"]["/etc/app/token"], content="eA==")},
        "users": {"deploy": dict(ANSWER["users"]["deploy"], passwd="deploy:x:1:1::/:/bin/zsh")},
    }
    plan = rollback_steps(objects, current)
    assert any("sensitive" in p and "/etc/app/token" in p for p in plan.problems)
    (user_step,) = [s for s in plan.steps if s.kind == "User"]
    sent = json.loads(base64.b64decode(user_step.stdin))
    assert sent["shadow"] == "deploy:$6$salt$HASH:19000:0:99999:7:::"  # the node's own hash
    assert all("escrow" not in (s.stdin or "") for s in plan.steps)


def test_account_lines_survive_the_journal_whatever_the_group_names(tmp_path: Path) -> None:
    """The passwd line and group lines are not secrets: kept, even without the escrow key,
    and a group called like a secret (RHEL has ``ssh_keys``) is not masked."""
    answer = json.loads(json.dumps(ANSWER))
    user = answer["users"]["deploy"]
    user["groupLines"]["ssh_keys"] = "ssh_keys:x:996:deploy"
    user["gshadowLines"]["ssh_keys"] = "ssh_keys:!::deploy"
    snap = snapshots.build("web-1", TARGETS[2:], answer)
    with StateStore(tmp_path / "state.db") as store:
        txn = journaled(store, snap)
        default_escrow_key_path(store.path).unlink()
        _tag, stored = store.snapshots(txn)  # newest first: the temp file tag, the user
    (record,) = snapshots.objects_of(snapshots.from_journal("web-1", [stored]))
    before = record["before"]
    assert before["passwd"] == "deploy:x:2001:2001::/home/deploy:/bin/sh"
    assert before["groupLines"]["ssh_keys"] == "ssh_keys:x:996:deploy"
    assert before["gshadowLines"]["ssh_keys"] == "ssh_keys:!::deploy"


def test_account_lines_an_older_journal_masked_are_left_alone() -> None:
    older = {
        "format": snapshots.FORMAT,
        "node": "web-1",
        "objects": [{"kind": "User", "name": "deploy", "key": "deploy",
                     "before": {"exists": True, "passwd": "***", "shadow": "deploy:***:1::::::",
                                "groupLines": {"deploy": "deploy:x:2001:"}}}],
    }  # fmt: skip
    (record,) = snapshots.objects_of(older)
    assert "masked in the journal" in record["before"]["error"]
    current = {"users": {"deploy": ANSWER["users"]["deploy"]}}
    plan = rollback_steps([record], current)
    assert plan.steps == []  # never "***" written into /etc/passwd
    assert plan.problems == ["User deploy: no snapshot: its account lines were masked in the "
                             "journal; left as it is"]  # fmt: skip
