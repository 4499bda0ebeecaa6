"""The journal against a real SIGKILL: what was acknowledged is on disk, the file is whole."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from controller.store import StateStore, StepStatus

# Writes intents as fast as it can and prints each step's seq once intend() has returned:
# a printed seq is an acknowledged one. It never finishes on its own.
WRITER = """
import sys
from controller.store import Command, StateStore, Trigger

store = StateStore(sys.argv[1])
run_id = store.start_run(Trigger.CLI, Command.APPLY, "kill-test", None)
txn = store.begin_transaction(run_id, "web-1")
store.record_snapshot(txn, "File", "motd", "/etc/motd", {"sha256": "before"})
print("txn", txn, flush=True)
seq = 0
while True:
    step = store.intend(txn, seq, "File", "motd", "update", {"seq": seq, "pad": "x" * 512})
    if seq % 2:
        store.mark_done(step)
    print(seq, flush=True)
    seq += 1
"""

ACKS_BEFORE_KILL = 150


def test_acknowledged_intents_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        header = proc.stdout.readline().split()
        assert header[:1] == ["txn"], proc.stderr.read() if proc.stderr else ""
        txn = int(header[1])
        acked: list[int] = []
        deadline = time.monotonic() + 3.0
        while len(acked) < ACKS_BEFORE_KILL and time.monotonic() < deadline:
            acked.append(int(proc.stdout.readline()))
        # Killed mid-loop: most likely inside intend(), between or during its writes.
        os.kill(proc.pid, signal.SIGKILL)
        rest, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # Lines printed before the kill are acknowledgements too; a torn last line is not.
    acked += [int(line) for line in rest.split("\n")[:-1] if line]
    assert len(acked) >= 10, "the writer acknowledged too little to test anything"

    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        raw.close()
    with StateStore(path) as store:
        (found,) = store.open_transactions()
        assert found.id == txn
        seqs = [s.seq for s in found.steps]
        # Every acknowledged intent is there, in order, with nothing torn or missing between;
        # at most one more (committed, but killed before it was printed).
        assert seqs == list(range(len(seqs)))
        assert set(acked) <= set(seqs)
        assert len(seqs) - len(acked) in (0, 1)
        assert all(s.payload["seq"] == s.seq for s in found.steps)
        assert all(
            s.status is (StepStatus.DONE if s.seq % 2 else StepStatus.INTENDED)
            for s in found.steps
            if s.seq < max(acked)
        )
        assert [s.before for s in found.snapshots] == [{"sha256": "before"}]
        # The file is usable as ever: the restarted controller closes the transaction.
        store.mark_rolled_back(txn, "rolled back after the kill")
        assert store.open_transactions() == []
