"""Two writers on one state store: the second waits or refuses, naming the holder, and
nobody's recovery rolls back a transaction a live process is running."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from controller.engine import apply as applying
from controller.model import loader
from controller.source.open import open_source
from controller.store import RunStatus, StateStore, TransactionStatus
from controller.testing.fleet import Fleet
from tests.integration.servekit import Infra
from tests.integration.statekit import done_steps, node_doc, resource, write_state

FILES = 300
COMMAND = [sys.executable, "-c", "from controller.cli import run; run()"]


def fazai(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args], capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def documents(fleet: Fleet, node: str, folder: str, content: str) -> list[dict[str, object]]:
    on = {"node": node}
    return [node_doc(fleet, node)] + [
        resource("File", f"f{i}", on, path=f"{folder}/f{i}", content=f"{content} {i}\n")
        for i in range(FILES)
    ]


def start_apply(state_dir: Path, db: Path) -> subprocess.Popen[str]:
    """A CLI apply, returned once its node transaction is writing."""
    process = subprocess.Popen(
        [*COMMAND, "apply", str(state_dir), "--state", str(db), "--auto-approve"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while done_steps(db) < 1 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process.poll() is None, "the apply finished before the second writer came"
    return process


def files_on(fleet: Fleet, node: str, folder: str, content: str) -> int:
    """How many of the files hold the content the apply wrote."""
    out = fleet.nodes[node].run(f"cat {folder}/f* 2>/dev/null | grep -c '^{content} '", check=False)
    return int(out.stdout.strip() or 0)


def test_a_second_apply_refuses_naming_the_holder_and_recovery_leaves_the_live_one(
    fleet: Fleet, tmp_path: Path
) -> None:
    folder = "/etc/fazai-lock"
    state_dir = write_state(tmp_path / "state", documents(fleet, "db-1", folder, "first"))
    db = tmp_path / "state.db"
    try:
        first = start_apply(state_dir, db)

        second = fazai("apply", str(state_dir), "--state", str(db), "--auto-approve")
        assert second.returncode == 2, second.stderr
        assert "is locked by" in second.stderr
        assert f"pid {first.pid}" in second.stderr
        assert "fazai apply, run 1" in second.stderr

        # A second process's startup recovery (this one's) sees the open transaction and
        # leaves it: its owner is alive.
        state = loader.load(open_source(str(state_dir), None, ""))
        with StateStore(db) as store:
            (live,) = store.open_transactions()
            report = asyncio.run(applying.recover(state, store))
            assert len(report) == 1 and "left alone" in report[0], report
            assert f"pid {first.pid}" in report[0]
            assert store.transaction(live.id).status is TransactionStatus.OPEN  # type: ignore[union-attr]

        # A third one waits for the lock instead, then finds nothing left to do.
        waiting = subprocess.Popen(
            [*COMMAND, "apply", str(state_dir), "--state", str(db), "--auto-approve",
             "--lock-timeout", "240"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        )  # fmt: skip

        _, first_err = first.communicate(timeout=300)
        assert first.returncode == 0, first_err
        assert "converged" in first_err
        _, waited_err = waiting.communicate(timeout=300)
        assert waiting.returncode == 0, waited_err
        assert "nothing to apply" in waited_err

        assert files_on(fleet, "db-1", folder, "first") == FILES  # what was recorded is so
        with StateStore(db) as store:
            assert store.open_transactions() == []
            runs = store.list_runs(10)
            applies = [r for r in runs if r.command.value == "apply"]
            assert [r.status for r in applies] == [RunStatus.SUCCEEDED]
            (txn,) = store.run_transactions(applies[0].id)
            assert txn.status is TransactionStatus.COMMITTED
    finally:
        fleet.nodes["db-1"].run(f"rm -rf {folder}")


def test_a_killed_owners_transaction_is_recovered_and_its_run_marked_interrupted(
    fleet: Fleet, tmp_path: Path
) -> None:
    folder = "/etc/fazai-lock-kill"
    state_dir = write_state(tmp_path / "state", documents(fleet, "web-2", folder, "killed"))
    db = tmp_path / "state.db"
    try:
        first = start_apply(state_dir, db)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        assert 0 < files_on(fleet, "web-2", folder, "killed") < FILES  # half-applied now

        state = loader.load(open_source(str(state_dir), None, ""))
        with StateStore(db) as store:
            report = asyncio.run(applying.recover(state, store))
            assert len(report) == 1 and "rolled back to its snapshot" in report[0], report
            assert store.open_transactions() == []
            (run,) = store.list_runs(10)
            assert run.status is RunStatus.INTERRUPTED  # not in_progress for ever
        assert fleet.nodes["web-2"].run(f"test -e {folder}", check=False).returncode == 1
    finally:
        fleet.nodes["web-2"].run(f"rm -rf {folder}")


def test_a_detect_mode_serve_beside_a_cli_apply_writes_nothing(
    fleet: Fleet, tmp_path: Path
) -> None:
    folder = "/etc/fazai-lock-detect"
    docs = documents(fleet, "web-1", folder, "cli")
    state_dir = write_state(tmp_path / "state", docs)
    db = tmp_path / "state.db"
    infra = Infra(tmp_path / "infra")
    # The repository says otherwise about the same files: a writer would change them.
    infra.commit(documents(fleet, "web-1", folder, "git"))
    infra.push()
    config = tmp_path / "fazai.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "fazai.dev/v1alpha1",
                "kind": "ControllerConfig",
                "state": str(db),
                "cacheDir": str(tmp_path / "cache"),
                "driftCheck": 0,
                "sources": [
                    {"name": "infra", "url": infra.url, "path": "desired", "mode": "detect",
                     "poll": 0},
                ],
            }
        )
    )  # fmt: skip
    try:
        first = start_apply(state_dir, db)
        serve = fazai("serve", "--config", str(config), "--once", "--no-api", timeout=240)
        assert serve.returncode in (0, 1), serve.stderr
        assert "left as it is: detect mode never writes" in serve.stderr
        assert "rolled back to its snapshot" not in serve.stderr
        _, first_err = first.communicate(timeout=300)
        assert first.returncode == 0, first_err
        assert files_on(fleet, "web-1", folder, "cli") == FILES
        with StateStore(db) as store:
            assert store.open_transactions() == []
            (apply_run,) = [r for r in store.list_runs(10) if r.command.value == "apply"]
            assert apply_run.status is RunStatus.SUCCEEDED
            (txn,) = store.run_transactions(apply_run.id)
            assert txn.status is TransactionStatus.COMMITTED
    finally:
        fleet.nodes["web-1"].run(f"rm -rf {folder}")
