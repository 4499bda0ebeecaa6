from __future__ import annotations

from pathlib import Path

import pytest

from controller.errors import StoreError
from controller.store import (
    Command,
    StateStore,
    StepStatus,
    TransactionStatus,
    Trigger,
)


def _run(store: StateStore) -> int:
    return store.start_run(Trigger.CLI, Command.APPLY, "src", None)


def test_a_transaction_records_snapshots_and_steps_in_order(store: StateStore) -> None:
    txn = store.begin_transaction(_run(store), "web-1")
    store.record_snapshot(txn, "File", "motd", "/etc/motd", {"sha256": "aa", "mode": "0644"})
    store.record_snapshot(txn, "File", "issue", "/etc/issue", None)  # did not exist
    store.record_snapshot(txn, "Sysctl", "net.ipv4.ip_forward", "net.ipv4.ip_forward", {"v": 0})
    # Steps come back by seq, whatever order they were intended in.
    s2 = store.intend(txn, 2, "Sysctl", "net.ipv4.ip_forward", "update", {"value": "1"})
    s0 = store.intend(txn, 0, "File", "motd", "update", {"content": "hi\n"})
    s1 = store.intend(txn, 1, "File", "issue", "create", {"content": "x"})
    store.mark_done(s0)
    store.mark_failed(s1, "permission denied")

    snapshots = store.snapshots(txn)
    (found,) = store.open_transactions()

    assert [s.name for s in snapshots] == ["net.ipv4.ip_forward", "issue", "motd"]
    assert [s.before for s in snapshots] == [{"v": 0}, None, {"sha256": "aa", "mode": "0644"}]
    assert found.snapshots == tuple(snapshots)
    assert (found.id, found.node, found.status) == (txn, "web-1", TransactionStatus.OPEN)
    assert [(s.id, s.seq, s.status, s.message) for s in found.steps] == [
        (s0, 0, StepStatus.DONE, ""),
        (s1, 1, StepStatus.FAILED, "permission denied"),
        (s2, 2, StepStatus.INTENDED, ""),
    ]
    assert found.steps[0].payload == {"content": "hi\n"}
    assert (found.steps[2].kind, found.steps[2].action) == ("Sysctl", "update")


def test_committed_and_rolled_back_transactions_are_not_open(store: StateStore) -> None:
    run_id = _run(store)
    done = store.begin_transaction(run_id, "web-1")
    store.mark_done(store.intend(done, 0, "File", "motd", "update", {}))
    undone = store.begin_transaction(run_id, "web-2")
    still_open = store.begin_transaction(run_id, "fw-1")

    store.commit(done)
    store.mark_rolled_back(undone, "verify failed: service down")

    assert [t.id for t in store.open_transactions()] == [still_open]
    closed = store.transaction(undone)
    assert closed is not None and closed.status is TransactionStatus.ROLLED_BACK
    committed = store.transaction(done)
    assert committed is not None and committed.status is TransactionStatus.COMMITTED
    assert store.transaction(999) is None


def test_an_unfinished_step_blocks_commit(store: StateStore) -> None:
    txn = store.begin_transaction(_run(store), "web-1")
    store.mark_done(store.intend(txn, 0, "File", "a", "update", {}))
    store.intend(txn, 1, "File", "b", "update", {})

    with pytest.raises(StoreError, match=r"step\(s\) 1 not marked"):
        store.commit(txn)
    assert [t.id for t in store.open_transactions()] == [txn]


def test_a_closed_transaction_takes_no_more_records(store: StateStore) -> None:
    txn = store.begin_transaction(_run(store), "web-1")
    step = store.intend(txn, 0, "File", "a", "update", {})
    store.mark_rolled_back(txn, "aborted")

    with pytest.raises(StoreError, match="already rolled_back"):
        store.intend(txn, 1, "File", "b", "update", {})
    with pytest.raises(StoreError, match="already rolled_back"):
        store.record_snapshot(txn, "File", "b", "/b", None)
    with pytest.raises(StoreError, match="is rolled_back"):
        store.mark_done(step)
    with pytest.raises(StoreError, match="already rolled_back"):
        store.commit(txn)


def test_protocol_mistakes_are_refused(store: StateStore) -> None:
    run_id = _run(store)
    txn = store.begin_transaction(run_id, "web-1")
    step = store.intend(txn, 0, "File", "a", "update", {})
    store.record_snapshot(txn, "File", "a", "/a", {"sha256": "1"})
    store.mark_done(step)

    with pytest.raises(StoreError, match="already done"):
        store.mark_failed(step, "late")
    with pytest.raises(StoreError, match="already has a step 0"):
        store.intend(txn, 0, "File", "b", "update", {})
    with pytest.raises(StoreError, match="already has a snapshot of File/a"):
        store.record_snapshot(txn, "File", "a", "/a", {"sha256": "2"})
    with pytest.raises(StoreError, match="already has one"):
        store.begin_transaction(run_id, "web-1")
    with pytest.raises(StoreError, match="no such run"):
        store.begin_transaction(run_id + 1, "web-1")
    with pytest.raises(StoreError, match="no transaction 77"):
        store.intend(77, 0, "File", "a", "update", {})
    with pytest.raises(StoreError, match="no journal step 77"):
        store.mark_done(77)
    # The refused snapshot did not replace the first one.
    assert [s.before for s in store.snapshots(txn)] == [{"sha256": "1"}]


def test_a_crash_leaves_open_transactions_for_the_next_start(
    db_path: Path, store: StateStore
) -> None:
    """A controller that stops mid-apply (no commit, no close) and a new one that starts."""
    run_id = _run(store)
    finished = store.begin_transaction(run_id, "web-1")
    store.mark_done(store.intend(finished, 0, "File", "a", "update", {}))
    store.commit(finished)
    txn = store.begin_transaction(run_id, "web-2")
    store.record_snapshot(txn, "User", "deploy", "deploy", {"shell": "/bin/sh"})
    store.record_snapshot(txn, "Service", "nginx", "nginx", {"enabled": False})
    store.mark_done(store.intend(txn, 0, "User", "deploy", "update", {"shell": "/bin/bash"}))
    store.intend(txn, 1, "Service", "nginx", "update", {"enabled": True})
    # No commit and no close: the first store is simply abandoned here.

    with StateStore(db_path) as restarted:
        (found,) = restarted.open_transactions()

        assert (found.id, found.run_id, found.node) == (txn, run_id, "web-2")
        assert [(s.kind, s.before) for s in found.snapshots] == [
            ("Service", {"enabled": False}),
            ("User", {"shell": "/bin/sh"}),
        ]
        assert [s.status for s in found.steps] == [StepStatus.DONE, StepStatus.INTENDED]
        # Recovery rolls it back and closes it; the next start finds nothing to do.
        restarted.mark_rolled_back(found.id, "rolled back at start-up")
        assert restarted.open_transactions() == []
