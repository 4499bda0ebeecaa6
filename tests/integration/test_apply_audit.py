"""The audit trail after real applies, through the real CLI: on an SSH node of the fleet
(Linux) and on the OPNsense emulator over HTTPS. Who, what (item digests, changes
without secrets), before/after digests, result; `fazai audit verify` finds a record
edited by hand with sqlite3; nothing secret in the table or its export."""

from __future__ import annotations

import getpass
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.store import StateStore
from controller.testing.fleet import Fleet
from controller.testing.opnsense import EmulatorServer
from tests.integration.firewallkit import firewall_node
from tests.integration.statekit import node_doc, resource, write_state

CLI = [sys.executable, "-c", "from controller.cli import run; run()"]
NODE = "web-1"
TOKEN = "/etc/fzaudit-token"
SECRET = "correct-horse-battery-staple-42"


def fazai(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        env=env,
    )  # fmt: skip


def export(db: Path) -> list[dict[str, Any]]:
    listed = fazai("audit", "--state", str(db), "--output", "json")
    assert listed.returncode == 0, listed.stderr
    return [json.loads(line) for line in listed.stdout.splitlines()]


def raw_table(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return "\n".join(repr(row) for row in conn.execute("SELECT * FROM audit"))
    finally:
        conn.close()


def tamper(db: Path, statement: str) -> None:
    """As an attacker with the file would: with the sqlite3 shell, triggers dropped."""
    script = f"DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete; {statement};"
    subprocess.run(["sqlite3", str(db), script], check=True, timeout=30)


def test_a_linux_apply_is_audited_and_tampering_is_found(fleet: Fleet, tmp_path: Path) -> None:
    node = fleet.nodes[NODE]
    on = {"node": NODE}
    docs = write_state(
        tmp_path / "docs",
        [
            node_doc(fleet, NODE),
            resource("File", "token", on, path=TOKEN, content=SECRET + "\n", mode="0600",
                     sensitive=True),
            resource("File", "motd", on, path="/etc/fzaudit-motd", content="hello\n"),
        ],
    )  # fmt: skip
    db = tmp_path / "db" / "state.db"
    try:
        applied = fazai("apply", str(docs), "--state", str(db), "--auto-approve")
        assert applied.returncode == 0, applied.stdout + applied.stderr
        records = export(db)
        assert [r["action"] for r in records] == ["run.started", "node.transaction", "run.finished"]
        txn = records[1]
        assert txn["node"] == NODE and txn["trigger"] == "cli"
        assert txn["actor"].startswith(getpass.getuser())
        payload = txn["payload"]
        assert payload["result"] == "converged"
        assert len(payload["before"]) == 64 and len(payload["after"]) == 64
        assert payload["before"] != payload["after"]
        assert sorted((i["kind"], i["name"], i["action"]) for i in payload["items"]) == [
            ("File", "motd", "create"),
            ("File", "token", "create"),
        ]
        assert all(len(i["digest"]) == 64 for i in payload["items"])
        history = fazai("history", "--state", str(db))
        assert f"by {getpass.getuser()}" in history.stdout

        # The secret, and its plain digest, are nowhere in the trail.
        assert node.run(f"cat {TOKEN}").stdout == (SECRET + "\n").encode()
        assert SECRET not in raw_table(db) and SECRET not in json.dumps(records)

        verified = fazai("audit", "verify", "--state", str(db))
        assert verified.returncode == 0, verified.stderr
        assert "3 records" in verified.stdout
        head = verified.stdout.split("head: ")[1].strip()

        # A rollback is audited as well, by the same person.
        run_id = txn["runId"]
        undone = fazai("rollback", str(run_id), str(docs), "--state", str(db), "--auto-approve")
        assert undone.returncode == 0, undone.stderr
        restored = [r for r in export(db) if r["action"].startswith("node.restor")]
        assert [
            (r["action"], r["node"], r["payload"]["result"], r["payload"]["restores"])
            for r in restored
        ] == [  # the intent first: a restore is no journalled transaction of its own
            ("node.restoring", NODE, "restoring", run_id),
            ("node.restored", NODE, "converged", run_id),
        ]
        assert fazai("audit", "verify", "--state", str(db), "--expect-head", head).returncode == 0

        tamper(
            db,
            """UPDATE audit SET payload = replace(payload, 'converged', 'failed')
                      WHERE seq = 2""",
        )
        found = fazai("audit", "verify", "--state", str(db))
        assert found.returncode == 1
        assert "record 2" in found.stderr and "modified" in found.stderr
    finally:
        node.run(f"rm -f {TOKEN} /etc/fzaudit-motd")


def test_an_opnsense_apply_is_audited_without_its_api_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with EmulatorServer(version="26.1", tls=True) as emu:
        folder = tmp_path / "docs"
        folder.mkdir()
        fw = firewall_node("edge-fw", emu, tmp_path, monkeypatch)
        alias = {
            "apiVersion": "fazai.dev/v1alpha1",
            "kind": "FirewallAlias",
            "metadata": {"name": "web-servers"},
            "spec": {
                "target": {"node": "edge-fw"},
                "name": "web_servers",
                "type": "host",
                "content": ["10.0.10.11"],
            },
        }
        (folder / "fw.yaml").write_text(yaml.safe_dump_all([fw, alias], sort_keys=False))
        db = tmp_path / "state.db"
        applied = fazai("apply", str(folder), "--state", str(db), "--auto-approve")
        assert applied.returncode == 0, applied.stdout + applied.stderr
        records = export(db)
        (txn,) = [r for r in records if r["action"] == "node.transaction"]
        assert txn["node"] == "edge-fw" and txn["payload"]["result"] == "converged"
        (item,) = txn["payload"]["items"]
        assert (item["kind"], item["name"], item["action"]) == (
            "FirewallAlias",
            "web-servers",
            "create",
        )
        assert any(c["field"] == "content" for c in item["changes"])
        for secret in (emu.api_secret, emu.api_key):
            assert secret not in raw_table(db) and secret not in json.dumps(records)
        assert fazai("audit", "verify", "--state", str(db)).returncode == 0

        tamper(db, "DELETE FROM audit WHERE seq = 2")
        found = fazai("audit", "verify", "--state", str(db))
        assert found.returncode == 1
        assert "record 3" in found.stderr and "removed" in found.stderr


def test_an_apply_without_the_key_on_a_keyed_trail_is_refused_before_any_write(
    fleet: Fleet, tmp_path: Path
) -> None:
    """Serve (say) writes a keyed trail; an operator's `fazai apply` without the key must
    not append a plain record, which would make the whole trail read as forged: it stops
    with exit 2 at its first record, before it writes anything to a node."""
    node = fleet.nodes[NODE]
    path = "/etc/fzaudit-keyed"
    on = {"node": NODE}
    key = "an-audit-key-of-32-characters-ok"
    base = {k: v for k, v in os.environ.items() if not k.startswith("FAZAI_AUDIT_KEY")}

    def docs(content: str) -> Path:
        return write_state(
            tmp_path / content,
            [node_doc(fleet, NODE), resource("File", "keyed", on, path=path, content=content)],
        )

    db = tmp_path / "state.db"
    try:
        keyed = {**base, "FAZAI_AUDIT_KEY": key}
        first = fazai("apply", str(docs("one\n")), "--state", str(db), "--auto-approve",
                      env=keyed)  # fmt: skip
        assert first.returncode == 0, first.stdout + first.stderr
        refused = fazai("apply", str(docs("two\n")), "--state", str(db), "--auto-approve",
                        env=base)  # fmt: skip
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "this trail is keyed with key id" in refused.stderr
        assert key not in refused.stdout + refused.stderr
        assert node.run(f"cat {path}").stdout == b"one\n"  # untouched
        with StateStore(db) as store:
            assert len(store.list_runs()) == 1
        verified = fazai("audit", "verify", "--state", str(db), env=keyed)
        assert verified.returncode == 0, verified.stderr
    finally:
        node.run(f"rm -f {path}")
