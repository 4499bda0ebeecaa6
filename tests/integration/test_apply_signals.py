"""Ctrl-C and SIGTERM to a real ``fazai apply`` (``rollback``, ``plan``) mid-way: the node
transaction in flight ends wholly converged or wholly at its snapshot, nothing new starts,
"interrupted" is said, the exit is 130 and the run is recorded ``interrupted``."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.store import NodeStatus, RunStatus, StateStore
from controller.testing.fleet import Fleet
from tests.integration.statekit import done_steps, node_doc, resource, write_state

FILES = 600
COMMAND = [sys.executable, "-c", "from controller.cli import run; run()"]
FOLDER = "/etc/fazai-signal"


def written(fleet: Fleet) -> int:
    out = fleet.nodes["edge-1"].run(f"ls {FOLDER} 2>/dev/null | wc -l", check=False)
    return int(out.stdout.strip() or 0)


@pytest.fixture
def many_files(fleet: Fleet, tmp_path: Path) -> Iterator[Path]:
    on = {"node": "edge-1"}
    docs = [node_doc(fleet, "edge-1")] + [
        resource("File", f"f{i}", on, path=f"{FOLDER}/f{i}", content=f"{i}\n") for i in range(FILES)
    ]
    yield write_state(tmp_path / "state", docs)
    fleet.nodes["edge-1"].run(f"rm -rf {FOLDER}")


def signalled(args: list[str], db: Path, signals: list[signal.Signals]) -> tuple[int, str]:
    """Run ``fazai ARGS``, send ``signals`` once it has written some steps; (exit, stderr)."""
    process = subprocess.Popen(
        [*COMMAND, *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while done_steps(db) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert process.poll() is None, "finished before the signal"
    for sig in signals:
        process.send_signal(sig)
        time.sleep(0.05)
    _, err = process.communicate(timeout=300)
    return process.returncode, err


@pytest.mark.parametrize(
    "signals",
    [[signal.SIGINT], [signal.SIGTERM], [signal.SIGINT, signal.SIGINT]],
    ids=["sigint", "sigterm", "sigint-twice"],
)
def test_a_signal_mid_apply_leaves_the_node_whole_and_the_run_interrupted(
    fleet: Fleet, many_files: Path, tmp_path: Path, signals: list[signal.Signals]
) -> None:
    db = tmp_path / "state.db"
    code, err = signalled(
        ["apply", str(many_files), "--state", str(db), "--auto-approve"], db, signals
    )
    assert code == 130, err
    assert "interrupted: finishing or rolling back" in err
    if len(signals) > 1:
        assert "still rolling back" in err
    assert written(fleet) in (0, FILES), err  # wholly at the snapshot, or wholly converged
    cut = written(fleet) == 0
    with StateStore(db) as store:
        assert store.open_transactions() == []
        (run,) = store.list_runs(5)
        # A node the signal found with everything sent converged: the run is what it is.
        assert run.status is (RunStatus.INTERRUPTED if cut else RunStatus.SUCCEEDED)
        (node,) = run.nodes
        assert node.status is (NodeStatus.ROLLED_BACK if cut else NodeStatus.CONVERGED)
    history = subprocess.run(
        [*COMMAND, "history", "--state", str(db)], capture_output=True, text=True, timeout=60
    )
    assert ("interrupted" in history.stdout + history.stderr) is cut
    assert "in_progress" not in history.stdout + history.stderr


def test_a_signal_mid_rollback_finishes_the_restore_and_exits_130(
    fleet: Fleet, many_files: Path, tmp_path: Path
) -> None:
    db = tmp_path / "state.db"
    applied = subprocess.run(
        [*COMMAND, "apply", str(many_files), "--state", str(db), "--auto-approve"],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    assert written(fleet) == FILES
    process = subprocess.Popen(
        [*COMMAND, "rollback", "1", str(many_files), "--state", str(db), "--auto-approve"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    # Once its run is recorded it is restoring: the signal must not cut the restore.
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        with StateStore(db) as store:
            if len(store.list_runs(5)) == 2:
                break
        time.sleep(0.01)
    assert process.poll() is None, "the rollback finished before the signal"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 130, err
    assert "interrupted" in err
    assert written(fleet) == 0  # the restore in flight finished
    assert "nothing was cut short" in err
    with StateStore(db) as store:
        newest = store.list_runs(5)[0]
        assert newest.command.value == "rollback"
        # Its one node was restored, nothing skipped: recorded as the node is.
        assert newest.status is RunStatus.SUCCEEDED


def test_a_signal_during_plan_says_interrupted_and_exits_130(fleet: Fleet, tmp_path: Path) -> None:
    # A node that accepts the connection and never speaks: planning waits on it.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(listener.accept()[0]), daemon=True).start()
    known = tmp_path / "known_hosts"
    known.write_text("")
    node = {
        "apiVersion": "fazai.dev/v1alpha1",
        "kind": "Node",
        "metadata": {"name": "mute"},
        "spec": {
            "platform": "linux",
            "address": "127.0.0.1",
            "port": listener.getsockname()[1],
            "auth": {"privateKeyFile": str(fleet.private_key_file)},
            "knownHostsFile": str(known),
            "connectTimeout": 60,
        },
    }
    state = write_state(tmp_path / "state", [node])
    for sig in (signal.SIGINT, signal.SIGTERM):
        process = subprocess.Popen(
            [*COMMAND, "plan", str(state), "--state", str(tmp_path / "state.db")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            text=True,
        )  # fmt: skip
        time.sleep(2)
        assert process.poll() is None
        process.send_signal(sig)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 130, err
        assert "interrupted" in err
    listener.close()


def test_a_hangup_mid_apply_leaves_the_node_whole_and_the_run_interrupted(
    fleet: Fleet, many_files: Path, tmp_path: Path
) -> None:
    # The terminal closes: SIGHUP, and from then on every write to it fails with EIO.
    db = tmp_path / "state.db"
    master, terminal = os.openpty()
    process = subprocess.Popen(
        [*COMMAND, "apply", str(many_files), "--state", str(db), "--auto-approve"],
        stdout=terminal, stderr=terminal, stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    os.close(terminal)
    stop = threading.Event()
    drain = threading.Thread(target=_drain, args=(master, stop), daemon=True)
    drain.start()
    deadline = time.monotonic() + 120
    while done_steps(db) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert process.poll() is None, "finished before the hang-up"
    stop.set()
    drain.join(timeout=10)
    os.close(master)
    process.send_signal(signal.SIGHUP)
    assert process.wait(timeout=300) == 130
    assert written(fleet) in (0, FILES)
    cut = written(fleet) == 0
    with StateStore(db) as store:
        assert store.open_transactions() == []
        (run,) = store.list_runs(5)
        assert run.status is (RunStatus.INTERRUPTED if cut else RunStatus.SUCCEEDED)
        assert run.status is not RunStatus.IN_PROGRESS


def _drain(fd: int, stop: threading.Event) -> None:
    # Keeps the terminal's buffer from filling (a blocked write is not a hang-up).
    with contextlib.suppress(OSError):
        while not stop.is_set():
            if select.select([fd], [], [], 0.05)[0]:
                os.read(fd, 65536)
