"""Files the store cannot use: each a StoreError naming the file and the reason."""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.errors import FazaiError, StoreError, StoreLockedError
from controller.store import Command, StateStore, Trigger

NOBODY = 65534


def _open_error(path: Path) -> str:
    """The message of the StoreError that opening ``path`` raises, as an unprivileged user.

    Root ignores file modes, so as root the attempt runs in a forked child that drops to
    ``nobody`` first; the child reports the message through a pipe."""
    if os.geteuid() != 0:
        with pytest.raises(StoreError) as caught:
            StateStore(path)
        assert isinstance(caught.value.__cause__, OSError | sqlite3.Error)
        return str(caught.value)
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 3
        try:
            os.close(reader)
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            try:
                StateStore(path).close()
                code = 1
            except StoreError as exc:
                chained = isinstance(exc.__cause__, OSError | sqlite3.Error)
                os.write(writer, str(exc).encode())
                code = 0 if chained else 2
        finally:
            os._exit(code)
    os.close(writer)
    with os.fdopen(reader) as pipe:
        message = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"no chained StoreError: {message!r}"
    return message


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory an unprivileged user can reach (pytest's tmp_path is private to root)."""
    top = Path(tempfile.mkdtemp(prefix="fazai-store-"))
    top.chmod(0o755)
    try:
        yield top
    finally:
        for sub in top.rglob("*"):
            if sub.is_dir():
                sub.chmod(0o755)  # rmtree needs to delete what the test made read-only
        shutil.rmtree(top)


def test_a_read_only_directory(shared_dir: Path) -> None:
    locked = shared_dir / "ro"
    locked.mkdir(mode=0o555)
    locked.chmod(0o555)
    path = locked / "state.db"

    message = _open_error(path)

    assert str(path) in message
    assert "not writable" in message


def test_a_writable_file_in_a_read_only_directory(shared_dir: Path) -> None:
    """WAL needs its -wal and -shm files beside the database: the directory must be writable."""
    locked = shared_dir / "ro"
    locked.mkdir()
    path = locked / "state.db"
    StateStore(path).close()  # clean close: the -wal and -shm files are removed
    path.chmod(0o666)
    locked.chmod(0o555)

    message = _open_error(path)

    assert str(path) in message
    assert "not writable" in message


def test_a_directory_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    path = tmp_path / "file" / "state.db"

    with pytest.raises(StoreError, match="cannot create its directory") as caught:
        StateStore(path)

    assert caught.value.path == str(path)
    assert isinstance(caught.value.__cause__, OSError)


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"definitely not SQLite\n" * 200)

    with pytest.raises(StoreError, match="corrupt or not a FazAI state file") as caught:
        StateStore(path)

    assert str(path) in str(caught.value)
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)
    assert isinstance(caught.value, FazaiError) and not caught.value.retryable


def test_a_write_lock_held_too_long_is_retryable(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = StateStore(path, busy_timeout=0.2)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")

        with pytest.raises(StoreLockedError, match="locked by another process") as caught:
            store.start_run(Trigger.CLI, Command.PLAN, "src", None)

        assert caught.value.retryable
        assert str(path) in str(caught.value)
        other.execute("ROLLBACK")
        # Once the lock is released the same store works again.
        store.start_run(Trigger.CLI, Command.PLAN, "src", None)
        assert len(store.list_runs()) == 1
    finally:
        other.close()
        store.close()


def test_a_closed_store_raises_a_store_error(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    store.close()
    with pytest.raises(StoreError, match="listing runs"):
        store.list_runs()
