"""The tools the agent verified, kept by goal until their pull request is merged."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from controller.store import MASK, Command, StateStore, Trigger, schema

SPEC = {
    "platform": "linux",
    "description": "set one setting of /etc/login.defs",
    "check": {"command": ["grep", "-qx", "PASS_MAX_DAYS 90", "/etc/login.defs"]},
    "apply": {"script": "sed -i 's/^PASS_MAX_DAYS.*/PASS_MAX_DAYS 90/' /etc/login.defs"},
}


def test_recorded_tools_come_back_newest_first_by_goal_and_node(store: StateStore) -> None:
    run_id = store.start_run(Trigger.CLI, Command.APPLY, "src", None)
    first = store.record_verified_tool(
        "passwords-expire", "web-1", "login-defs", SPEC, {"value": "90"}, run_id
    )
    second = store.record_verified_tool(
        "passwords-expire", "web-2", "login-defs-v2", SPEC, {}, run_id, reference="pr#3"
    )
    store.record_verified_tool("other-goal", "web-1", "x", SPEC, {}, None)

    found = store.verified_tools("passwords-expire")

    assert [r.id for r in found] == [second, first]
    newest = found[0]
    assert (newest.goal, newest.node, newest.tool, newest.reference) == (
        "passwords-expire", "web-2", "login-defs-v2", "pr#3",
    )  # fmt: skip
    assert newest.spec == SPEC and newest.params == {} and not newest.masked
    assert newest.run_id == run_id
    assert newest.verified_at.tzinfo is not None
    assert [r.tool for r in store.verified_tools("passwords-expire", "web-1")] == ["login-defs"]
    assert store.verified_tools("passwords-expire", "db-9") == []
    assert store.verified_tools("no-such-goal") == []


def test_verified_at_and_reference_are_kept(store: StateStore) -> None:
    when = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    rid = store.record_verified_tool("g", None, "t", SPEC, {}, None, verified_at=when)
    assert store.note_verified_tool_reference(rid, "https://forge/acme/infra/pull/4")
    assert not store.note_verified_tool_reference(rid + 100, "nowhere")
    (record,) = store.verified_tools("g")
    assert record.node is None
    assert record.verified_at == when
    assert record.reference == "https://forge/acme/infra/pull/4"


def test_secrets_are_masked_and_the_record_says_it_cannot_be_applied(store: StateStore) -> None:
    store.record_verified_tool("g", "n", "t", SPEC, {"api_token": "s3cr3t-v4lue"}, None)
    (record,) = store.verified_tools("g")
    assert record.params == {"api_token": MASK}
    assert record.masked
    raw = store.path.read_bytes() + Path(str(store.path) + "-wal").read_bytes()
    assert b"s3cr3t-v4lue" not in raw


def test_forgetting_a_goal_drops_only_its_tools(store: StateStore) -> None:
    store.record_verified_tool("g", "n1", "t", SPEC, {}, None)
    store.record_verified_tool("g", "n2", "t", SPEC, {}, None)
    store.record_verified_tool("h", "n1", "t", SPEC, {}, None)
    assert store.forget_verified_tool("g") == 2
    assert store.forget_verified_tool("g") == 0
    assert store.verified_tools("g") == []
    assert len(store.verified_tools("h")) == 1


def test_a_pruned_run_leaves_the_record_without_its_run(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with StateStore(path) as store:
        run_id = store.start_run(Trigger.CLI, Command.APPLY, "src", None)
        store.record_verified_tool("g", "n", "t", SPEC, {}, run_id)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
    conn.close()
    with StateStore(path) as store:
        (record,) = store.verified_tools("g")
        assert record.run_id is None


def test_a_version_3_file_gains_the_table_and_keeps_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path, isolation_level=None)
    schema.migrate(conn, schema.MIGRATIONS[:3])
    conn.execute(
        "INSERT INTO runs (started, trigger, command, source, revision, status)"
        " VALUES ('2026-01-01T00:00:00+00:00', 'cli', 'plan', 'src', NULL, 'succeeded')"
    )
    conn.close()
    with StateStore(path) as store:
        assert len(store.list_runs()) == 1
        store.record_verified_tool("g", "n", "t", SPEC, {}, None)
        assert len(store.verified_tools("g")) == 1
    assert schema.SCHEMA_VERSION == 4
