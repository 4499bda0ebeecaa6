"""Journal records written together: one commit (one fsync of the WAL) for many, all or none.

``StateStore.commits`` counts the write transactions the store committed; a second,
independent SQLite connection checks that what one commit wrote is there for others.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from controller.errors import StoreError
from controller.store import Command, Intent, StateStore, StepStatus, Trigger

N = 25


def _txn(store: StateStore) -> int:
    return store.begin_transaction(store.start_run(Trigger.CLI, Command.APPLY, "src", None), "a")


def _intents(count: int) -> list[Intent]:
    return [Intent("File", f"f{i}", "update", {"objects": [f"/etc/f{i}"]}) for i in range(count)]


def _statuses(path: Path) -> list[tuple[int, str]]:
    """The steps as another connection sees them (seq, status)."""
    raw = sqlite3.connect(path)
    try:
        return raw.execute("SELECT seq, status FROM steps ORDER BY seq").fetchall()
    finally:
        raw.close()


def test_n_intents_are_one_commit_and_on_disk_when_it_returns(
    store: StateStore, db_path: Path
) -> None:
    txn = _txn(store)
    before = store.commits
    ids = store.intend_many(txn, 1, _intents(N))
    assert store.commits - before == 1
    assert len(ids) == N and ids == sorted(ids)
    assert _statuses(db_path) == [(seq, "intended") for seq in range(1, N + 1)]
    (found,) = store.open_transactions()
    assert [(s.id, s.seq, s.name) for s in found.steps] == [
        (step, i + 1, f"f{i}") for i, step in enumerate(ids)
    ]


def test_one_by_one_costs_a_commit_each(store: StateStore) -> None:
    # The baseline the batch saves: what the journal did before.
    txn = _txn(store)
    before = store.commits
    for i, intent in enumerate(_intents(5)):
        store.intend(txn, i, intent.kind, intent.name, intent.action, intent.payload)
    assert store.commits - before == 5


def test_steps_reported_together_are_marked_in_one_commit(store: StateStore, db_path: Path) -> None:
    txn = _txn(store)
    ids = store.intend_many(txn, 1, _intents(N))
    before = store.commits
    store.mark_done_many(ids[:10])
    store.mark_done_many(ids[10:])
    assert store.commits - before == 2
    assert {status for _, status in _statuses(db_path)} == {"done"}
    store.commit(txn)  # nothing left only intended


def test_a_batch_that_cannot_be_recorded_records_nothing(store: StateStore) -> None:
    txn = _txn(store)
    store.intend(txn, 3, "File", "taken", "update", {})
    with pytest.raises(StoreError, match="already has a step 3"):
        store.intend_many(txn, 1, _intents(5))  # seqs 1-5 collide at 3
    (found,) = store.open_transactions()
    assert [s.name for s in found.steps] == ["taken"]

    ids = store.intend_many(txn, 10, _intents(3))
    store.mark_done(ids[1])
    with pytest.raises(StoreError, match=f"step {ids[1]} is already done"):
        store.mark_done_many(ids)
    (found,) = store.open_transactions()
    # all or none: the other two are still only intended
    assert [s.status for s in found.steps[1:]] == [
        StepStatus.INTENDED,
        StepStatus.DONE,
        StepStatus.INTENDED,
    ]


def test_empty_batches_write_nothing(store: StateStore) -> None:
    txn = _txn(store)
    before = store.commits
    assert store.intend_many(txn, 1, []) == []
    store.mark_done_many([])
    store.record_inventory("a", None, {}, ())
    assert store.commits == before


def test_intents_of_a_closed_transaction_are_refused(store: StateStore) -> None:
    txn = _txn(store)
    store.mark_rolled_back(txn, "gone")
    with pytest.raises(StoreError, match="already rolled_back"):
        store.intend_many(txn, 1, _intents(2))


def test_what_an_apply_owns_and_deletes_is_one_commit(store: StateStore) -> None:
    store.own("a", "File", "old", "/etc/old", None)
    before = store.commits
    owned = {("File", f"f{i}"): f"/etc/f{i}" for i in range(N)}
    store.record_inventory("a", None, owned, [("File", "old")])
    assert store.commits - before == 1
    assert {(o.kind, o.name): o.platform_id for o in store.owned("a")} == owned
