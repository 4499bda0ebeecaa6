from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from controller.errors import StoreError
from controller.store import SCHEMA_VERSION, Command, StateStore, Trigger, schema


def _pragma(path: Path, name: str) -> object:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        conn.close()


def _tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        return {row[0] for row in rows}
    finally:
        conn.close()


def test_an_empty_file_is_version_0_and_migrates(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.touch()

    with StateStore(path) as store:
        store.start_run(Trigger.CLI, Command.PLAN, "src", None)

    assert _pragma(path, "user_version") == SCHEMA_VERSION
    assert _pragma(path, "journal_mode") == "wal"
    assert {"runs", "run_nodes", "transactions", "snapshots", "steps", "owned"} <= _tables(path)


def test_the_connection_settings_behind_the_guarantees(tmp_path: Path) -> None:
    with StateStore(tmp_path / "state.db", busy_timeout=2.5) as store:
        conn = store._db._conn  # per-connection settings are only visible from inside
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
        assert conn.execute("PRAGMA foreign_keys").fetchone() == (1,)
        assert conn.execute("PRAGMA busy_timeout").fetchone() == (2500,)


def test_a_new_file_and_its_directories_are_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "state.db"
    StateStore(path).close()
    assert _pragma(path, "user_version") == SCHEMA_VERSION


def test_reopening_a_current_file_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with StateStore(path) as store:
        run_id = store.start_run(Trigger.CLI, Command.PLAN, "src", None)
    with StateStore(path) as store:
        assert [r.id for r in store.list_runs()] == [run_id]


def test_a_later_migration_upgrades_an_old_file_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with StateStore(path) as store:
        store.start_run(Trigger.CLI, Command.PLAN, "src", None)
    v2 = ("ALTER TABLE runs ADD COLUMN note TEXT NOT NULL DEFAULT 'migrated'",)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        found = schema.migrate(conn, (*schema.MIGRATIONS, v2))
        assert found == SCHEMA_VERSION
        assert schema.version(conn) == SCHEMA_VERSION + 1
        assert conn.execute("SELECT source, note FROM runs").fetchall() == [("src", "migrated")]
        # Migrating again is a no-op.
        assert schema.migrate(conn, (*schema.MIGRATIONS, v2)) == SCHEMA_VERSION + 1
    finally:
        conn.close()


def test_a_failing_migration_leaves_the_old_version_whole(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    StateStore(path).close()
    broken = ("CREATE TABLE extra (x INTEGER)", "ALTER TABLE no_such_table ADD COLUMN y TEXT")
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        with pytest.raises(sqlite3.OperationalError):
            schema.migrate(conn, (*schema.MIGRATIONS, broken))
        assert schema.version(conn) == SCHEMA_VERSION
        assert not conn.in_transaction
    finally:
        conn.close()
    assert "extra" not in _tables(path)


def test_a_file_from_a_newer_fazai_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with StateStore(path) as store:
        store.start_run(Trigger.CLI, Command.PLAN, "src", None)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()

    with pytest.raises(StoreError, match="newer FazAI") as caught:
        StateStore(path)

    assert caught.value.path == str(path)
    assert str(path) in str(caught.value)
    assert f"schema version {SCHEMA_VERSION + 1}" in str(caught.value)
    assert _pragma(path, "user_version") == SCHEMA_VERSION + 1
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM runs").fetchone() == (1,)
    conn.close()


def test_a_version_2_file_gains_the_runs_source_name_and_keeps_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        schema.migrate(conn, schema.MIGRATIONS[:2])
        conn.execute(
            "INSERT INTO runs (started, trigger, command, source, revision, status, actor)"
            " VALUES ('2026-01-01T00:00:00+00:00', 'cli', 'plan', 'src', NULL, 'succeeded', 'me')"
        )
    finally:
        conn.close()
    with StateStore(path) as store:
        (old,) = store.list_runs()
        assert (old.source, old.actor, old.source_name) == ("src", "me", "")
        named = store.start_run(Trigger.API, Command.PLAN, "src", None, source_name="lab")
        store.name_run_source([old.id, named], "prod")  # a name already given is kept
        assert {r.id: r.source_name for r in store.list_runs()} == {old.id: "prod", named: "lab"}
    assert _pragma(path, "user_version") == SCHEMA_VERSION
