"""The engine's rollbacks from the journal get the escrowed secrets back, or say which not.

The transaction is scripted at the provider boundary (as in test_apply_engine): its
snapshot holds a secret the way a Linux snapshot does, and its rollback records what it
was given. The real thing runs on real nodes in tests/integration/test_apply_escrow.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.engine import apply as applying
from controller.model import loader
from controller.model.document import Document
from controller.model.state import DesiredState
from controller.plan.diff import Action, Observed, compare
from controller.plan.items import NodePlan, Plan, PlanItem
from controller.providers.base import Change, Observation, StepJournal
from controller.source.open import open_source
from controller.source.tree import SourceTree
from controller.store import NodeStatus, StateStore, TransactionStatus, default_escrow_key_path

SECRET = "c2VjcmV0LXRva2VuCg=="  # base64, as a snapshot holds a sensitive file's content
DOCS = [
    {"apiVersion": "fazai.dev/v1alpha1", "kind": "Node", "metadata": {"name": "a"},
     "spec": {"platform": "linux", "address": "192.0.2.1"}},
    {"apiVersion": "fazai.dev/v1alpha1", "kind": "File", "metadata": {"name": "token"},
     "spec": {"target": {"node": "a"}, "path": "/etc/token", "content": "x", "sensitive": True}},
]  # fmt: skip
WANT = {"sha256": "new"}


def taken() -> dict[str, Any]:
    return {
        "format": "scripted",
        "escrow": ["secretContent"],
        "objects": [{"kind": "File", "name": "token", "key": "/etc/token",
                     "before": {"mode": "0600", "secretContent": SECRET}}],
    }  # fmt: skip


class Script:
    def __init__(self, *, verify_ok: bool = True, crash_in_write: bool = False) -> None:
        self.verify_ok = verify_ok
        self.crash_in_write = crash_in_write
        self.rolled_back: list[Mapping[str, Any]] = []
        self.written = False


class Crash(BaseException):
    """The controller dying mid-write: nothing in the engine catches it."""


class ScriptedTransaction:
    def __init__(self, script: Script) -> None:
        self.script = script

    async def snapshot(self) -> Mapping[str, Any]:
        return taken()

    async def write(self, journal: StepJournal) -> None:
        step = journal.intend("File", "token", "update", {"path": "/etc/token"})
        self.script.written = True
        if self.script.crash_in_write:
            raise Crash
        journal.done(step)

    async def verify(self) -> Observation:
        live = WANT if self.script.verify_ok else {"sha256": "other"}
        return Observation({Document("File", "token", {}): Observed(WANT, live)})

    async def commit(self) -> None:
        return None

    async def rollback(self, snapshot: Mapping[str, Any]) -> None:
        self.script.rolled_back.append(snapshot)


class ScriptedProvider:
    platform = "linux"

    def __init__(self, script: Script) -> None:
        self.script = script

    async def observe(
        self, node: Document, resources: Sequence[Document], tree: SourceTree
    ) -> Observation:
        return Observation({doc: Observed(WANT, {"sha256": "old"}) for doc in resources})

    @contextlib.asynccontextmanager
    async def transaction(
        self, node: Document, changes: Sequence[Change], resources: Sequence[Document],
        tree: SourceTree,
    ) -> AsyncIterator[ScriptedTransaction]:  # fmt: skip
        yield ScriptedTransaction(self.script)


def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: Script) -> DesiredState:
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "s.yaml").write_text(yaml.safe_dump_all(DOCS))
    monkeypatch.setattr(applying, "_provider", lambda platform: ScriptedProvider(script))
    return loader.load(open_source(str(tmp_path / "s")))


# What the scripted node's read makes (the engine writes only exactly the judged changes).
CHANGES = compare(Observed(WANT, {"sha256": "old"}), "token")[1]
PLAN = Plan(
    "s", None, (NodePlan("a", "linux", (PlanItem("a", "File", "token", Action.UPDATE, CHANGES),)),)
)


def apply(state: DesiredState, db: Path) -> applying.ApplyResult:
    with StateStore(db) as store:
        return asyncio.run(applying.apply(state, PLAN, store))


def rollback_run(state: DesiredState, db: Path, run_id: int) -> applying.ApplyResult:
    with StateStore(db) as store:
        return asyncio.run(applying.roll_back_run(state, store, run_id))


def test_rollback_of_a_run_gets_the_secret_back_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = Script()
    state = setup(tmp_path, monkeypatch, script)
    db = tmp_path / "state.db"
    applied = apply(state, db)
    assert applied.nodes[0].status is NodeStatus.CONVERGED
    assert all(SECRET.encode() not in f.read_bytes() for f in tmp_path.iterdir() if f.is_file())

    undone = rollback_run(state, db, applied.run_id)

    assert undone.nodes[0].status is NodeStatus.CONVERGED
    (given,) = script.rolled_back
    assert given["objects"][0]["before"]["secretContent"] == SECRET
    assert given["objects"] == taken()["objects"]


def test_without_the_key_the_rest_is_restored_and_the_secret_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = Script()
    state = setup(tmp_path, monkeypatch, script)
    db = tmp_path / "state.db"
    applied = apply(state, db)
    key = default_escrow_key_path(db)
    key.unlink()

    undone = rollback_run(state, db, applied.run_id)

    (given,) = script.rolled_back
    assert given["objects"][0]["before"] == {"mode": "0600", "secretContent": "***"}
    (node,) = undone.nodes
    assert node.message.startswith(f"restored the snapshot of run {applied.run_id}; ")
    assert (
        "File/token (/etc/token): secretContent could not be restored from the escrow: "
        f"no escrow key: key file {key} does not exist" in node.message
    )
    assert SECRET not in node.message
    with StateStore(db) as store:
        recorded = store.get_run(undone.run_id)
    assert (
        recorded is not None and "secretContent could not be restored" in recorded.nodes[0].message
    )


def test_in_process_rollback_uses_the_snapshot_it_took(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = Script(verify_ok=False)
    state = setup(tmp_path, monkeypatch, script)
    result = apply(state, tmp_path / "state.db")
    assert result.nodes[0].status is NodeStatus.ROLLED_BACK
    (given,) = script.rolled_back
    assert given["objects"][0]["before"]["secretContent"] == SECRET


def test_the_next_start_recovers_an_interrupted_transaction_with_its_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = Script(crash_in_write=True)
    state = setup(tmp_path, monkeypatch, script)
    db = tmp_path / "state.db"
    with pytest.raises(Crash):
        apply(state, db)
    assert script.rolled_back == []

    with StateStore(db) as store:
        report = asyncio.run(applying.recover(state, store))
        assert store.open_transactions() == []

    assert report == ["a: interrupted transaction 1 rolled back to its snapshot"]
    (given,) = script.rolled_back
    assert given["objects"][0]["before"]["secretContent"] == SECRET


def test_a_snapshot_that_cannot_be_escrowed_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAZAI_ESCROW_KEY_FILE", str(tmp_path / "absent.key"))
    script = Script()
    state = setup(tmp_path, monkeypatch, script)
    db = tmp_path / "state.db"

    result = apply(state, db)

    (node,) = result.nodes
    assert node.status is NodeStatus.FAILED
    assert "could not record the snapshot, nothing written" in node.message
    assert "absent.key does not exist" in node.message
    assert not script.written
    with StateStore(db) as store:
        assert store.open_transactions() == []
        (txn,) = store.run_transactions(result.run_id)
    assert txn.status is TransactionStatus.ROLLED_BACK and txn.snapshots == ()
