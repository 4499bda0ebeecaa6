"""`fazai audit` and `fazai audit verify` as a user meets them: exit codes and messages."""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from controller.engine import trail
from controller.store import Command, NodeStatus, RunStatus, StateStore, Trigger, chain

KEY = "an-audit-key-of-32-characters-ok"


def fazai(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FAZAI_AUDIT_KEY")}
    return subprocess.run(
        [sys.executable, "-c", "from controller.cli import run; run()", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**environ, **env},
    )


def fill(db: Path, key: str | None = None) -> None:
    ref = chain.KeyRef(env="AUDIT_TEST_KEY") if key else None
    if key:
        os.environ["AUDIT_TEST_KEY"] = key
    try:
        with StateStore(db, audit_key=ref) as store:
            run_id = store.start_run(Trigger.CLI, Command.APPLY, "src", None, actor="dora")
            entry = trail.node_entry(run_id, "web-1", (), "converged")
            store.record_node(run_id, "web-1", NodeStatus.CONVERGED, audit=entry)
            store.finish_run(run_id, RunStatus.SUCCEEDED)
    finally:
        os.environ.pop("AUDIT_TEST_KEY", None)


def test_listing_export_and_verify_of_an_intact_trail(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    fill(db)
    listed = fazai("audit", "--state", str(db))
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[2] for line in listed.stdout.splitlines()] == [
        "run.started",
        "node.transaction",
        "run.finished",
    ]
    assert "by dora" in listed.stdout
    lines = fazai("audit", "--state", str(db), "-o", "json", "--since", "1h").stdout.splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3]
    assert fazai("audit", "--state", str(db), "--since", "2999-01-01").stdout == ""
    verified = fazai("audit", "verify", "--state", str(db))
    assert verified.returncode == 0, verified.stderr
    assert "intact: 3 records" in verified.stdout
    history = fazai("history", "--state", str(db), "-o", "json")
    assert json.loads(history.stdout)[0]["actor"] == "dora"


def test_verify_exits_1_naming_the_record_and_2_when_it_cannot_check(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    fill(db)
    conn = sqlite3.connect(db)
    conn.execute("DROP TRIGGER audit_no_update")
    conn.execute("UPDATE audit SET time = '2020-01-01T00:00:00+00:00' WHERE seq = 2")
    conn.commit()
    conn.close()
    found = fazai("audit", "verify", "--state", str(db))
    assert found.returncode == 1
    assert "record 2 (2020-01-01T00:00:00+00:00): modified" in found.stderr
    missing = fazai("audit", "verify", "--state", str(tmp_path / "nope.db"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    bad = fazai("audit", "--state", str(db), "--since", "yesterday")
    assert bad.returncode == 2 and "--since 'yesterday'" in bad.stderr


def test_a_keyed_trail_needs_its_key(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    fill(db, KEY)
    refused = fazai("audit", "verify", "--state", str(db))
    assert refused.returncode == 2
    assert "FAZAI_AUDIT_KEY" in refused.stderr and "Traceback" not in refused.stderr
    assert fazai("audit", "verify", "--state", str(db), FAZAI_AUDIT_KEY=KEY).returncode == 0
    key_file = tmp_path / "audit.key"
    key_file.write_text("another-key-of-enough-length\n")
    wrong = fazai("audit", "verify", "--state", str(db), FAZAI_AUDIT_KEY_FILE=str(key_file))
    assert wrong.returncode == 2 and "cannot check: no key for kid" in wrong.stderr
    assert KEY not in refused.stderr + wrong.stderr + wrong.stdout


def _edit(db: Path, statement: str, *params: object) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("DROP TRIGGER audit_no_update")
    conn.execute(statement, params)
    conn.close()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit SET payload = 'not json' WHERE seq = 2",
        "UPDATE audit SET alg = 'md5' WHERE seq = 2",
        "UPDATE audit SET alg = X'41' WHERE seq = 2",
        "UPDATE audit SET payload = X'7b7d' WHERE seq = 2",
        "UPDATE audit SET run_id = 'x' WHERE seq = 2",
        "UPDATE audit SET time = X'00' WHERE seq = 2",
    ],
)
def test_hand_edits_are_reported_never_a_traceback(tmp_path: Path, statement: str) -> None:
    db = tmp_path / "state.db"
    fill(db)
    _edit(db, statement)
    found = fazai("audit", "verify", "--state", str(db))
    assert found.returncode == 1, found.stderr
    assert "record 2" in found.stderr and "modified" in found.stderr
    for listing in (("audit",), ("audit", "-o", "json")):
        listed = fazai(*listing, "--state", str(db))
        assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
        assert len(listed.stdout.splitlines()) == 3
    if "payload" in statement:
        assert "[undecodable:" in fazai("audit", "--state", str(db)).stdout


def test_a_keyed_trail_rechained_plain_exits_1_and_plain_records_are_counted(
    tmp_path: Path,
) -> None:
    db = tmp_path / "state.db"
    fill(db)
    plain = fazai("audit", "verify", "--state", str(db))
    assert plain.returncode == 0 and "3 records plain SHA-256" in plain.stderr
    fill(db, KEY)
    keyed = fazai("audit", "verify", "--state", str(db), FAZAI_AUDIT_KEY=KEY)
    assert keyed.returncode == 0 and "3 records plain SHA-256" in keyed.stderr
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("DROP TRIGGER audit_no_update")
    prev = chain.GENESIS
    for row in conn.execute("SELECT * FROM audit ORDER BY seq").fetchall():
        record = dataclasses.replace(chain.from_row(row), alg=chain.PLAIN, prev=prev)
        prev = chain.digest(record.material(), chain.PLAIN, None)
        conn.execute(
            "UPDATE audit SET alg = 'sha256', prev = ?, digest = ? WHERE seq = ?",
            (record.prev, prev, record.seq),
        )
    conn.close()
    forged = fazai("audit", "verify", "--state", str(db), FAZAI_AUDIT_KEY=KEY)
    assert forged.returncode == 1 and "ends in a plain SHA-256 record" in forged.stderr


def test_a_rotated_key_file_verifies_old_and_new_records(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    fill(db, KEY)
    new = "a-second-audit-key-32-characters"
    keys = tmp_path / "keys"
    keys.write_text(f"{new}\n{KEY}\n")
    alone = fazai("audit", "verify", "--state", str(db), FAZAI_AUDIT_KEY=new)
    assert alone.returncode == 2 and "cannot check: no key for kid" in alone.stderr
    rotated = fazai("audit", "verify", "--state", str(db), FAZAI_AUDIT_KEY_FILE=str(keys))
    assert rotated.returncode == 0, rotated.stderr


def test_an_escape_in_a_column_does_not_reach_the_terminal(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    fill(db)
    _edit(db, "UPDATE audit SET time = ? WHERE seq = 2", "\x1b[2K\raudit trail intact")
    found = fazai("audit", "verify", "--state", str(db))
    assert found.returncode == 1 and "\x1b" not in found.stderr
