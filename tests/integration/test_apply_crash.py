"""The controller SIGKILLed mid-apply: its next start rolls the node back to the snapshot."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from controller.store import StateStore
from controller.testing.fleet import Fleet
from tests.integration.statekit import done_steps, node_doc, resource, write_state

FILES = 120


def test_killed_controller_is_rolled_back_at_next_start(fleet: Fleet, tmp_path: Path) -> None:
    node = fleet.nodes["db-1"]
    on = {"node": "db-1"}
    docs = [node_doc(fleet, "db-1")] + [
        resource("File", f"f{i}", on, path=f"/etc/fazai-crash/f{i}", content=f"{i}\n")
        for i in range(FILES)
    ]
    state_dir = write_state(tmp_path / "state", docs)
    db = tmp_path / "state.db"
    command = [sys.executable, "-c", "from controller.cli import run; run()"]
    try:
        apply = subprocess.Popen(
            [*command, "apply", str(state_dir), "--state", str(db), "--auto-approve"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while done_steps(db) < 3 and apply.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert apply.poll() is None, "the apply finished before it could be killed"
        os.kill(apply.pid, signal.SIGKILL)
        apply.wait(timeout=30)

        written = int(node.run("ls /etc/fazai-crash | wc -l").stdout)
        assert 0 < written < FILES  # killed half-way: the node is half-applied right now

        with StateStore(db) as store:
            (open_txn,) = store.open_transactions()
        assert open_txn.node == "db-1"

        # The next start (here an apply that then has no terminal to confirm on) rolls the
        # interrupted transaction back before it does anything else.
        restart = subprocess.run(
            [*command, "apply", str(state_dir), "--state", str(db)],
            capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert "interrupted transaction" in restart.stderr
        assert "rolled back to its snapshot" in restart.stderr
        assert node.run("test -e /etc/fazai-crash", check=False).returncode == 1
        with StateStore(db) as store:
            assert store.open_transactions() == []
            assert store.transaction(open_txn.id).status.value == "rolled_back"  # type: ignore[union-attr]
            # The audit trail: the killed run's start, then its node's recovery by whoever
            # restarted, and the run closed interrupted; the chain intact across the kill.
            trail = [(r.action, r.run_id, r.node) for r in store.audit_records()]
            assert trail == [
                ("run.started", open_txn.run_id, None),
                ("node.recovering", open_txn.run_id, "db-1"),  # the intent, before it
                ("node.recovered", open_txn.run_id, "db-1"),
                ("run.finished", open_txn.run_id, None),
            ]
            assert store.audit_verify().ok
    finally:
        node.run("rm -rf /etc/fazai-crash")


def test_a_superseded_open_transaction_is_closed_with_a_record(
    fleet: Fleet, tmp_path: Path
) -> None:
    """An open transaction older than a later commit on its node is closed unrestored at
    the next start: that closing is a write to the journal, and it leaves its record."""
    state_dir = write_state(tmp_path / "state", [node_doc(fleet, "db-1")])
    db = tmp_path / "state.db"
    # A process that dies with one transaction open, after another committed on the node.
    script = f"""
from controller.store import Command, StateStore, Trigger
with StateStore({str(db)!r}) as store:
    dead = store.start_run(Trigger.CLI, Command.APPLY, "src", None, actor="ghost")
    store.begin_transaction(dead, "db-1")
    later = store.start_run(Trigger.CLI, Command.APPLY, "src", None, actor="ghost")
    store.commit(store.begin_transaction(later, "db-1"))
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    with StateStore(db) as store:
        (open_txn,) = store.open_transactions()
    command = [sys.executable, "-c", "from controller.cli import run; run()"]
    restart = subprocess.run(
        [*command, "apply", str(state_dir), "--state", str(db)],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert "its snapshot was not restored" in restart.stderr, restart.stderr
    with StateStore(db) as store:
        assert store.open_transactions() == []
        closed = [r for r in store.audit_records() if r.action == "node.recovered"]
        assert [(r.run_id, r.node) for r in closed] == [(open_txn.run_id, "db-1")]
        assert '"result":"superseded"' in closed[0].payload
        assert store.audit_verify().ok
