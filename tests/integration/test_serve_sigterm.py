"""``fazai serve`` as people run it (a process, a fazai.yaml), stopped by SIGTERM in the
middle of an apply: the transaction finishes or rolls back, then it exits 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from controller.store import StateStore, TransactionStatus
from controller.testing.opnsense import EmulatorServer
from tests.integration.servekit import Infra, firewall_node, resource

# Host overrides: each is its own POST (aliases would go in one bulk import), so an
# apply can be caught between two writes.
HOSTS = 12
COMMAND = [sys.executable, "-c", "from controller.cli import run; run()"]


@pytest.fixture
def firewall() -> Iterator[EmulatorServer]:
    with EmulatorServer(version="26.1") as emu:
        # Each write takes a while, so an apply is surely in flight when the signal comes.
        emu.faults.delay(0.4, method="POST", path="HostOverride/", times=None)
        yield emu


def hosts(emu: EmulatorServer) -> set[str]:
    return {
        item["hostname"]
        for item in emu.state.list("host").values()
        if item.get("hostname", "").startswith("sig")
    }


def setup(tmp_path: Path, emu: EmulatorServer, grace: str) -> tuple[Path, Path]:
    infra = Infra(tmp_path / "infra")
    documents = [firewall_node(emu, tmp_path / "secrets")] + [
        resource(
            "HostOverride", f"sig-{i}", {"node": "edge-fw"},
            hostname=f"sig{i}", domain="example.net", server=f"10.8.0.{i}",
        )
        for i in range(HOSTS)
    ]  # fmt: skip
    infra.commit(documents)
    infra.push()
    config = tmp_path / "fazai.yaml"
    db = tmp_path / "state.db"
    config.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "fazai.dev/v1alpha1",
                "kind": "ControllerConfig",
                "state": str(db),
                "cacheDir": str(tmp_path / "cache"),
                "driftCheck": 0,
                "shutdownGrace": grace,
                "sources": [
                    {"name": "infra", "url": infra.url, "path": "desired", "mode": "auto",
                     "poll": 0},
                ],
            }
        )
    )  # fmt: skip
    return config, db


def serve_until_writing(config: Path, emu: EmulatorServer) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [*COMMAND, "serve", "--config", str(config), "--no-api"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while emu.requests.count(method="POST", path="setHostOverride/") < 2:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the apply did not start"
        time.sleep(0.02)
    return process


def test_sigterm_during_an_apply_lets_it_finish_then_exits_0(
    firewall: EmulatorServer, tmp_path: Path
) -> None:
    config, db = setup(tmp_path, firewall, "60s")
    process = serve_until_writing(config, firewall)
    assert len(hosts(firewall)) < HOSTS  # mid-apply
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "stopping" in stderr
    assert hosts(firewall) == {f"sig{i}" for i in range(HOSTS)}  # finished, not cut
    with StateStore(db) as store:
        assert store.open_transactions() == []
        (apply_run,) = [r for r in store.list_runs(10) if r.command.value == "apply"]
        assert apply_run.status.value == "succeeded"
        (txn,) = store.run_transactions(apply_run.id)
        assert txn.status is TransactionStatus.COMMITTED


def test_an_apply_past_the_grace_period_is_rolled_back_at_the_next_start(
    firewall: EmulatorServer, tmp_path: Path
) -> None:
    config, db = setup(tmp_path, firewall, "200ms")
    process = serve_until_writing(config, firewall)
    os.kill(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "grace period over" in stderr
    with StateStore(db) as store:
        (interrupted,) = store.open_transactions()
    written = hosts(firewall)
    assert 0 < len(written) < HOSTS  # cut mid-write, as a kill would

    # A start in detect mode writes nothing, not even that rollback: it is left open.
    detect = subprocess.run(
        [*COMMAND, "serve", "--config", str(config), "--once", "--mode", "detect"],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert "detect mode never writes" in detect.stderr, detect.stderr
    assert "rolled back to its snapshot" not in detect.stderr, detect.stderr
    assert hosts(firewall) == written
    with StateStore(db) as store:
        assert [t.id for t in store.open_transactions()] == [interrupted.id]

    # The next start that may write rolls it back before anything else (here, manual
    # mode: the plan then waits for an approval).
    once = subprocess.run(
        [*COMMAND, "serve", "--config", str(config), "--once", "--mode", "manual"],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert "rolled back to its snapshot" in once.stderr, once.stderr
    assert once.returncode == 1, once.stderr  # drift left: manual mode wrote nothing more
    assert hosts(firewall) == set()
    with StateStore(db) as store:
        assert store.open_transactions() == []
        txn = store.transaction(interrupted.id)
        assert txn is not None and txn.status is TransactionStatus.ROLLED_BACK
