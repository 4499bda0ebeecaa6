"""Writer locks across real processes: a live holder is named and waited for, a killed
one releases its lock, and recovery leaves a live process's open transaction alone."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.engine import apply as applying
from controller.errors import StoreError, WriterLockedError
from controller.model.state import DesiredState
from controller.source.tree import SourceTree
from controller.store import Command, RunStatus, StateStore, TransactionStatus, Trigger
from controller.store.locks import (
    machine_node_lock_path,
    node_lock_path,
    run_lock_path,
    store_lock_path,
)

HOLDER = """
import sys, time, asyncio
from controller.store import StateStore
store = StateStore(sys.argv[1])
what = sys.argv[2]
if what == "store":
    with store.writer():
        print("held", flush=True)
        time.sleep(600)
elif what == "run":  # a run between two nodes: no transaction open
    store.start_run("cli", "apply", "test", None)
    print("held", flush=True)
    time.sleep(600)
else:
    async def main():
        async with store.node_writer(what):
            print("held", flush=True)
            await asyncio.sleep(600)
    asyncio.run(main())
"""


@pytest.fixture
def holder(db_path: Path) -> Iterator[object]:
    started: list[subprocess.Popen[str]] = []

    def start(what: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(db_path), what],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert process.stdout is not None and process.stdout.readline() == "held\n"
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def test_a_live_holder_is_named_waited_for_and_a_killed_one_frees_the_lock(
    store: StateStore, holder: object
) -> None:
    process = holder("store")  # type: ignore[operator]
    with pytest.raises(WriterLockedError) as refused, store.writer():
        pass
    assert f"pid {process.pid}" in str(refused.value)
    assert "--lock-timeout" in str(refused.value)
    started = time.monotonic()
    with pytest.raises(WriterLockedError, match=r"waited 0\.3 s"), store.writer(0.3):
        pass
    assert time.monotonic() - started >= 0.3
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    with store.writer():  # the kernel dropped the dead holder's lock
        assert store_lock_path(store.path).exists()


def test_recovery_leaves_a_live_owners_transaction_and_takes_a_dead_ones(
    store: StateStore, holder: object
) -> None:
    run = store.start_run(Trigger.CLI, Command.APPLY, "test", None)
    txn = store.begin_transaction(run, "web-1")
    store.record_snapshot(txn, "Node", "web-1", "transaction", {"files": {}})
    state = DesiredState(SourceTree("mem", "c0ffee", {}, {}), {}, [])

    process = holder("web-1")  # type: ignore[operator]
    (line,) = asyncio.run(applying.recover(state, store))
    assert "live process" in line and f"pid {process.pid}" in line
    assert store.transaction(txn).status is TransactionStatus.OPEN  # type: ignore[union-attr]

    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    (line,) = asyncio.run(applying.recover(state, store))
    # Its owner is gone: recovery takes it on (here it has no Node document to use).
    assert "cannot be recovered here" in line


def test_the_lock_is_reentrant_in_one_process_and_a_node_name_stays_in_its_folder(
    store: StateStore,
) -> None:
    async def twice() -> None:
        async with store.node_writer("web-1"), store.node_writer("web-1"):
            assert store.try_node_writer("web-1")  # this process holds it already
            store.release_node("web-1")

    asyncio.run(twice())
    folder = node_lock_path(store.path, "x").parent
    for name in ("../escape", "a/b", ".."):
        assert node_lock_path(store.path, name).parent == folder


def test_a_store_reached_through_a_symlink_shares_the_real_files_locks(
    tmp_path: Path, db_path: Path, holder: object
) -> None:
    # The holder opens the store by its real path (db_path); this process through a link:
    # one lock file for both, or recovery here would roll back the holder's transaction.
    real = db_path
    StateStore(real).close()
    link = tmp_path / "link.db"
    link.symlink_to(real)
    live = holder("web-1")  # type: ignore[operator]
    with StateStore(link) as store:
        assert store.path == real.resolve()
        assert not store.try_node_writer("web-1")
        assert f"pid {live.pid}" in store.node_holder("web-1")


def test_a_run_whose_process_died_between_nodes_is_recorded_interrupted(
    store: StateStore, holder: object
) -> None:
    state = DesiredState(SourceTree("mem", "c0ffee", {}, {}), {}, [])
    dead = holder("run")  # type: ignore[operator]
    live = holder("run")  # type: ignore[operator]
    os.kill(dead.pid, signal.SIGKILL)
    dead.wait(timeout=10)
    ours = store.start_run(Trigger.CLI, Command.APPLY, "test", None)
    report = asyncio.run(applying.recover(state, store))
    assert report == ["run 1 was left in progress by a process that is gone; recorded interrupted"]
    statuses = {run.id: run.status for run in store.list_runs(5)}
    assert statuses == {
        1: RunStatus.INTERRUPTED,
        2: RunStatus.IN_PROGRESS,  # its process is alive
        ours: RunStatus.IN_PROGRESS,  # this process runs it
    }
    store.finish_run(ours, RunStatus.SUCCEEDED)
    assert not run_lock_path(store.path, ours).exists()
    os.kill(live.pid, signal.SIGKILL)


def test_a_link_planted_in_the_machine_wide_folder_is_never_followed(
    tmp_path: Path, store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Any local user may write in /run/lock/fazai: a root writer must not truncate the
    # file a planted symlink points at.
    monkeypatch.setenv("FAZAI_LOCK_DIR", str(tmp_path / "machine"))
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    lock = machine_node_lock_path("linux:192.0.2.9:22")
    lock.parent.mkdir()
    lock.symlink_to(target)

    async def write() -> None:
        async with store.node_writer("web-9", key="linux:192.0.2.9:22"):
            pass

    with pytest.raises(StoreError, match="cannot open the lock file"):
        asyncio.run(write())
    assert target.read_text() == "keep me\n"
