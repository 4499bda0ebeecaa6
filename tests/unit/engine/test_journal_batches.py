"""The engine's journal with batched records: a batch's intents in one commit before it is
sent, done marks together afterwards, and a controller killed between the two recovered.

The kill is a real SIGKILL of a real process writing a real state file; the node is a file
the scripted transaction changes and restores.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.engine import apply as applying
from controller.events import EventBus
from controller.model import loader
from controller.model.document import Document
from controller.model.state import DesiredState
from controller.plan.diff import Action, Observed, compare
from controller.plan.items import NodePlan, Plan, PlanItem
from controller.providers.base import Change, Intent, Observation, StepJournal
from controller.source.open import open_source
from controller.source.tree import SourceTree
from controller.store import StateStore, StepStatus, TransactionStatus

N = 12
DOCS = [
    {"apiVersion": "fazai.dev/v1alpha1", "kind": "Node", "metadata": {"name": "a"},
     "spec": {"platform": "linux", "address": "192.0.2.1"}},
] + [
    {"apiVersion": "fazai.dev/v1alpha1", "kind": "File", "metadata": {"name": f"f{i}"},
     "spec": {"target": {"node": "a"}, "path": f"/etc/f{i}", "content": "new\n"}}
    for i in range(N)
]  # fmt: skip
OLD, NEW = {"content": "sha256:old"}, {"content": "sha256:new"}

# Journals a batch as the Linux writer does, "sends" it (the node, a file, is changed), then
# dies before marking anything done: the crash window batching the done marks opens.
KILLED_AFTER_SENDING = """
import os, signal, sys
from pathlib import Path
from controller.engine.apply import StoreJournal
from controller.store import Command, Intent, StateStore, Trigger

store = StateStore(sys.argv[1])
txn = store.begin_transaction(store.start_run(Trigger.CLI, Command.APPLY, "t", None), "a")
store.record_snapshot(txn, "Node", "a", "transaction", {"node": Path(sys.argv[2]).read_text()})
journal = StoreJournal(store, txn)
count = int(sys.argv[3])
journal.intend_many([Intent("File", "f%d" % i, "update", {}) for i in range(count)])
Path(sys.argv[2]).write_text("new\\n")  # the batch reached the node, which made every step
os.kill(os.getpid(), signal.SIGKILL)  # ... and the controller died before marking them done
"""


class FileNode:
    """A node whose whole state is one file; its transaction writes it in one batch."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.commits_at: list[tuple[str, int]] = []  # (moment, store commits so far)
        self.rolled_back: list[Mapping[str, Any]] = []

    def live(self) -> Mapping[str, Any]:
        return NEW if self.path.read_text() == "new\n" else OLD


class FileTransaction:
    def __init__(self, node: FileNode, changes: Sequence[Change], store: StateStore) -> None:
        self.node, self.changes, self.store = node, changes, store

    async def snapshot(self) -> Mapping[str, Any]:
        return {"node": self.node.path.read_text()}

    async def write(self, journal: StepJournal) -> None:
        intents = [Intent(c.kind, c.name, c.action, {"objects": [c.name]}) for c in self.changes]
        self.node.commits_at.append(("before", self.store.commits))
        steps = journal.intend_many(intents)
        self.node.commits_at.append(("intended", self.store.commits))
        self.node.path.write_text("new\n")
        # the node reports the steps in two groups
        journal.done_many(steps[: len(steps) // 2])
        journal.done_many(steps[len(steps) // 2 :])
        self.node.commits_at.append(("done", self.store.commits))

    async def verify(self) -> Observation:
        seen = Observed(NEW, self.node.live())
        return Observation({Document(c.kind, c.name, {}): seen for c in self.changes})

    async def commit(self) -> None:
        return None

    async def rollback(self, snapshot: Mapping[str, Any]) -> None:
        self.node.rolled_back.append(dict(snapshot))
        self.node.path.write_text(str(snapshot["node"]))


class FileProvider:
    platform = "linux"

    def __init__(self, node: FileNode, store: StateStore | None = None) -> None:
        self.node, self.store = node, store

    async def observe(
        self, node: Document, resources: Sequence[Document], tree: SourceTree
    ) -> Observation:
        return Observation({doc: Observed(NEW, self.node.live()) for doc in resources})

    @contextlib.asynccontextmanager
    async def transaction(
        self, node: Document, changes: Sequence[Change], resources: Sequence[Document],
        tree: SourceTree,
    ) -> AsyncIterator[FileTransaction]:  # fmt: skip
        assert self.store is not None or not changes
        yield FileTransaction(self.node, changes, self.store)  # type: ignore[arg-type]


def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, provider: FileProvider) -> DesiredState:
    (tmp_path / "s.yaml").write_text(yaml.safe_dump_all(DOCS))
    monkeypatch.setattr(applying, "_provider", lambda platform: provider)
    return loader.load(open_source(str(tmp_path)))


def test_a_batch_costs_one_commit_for_its_intents_and_one_per_group_of_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = FileNode(tmp_path / "node")
    node.path.write_text("old\n")
    bus = EventBus()
    with StateStore(tmp_path / "state.db") as store:
        state = setup(tmp_path, monkeypatch, FileProvider(node, store))
        # As the node's read makes them: the engine writes only exactly the judged changes.
        changes = compare(Observed(NEW, OLD))[1]
        items = tuple(PlanItem("a", "File", f"f{i}", Action.UPDATE, changes) for i in range(N))
        plan = Plan("s", None, (NodePlan("a", "linux", items),))
        result = asyncio.run(applying.apply(state, plan, store, publish=bus.publish))
        assert result.converged, result.nodes
        (txn,) = store.run_transactions(result.run_id)
        owned = store.owned("a")
    moments = dict(node.commits_at)
    assert moments["intended"] - moments["before"] == 1  # N intents, one commit
    assert moments["done"] - moments["intended"] == 2  # two groups of reports, two commits
    assert txn.status is TransactionStatus.COMMITTED
    assert [s.status for s in txn.steps] == [StepStatus.DONE] * N
    # still one change.applied event per step, in order
    applied = [e.data["name"] for e in bus.history() if e.type.value == "change.applied"]
    assert applied == [f"f{i}" for i in range(N)]
    assert sorted(o.name for o in owned) == sorted(f"f{i}" for i in range(N))


def test_killed_between_the_intents_commit_and_the_done_marks_is_rolled_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = FileNode(tmp_path / "node")
    node.path.write_text("old\n")
    db = tmp_path / "state.db"
    child = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_SENDING, str(db), str(node.path), str(N)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert node.path.read_text() == "new\n"  # the node was changed; nothing says so yet

    with StateStore(db) as store:
        (left,) = store.open_transactions()
        # Every step is only intended: whether it landed is unknown to the journal...
        assert [s.status for s in left.steps] == [StepStatus.INTENDED] * N
        # ...which is all a rollback needs: the snapshot covers every target.
        state = setup(tmp_path, monkeypatch, FileProvider(node))
        report = asyncio.run(applying.recover(state, store))
        assert report == [f"a: interrupted transaction {left.id} rolled back to its snapshot"]
        assert store.open_transactions() == []
        closed = store.transaction(left.id)
        assert closed is not None and closed.status is TransactionStatus.ROLLED_BACK
    assert node.rolled_back == [{"node": "old\n"}]
    assert node.path.read_text() == "old\n"
