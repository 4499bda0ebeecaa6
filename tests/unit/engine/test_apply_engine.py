"""The apply engine's decisions, with a scripted transaction at the provider boundary.

Real transactions are exercised on real nodes and the emulator in tests/integration; here
the transaction is scripted so each branch of the engine (verify mismatch, failed
rollback, a plan that moved, fail-fast) is reached deterministically.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.engine import apply as applying
from controller.errors import FazaiError
from controller.model import loader
from controller.model.document import Document
from controller.model.state import DesiredState
from controller.plan.diff import Action, Observed, compare
from controller.plan.items import NodePlan, Plan, PlanItem
from controller.providers.base import Change, Observation, StepJournal
from controller.source.open import open_source
from controller.source.tree import SourceTree
from controller.store import Command, NodeStatus, RunStatus, StateStore, Trigger
from controller.store.locks import machine_node_lock_path, node_lock_path

DOCS = [
    {"apiVersion": "fazai.dev/v1alpha1", "kind": "Node",
     "metadata": {"name": n, "labels": {"fleet": "t"}},
     "spec": {"platform": "linux", "address": "192.0.2.1"}}
    for n in ("a", "b")
] + [
    {"apiVersion": "fazai.dev/v1alpha1", "kind": "File", "metadata": {"name": "motd"},
     "spec": {"target": {"matchLabels": {"fleet": "t"}}, "path": "/etc/motd", "content": "hi\n"}},
]  # fmt: skip

WANT = {"content": "sha256:new"}


class Script:
    """What the scripted transactions do, and what the engine asked of them."""

    def __init__(self, *, verify_live: Mapping[str, Any] = WANT, rollback_fails: bool = False):
        self.verify_live = dict(verify_live)
        self.rollback_fails = rollback_fails
        self.live: Mapping[str, Any] | None = {"content": "sha256:old"}
        self.calls: list[str] = []


class ScriptedTransaction:
    def __init__(self, script: Script, node: str) -> None:
        self.script = script
        self.node = node

    async def snapshot(self) -> Mapping[str, Any]:
        self.script.calls.append(f"{self.node}:snapshot")
        return {"motd": "old"}

    async def write(self, journal: StepJournal) -> None:
        step = journal.intend("File", "motd", "update", {"path": "/etc/motd"})
        self.script.calls.append(f"{self.node}:write")
        journal.done(step)

    async def verify(self) -> Observation:
        self.script.calls.append(f"{self.node}:verify")
        return Observation({Document("File", "motd", {}): Observed(WANT, self.script.verify_live)})

    async def commit(self) -> None:
        self.script.calls.append(f"{self.node}:commit")

    async def rollback(self, snapshot: Mapping[str, Any]) -> None:
        self.script.calls.append(f"{self.node}:rollback {dict(snapshot)}")
        if self.script.rollback_fails:
            raise FazaiError("node gone")


class ScriptedProvider:
    platform = "linux"

    def __init__(self, script: Script) -> None:
        self.script = script

    async def observe(
        self, node: Document, resources: Sequence[Document], tree: SourceTree
    ) -> Observation:
        return Observation({doc: Observed(WANT, self.script.live) for doc in resources})

    @contextlib.asynccontextmanager
    async def transaction(
        self, node: Document, changes: Sequence[Change], resources: Sequence[Document],
        tree: SourceTree,
    ) -> AsyncIterator[ScriptedTransaction]:  # fmt: skip
        yield ScriptedTransaction(self.script, node.name)


def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: Script) -> DesiredState:
    (tmp_path / "s.yaml").write_text(yaml.safe_dump_all(DOCS))
    monkeypatch.setattr(applying, "_provider", lambda platform: ScriptedProvider(script))
    return loader.load(open_source(str(tmp_path)))


def approved(*nodes: str) -> Plan:
    """The plan the scripted nodes' first read makes: motd's content, old to new (the
    engine writes only if its own read makes exactly these changes)."""
    changes = compare(Observed(WANT, {"content": "sha256:old"}), "/etc/motd")[1]
    return Plan(
        "s",
        None,
        tuple(
            NodePlan(n, "linux", (PlanItem(n, "File", "motd", Action.UPDATE, changes),))
            for n in nodes
        ),
    )


def run(state: DesiredState, plan: Plan, db: Path, **kw: Any) -> applying.ApplyResult:
    with StateStore(db) as store:
        return asyncio.run(applying.apply(state, plan, store, concurrency=1, **kw))


def test_converged_node_is_committed_and_owned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = Script()
    result = run(setup(tmp_path, monkeypatch, script), approved("a"), tmp_path / "db")
    assert [(n.node, n.status) for n in result.nodes] == [("a", NodeStatus.CONVERGED)]
    assert script.calls == ["a:snapshot", "a:write", "a:verify", "a:commit"]
    with StateStore(tmp_path / "db") as store:
        assert [(o.kind, o.name, o.platform_id) for o in store.owned("a")] == [
            ("File", "motd", "/etc/motd")
        ]


def test_verify_mismatch_rolls_back_to_the_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = Script(verify_live={"content": "sha256:other"})
    result = run(setup(tmp_path, monkeypatch, script), approved("a"), tmp_path / "db")
    (node,) = result.nodes
    assert node.status is NodeStatus.ROLLED_BACK
    assert "verify found the node still differs: File/motd: update" in node.message
    assert script.calls[-1] == "a:rollback {'motd': 'old'}"
    assert "a:commit" not in script.calls
    with StateStore(tmp_path / "db") as store:
        assert store.open_transactions() == []
        assert store.owned("a") == []
    assert result.exit_code == 2


def test_failed_rollback_leaves_the_transaction_open_for_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = Script(verify_live={"content": "sha256:other"}, rollback_fails=True)
    result = run(setup(tmp_path, monkeypatch, script), approved("a"), tmp_path / "db")
    assert result.nodes[0].status is NodeStatus.FAILED
    assert "ROLLBACK FAILED, will retry" in result.nodes[0].message
    with StateStore(tmp_path / "db") as store:
        (left,) = store.open_transactions()
    assert left.node == "a"


def test_a_plan_that_moved_is_not_applied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script()
    script.live = dict(WANT)  # someone fixed it by hand since the plan: nothing to do now
    result = run(setup(tmp_path, monkeypatch, script), approved("a"), tmp_path / "db")
    assert result.nodes[0].status is NodeStatus.FAILED
    assert "changed since the plan was approved" in result.nodes[0].message
    assert script.calls == []


def test_fail_fast_skips_the_nodes_not_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = Script(verify_live={"content": "sha256:other"})
    result = run(
        setup(tmp_path, monkeypatch, script), approved("a", "b"), tmp_path / "db", fail_fast=True
    )
    assert [(n.node, n.status) for n in result.nodes] == [
        ("a", NodeStatus.ROLLED_BACK),
        ("b", NodeStatus.SKIPPED),
    ]


HOLD_NODE = """
import asyncio, sys
from controller.store import StateStore
async def main():
    async with StateStore(sys.argv[1]).node_writer(sys.argv[2]):
        print("held", flush=True)
        await asyncio.sleep(600)
asyncio.run(main())
"""


def test_a_node_another_process_writes_is_left_alone_and_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = Script()
    state = setup(tmp_path, monkeypatch, script)
    db = tmp_path / "db"
    StateStore(db).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_NODE, str(db), "a"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        result = run(state, approved("a", "b"), db)
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert [(n.node, n.status) for n in result.nodes] == [
        ("a", NodeStatus.FAILED),
        ("b", NodeStatus.CONVERGED),
    ]
    assert f"node a is locked by pid {holder.pid}" in result.nodes[0].message
    assert not any(call.startswith("a:") for call in script.calls)


class TwoBatches(ScriptedTransaction):
    """Writes in two batches; the signal comes while the first is on the node."""

    interrupt: asyncio.Event

    async def write(self, journal: StepJournal) -> None:
        step = journal.intend("File", "motd", "update", {"path": "/etc/motd"})
        self.script.calls.append(f"{self.node}:write 1")
        TwoBatches.interrupt.set()
        journal.done(step)
        journal.intend("File", "issue", "update", {"path": "/etc/issue"})
        self.script.calls.append(f"{self.node}:write 2")


def test_an_interrupt_rolls_the_node_in_flight_back_and_starts_nothing_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = Script()
    state = setup(tmp_path, monkeypatch, script)
    monkeypatch.setattr(ScriptedProvider, "transaction", _two_batches)

    async def go(store: StateStore) -> applying.ApplyResult:
        TwoBatches.interrupt = asyncio.Event()
        plan = approved("a", "b")
        return await applying.apply(
            state, plan, store, concurrency=1, interrupt=TwoBatches.interrupt
        )

    with StateStore(tmp_path / "db") as store:
        result = asyncio.run(go(store))
        (recorded,) = store.list_runs(5)
        assert store.open_transactions() == []
    assert [(n.node, n.status) for n in result.nodes] == [
        ("a", NodeStatus.ROLLED_BACK),
        ("b", NodeStatus.SKIPPED),
    ]
    assert "interrupted; rolled back to the snapshot" in result.nodes[0].message
    assert script.calls == ["a:snapshot", "a:write 1", "a:rollback {'motd': 'old'}"]
    assert recorded.status is RunStatus.INTERRUPTED


@contextlib.asynccontextmanager
async def _two_batches(
    self: ScriptedProvider, node: Document, changes: Sequence[Change],
    resources: Sequence[Document], tree: SourceTree,
) -> AsyncIterator[ScriptedTransaction]:  # fmt: skip
    yield TwoBatches(self.script, node.name)


def test_an_open_transaction_is_rolled_back_before_the_node_gets_a_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # serve's pass fails to roll back (the node dropped): its transaction stays open. The
    # next pass must roll that back first, and no later recovery may restore its older
    # snapshot over what the next pass committed.
    script = Script(verify_live={"content": "sha256:other"}, rollback_fails=True)
    state = setup(tmp_path, monkeypatch, script)
    db = tmp_path / "db"
    assert run(state, approved("a"), db).nodes[0].status is NodeStatus.FAILED
    script.verify_live, script.rollback_fails = dict(WANT), False
    script.calls.clear()
    second = run(state, approved("a"), db)
    assert second.nodes[0].status is NodeStatus.CONVERGED
    assert script.calls == [
        "a:rollback {'motd': 'old'}", "a:snapshot", "a:write", "a:verify", "a:commit",
    ]  # fmt: skip
    script.calls.clear()
    with StateStore(db) as store:
        assert store.open_transactions() == []
        assert asyncio.run(applying.recover(state, store)) == []
    assert script.calls == []


def test_a_node_whose_open_transaction_cannot_be_rolled_back_gets_no_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = Script(verify_live={"content": "sha256:other"}, rollback_fails=True)
    state = setup(tmp_path, monkeypatch, script)
    db = tmp_path / "db"
    run(state, approved("a"), db)
    script.calls.clear()
    second = run(state, approved("a"), db)
    assert second.nodes[0].status is NodeStatus.FAILED
    assert "is still open and could not be rolled back" in second.nodes[0].message
    assert script.calls == ["a:rollback {'motd': 'old'}"]  # no snapshot, nothing written
    with StateStore(db) as store:
        assert len(store.open_transactions()) == 1


def test_recovery_never_restores_a_snapshot_over_a_later_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A store written before the rule above: an old transaction open, a later committed.
    script = Script()
    state = setup(tmp_path, monkeypatch, script)
    with StateStore(tmp_path / "db") as store:
        old_run = store.start_run(Trigger.CLI, Command.APPLY, "s", None)
        old = store.begin_transaction(old_run, "a")
        store.record_snapshot(old, "Node", "a", "transaction", {"motd": "older"})
        store.finish_run(old_run, RunStatus.FAILED)
        new_run = store.start_run(Trigger.CLI, Command.APPLY, "s", None)
        new = store.begin_transaction(new_run, "a")
        store.record_snapshot(new, "Node", "a", "transaction", {"motd": "old"})
        store.commit(new)
        (line,) = asyncio.run(applying.recover(state, store))
        assert store.open_transactions() == []
        closed = store.transaction(old)
    assert f"older than transaction {new}, committed since" in line
    assert closed is not None
    assert script.calls == []


HOLD_MACHINE = """
import asyncio, sys
from controller.store import StateStore
async def main():
    # Another state file (sudo's, a systemd serve's) writing the same machine.
    async with StateStore(sys.argv[1]).node_writer("fw", key=sys.argv[2]):
        print("held", flush=True)
        await asyncio.sleep(600)
asyncio.run(main())
"""


def test_a_machine_another_state_file_writes_is_left_alone_and_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = Script()
    state = setup(tmp_path, monkeypatch, script)
    other = tmp_path / "other" / "state.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_MACHINE, str(other), "linux:192.0.2.1:22"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        result = run(state, approved("a"), tmp_path / "db")
    finally:
        holder.kill()
        holder.wait(timeout=10)
    (node,) = result.nodes
    assert node.status is NodeStatus.FAILED
    assert f"node a is locked by pid {holder.pid}" in node.message
    assert script.calls == []


def test_ctrl_c_ends_the_wait_for_a_node_lock_and_skips_the_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = Script()
    state = setup(tmp_path, monkeypatch, script)
    db = tmp_path / "db"
    StateStore(db).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_NODE, str(db), "a"], stdout=subprocess.PIPE, text=True
    )

    async def go(store: StateStore) -> tuple[applying.ApplyResult, float]:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.3, stop.set)
        started = time.monotonic()
        result = await applying.apply(
            state, approved("a"), store, concurrency=1, lock_timeout=30, interrupt=stop
        )
        return result, time.monotonic() - started

    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with StateStore(db) as store:
            result, took = asyncio.run(go(store))
            (recorded,) = store.list_runs(5)
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert took < 5  # not the 30 s of --lock-timeout
    assert [(n.node, n.status, n.message) for n in result.nodes] == [
        ("a", NodeStatus.SKIPPED, applying.INTERRUPTED_BEFORE)
    ]
    assert recorded.status is RunStatus.INTERRUPTED
    assert script.calls == []


def test_a_node_lock_names_the_run_that_holds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = Script()
    state = setup(tmp_path, monkeypatch, script)
    db = tmp_path / "db"
    seen: list[Any] = []
    plain = ScriptedTransaction.snapshot

    async def snapshot(self: ScriptedTransaction) -> Mapping[str, Any]:
        with StateStore(db) as store:
            for path in (
                node_lock_path(store.path, "a"),
                machine_node_lock_path("linux:192.0.2.1:22"),
            ):
                seen.append(json.loads(path.read_text())["run_id"])
        return await plain(self)

    monkeypatch.setattr(ScriptedTransaction, "snapshot", snapshot)
    with StateStore(db) as store:
        first = asyncio.run(applying.apply(state, approved("a"), store, concurrency=1))
        second = asyncio.run(applying.apply(state, approved("a"), store, concurrency=1))
    assert seen == [first.run_id] * 2 + [second.run_id] * 2


class SignalAtCommit(ScriptedTransaction):
    """The signal comes once the node has committed: nothing is left to cut short."""

    interrupt: asyncio.Event

    async def commit(self) -> None:
        await super().commit()
        SignalAtCommit.interrupt.set()


def test_a_signal_after_every_node_ended_leaves_the_run_recorded_as_they_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = Script()
    state = setup(tmp_path, monkeypatch, script)

    @contextlib.asynccontextmanager
    async def at_commit(
        self: ScriptedProvider, node: Document, changes: Sequence[Change],
        resources: Sequence[Document], tree: SourceTree,
    ) -> AsyncIterator[ScriptedTransaction]:  # fmt: skip
        yield SignalAtCommit(self.script, node.name)

    monkeypatch.setattr(ScriptedProvider, "transaction", at_commit)

    async def go(store: StateStore) -> applying.ApplyResult:
        SignalAtCommit.interrupt = asyncio.Event()
        return await applying.apply(
            state, approved("a"), store, concurrency=1, interrupt=SignalAtCommit.interrupt
        )

    with StateStore(tmp_path / "db") as store:
        result = asyncio.run(go(store))
        (recorded,) = store.list_runs(5)
    assert [(n.node, n.status) for n in result.nodes] == [("a", NodeStatus.CONVERGED)]
    assert not result.interrupted
    assert recorded.status is RunStatus.SUCCEEDED


def test_two_node_documents_naming_one_machine_are_not_written_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nodes a and b both say 192.0.2.1:22: with room for both, one still waits its turn.
    script = Script()
    state = setup(tmp_path, monkeypatch, script)
    plain = ScriptedTransaction.snapshot

    async def slow_snapshot(self: ScriptedTransaction) -> Mapping[str, Any]:
        snapshot = await plain(self)
        await asyncio.sleep(0.3)
        return snapshot

    monkeypatch.setattr(ScriptedTransaction, "snapshot", slow_snapshot)
    with StateStore(tmp_path / "db") as store:
        result = asyncio.run(
            applying.apply(state, approved("a", "b"), store, concurrency=2, lock_timeout=10)
        )
    assert [n.status for n in result.nodes] == [NodeStatus.CONVERGED] * 2
    first = script.calls[0].split(":")[0]
    assert [c.split(":")[0] for c in script.calls] == [first] * 4 + [
        {"a": "b", "b": "a"}[first]
    ] * 4


def test_a_machine_another_node_document_writes_here_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = Script()
    state = setup(tmp_path, monkeypatch, script)
    plain = ScriptedTransaction.snapshot

    async def slow_snapshot(self: ScriptedTransaction) -> Mapping[str, Any]:
        await asyncio.sleep(0.3)
        return await plain(self)

    monkeypatch.setattr(ScriptedTransaction, "snapshot", slow_snapshot)
    with StateStore(tmp_path / "db") as store:
        result = asyncio.run(applying.apply(state, approved("a", "b"), store, concurrency=2))
    failed = [n for n in result.nodes if n.status is NodeStatus.FAILED]
    (other,) = [n.node for n in result.nodes if n.status is NodeStatus.CONVERGED]
    assert len(failed) == 1
    assert f"this process, writing node {other} (the same machine)" in failed[0].message
