from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from controller.errors import StoreError
from controller.store import (
    Command,
    NodeResult,
    NodeStatus,
    RunStatus,
    StateStore,
    Trigger,
    overall_status,
)

PLAN = {"source": "/srv/desired", "nodes": [{"node": "web-1", "items": [{"kind": "File"}]}]}


def test_a_run_round_trips_with_its_nodes_and_plan(store: StateStore) -> None:
    run_id = store.start_run(Trigger.WEBHOOK, Command.APPLY, "git@x:fleet.git", "a" * 40, PLAN)
    store.record_node(run_id, "web-2", NodeStatus.IN_PROGRESS)
    store.record_node(run_id, "web-1", NodeStatus.CONVERGED, "3 changes", 1.25)
    store.record_node(run_id, "web-2", NodeStatus.ROLLED_BACK, "verify failed", 4.5)
    store.finish_run(run_id, RunStatus.PARTIAL)

    run = store.get_run(run_id)

    assert run is not None
    assert (run.id, run.trigger, run.command) == (run_id, Trigger.WEBHOOK, Command.APPLY)
    assert (run.source, run.revision, run.status) == ("git@x:fleet.git", "a" * 40, "partial")
    # The clock ticks once per write: started at the first, finished at the last.
    assert run.started == datetime(2025, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert run.finished == datetime(2025, 1, 1, 0, 0, 2, tzinfo=UTC)
    assert run.nodes == (
        NodeResult("web-1", NodeStatus.CONVERGED, "3 changes", 1.25),
        NodeResult("web-2", NodeStatus.ROLLED_BACK, "verify failed", 4.5),
    )
    assert run.plan == PLAN


def test_a_run_without_a_plan_or_revision_and_one_planned_later(store: StateStore) -> None:
    run_id = store.start_run(Trigger.CLI, Command.PLAN, "./desired", None)
    first = store.get_run(run_id)
    assert first is not None
    assert (first.plan, first.revision, first.finished) == (None, None, None)
    assert first.status is RunStatus.IN_PROGRESS

    store.record_plan(run_id, PLAN)

    later = store.get_run(run_id)
    assert later is not None and later.plan == PLAN


def test_unknown_runs(store: StateStore) -> None:
    assert store.get_run(42) is None
    with pytest.raises(StoreError, match="no run 42"):
        store.finish_run(42, RunStatus.FAILED)
    with pytest.raises(StoreError, match="no run 42"):
        store.record_node(42, "web-1", NodeStatus.FAILED)
    with pytest.raises(StoreError, match="no run 42"):
        store.record_plan(42, PLAN)


def test_runs_list_newest_first_in_pages(store: StateStore) -> None:
    ids = [store.start_run(Trigger.SCHEDULE, Command.DRIFT, f"src{i}", None) for i in range(5)]
    store.record_node(ids[3], "fw-1", NodeStatus.SKIPPED)

    assert ids == sorted(ids) and len(set(ids)) == 5  # monotonic
    assert [r.id for r in store.list_runs(2, 0)] == [ids[4], ids[3]]
    assert [r.id for r in store.list_runs(2, 2)] == [ids[2], ids[1]]
    assert [r.id for r in store.list_runs(2, 4)] == [ids[0]]
    assert store.list_runs(2, 6) == []
    assert [r.source for r in store.list_runs()] == ["src4", "src3", "src2", "src1", "src0"]
    # Node results come with the listing; the plan does not.
    assert store.list_runs(1, 1)[0].nodes == (NodeResult("fw-1", NodeStatus.SKIPPED, "", 0.0),)
    assert not hasattr(store.list_runs(1)[0], "plan")
    with pytest.raises(ValueError):
        store.list_runs(-1)


def test_run_ids_are_never_reused(db_path: Path) -> None:
    with StateStore(db_path) as store:
        first = store.start_run(Trigger.CLI, Command.PLAN, "a", None)
    with StateStore(db_path) as store:
        second = store.start_run(Trigger.CLI, Command.PLAN, "b", None)
    assert second > first


def test_bad_enum_values_are_refused(store: StateStore) -> None:
    with pytest.raises(ValueError):
        store.start_run("cron", Command.PLAN, "a", None)  # type: ignore[arg-type]
    assert store.list_runs() == []


def test_naive_timestamps_are_refused(db_path: Path) -> None:
    with (
        StateStore(db_path, now=lambda: datetime(2025, 1, 1)) as store,
        pytest.raises(ValueError, match="timezone"),
    ):
        store.start_run(Trigger.CLI, Command.PLAN, "a", None)


async def test_threads_share_one_store(store: StateStore) -> None:
    """asyncio.to_thread from many tasks: the lock keeps each transaction whole."""

    def one(i: int) -> int:
        run_id = store.start_run(Trigger.API, Command.PLAN, f"s{i}", None)
        store.record_node(run_id, f"n{i}", NodeStatus.CONVERGED)
        store.finish_run(run_id, RunStatus.SUCCEEDED)
        return run_id

    ids = await asyncio.gather(*(asyncio.to_thread(one, i) for i in range(40)))

    assert len(set(ids)) == 40
    runs = store.list_runs(100)
    assert len(runs) == 40
    assert all(r.status is RunStatus.SUCCEEDED and len(r.nodes) == 1 for r in runs)


@pytest.mark.parametrize(
    ("nodes", "expected"),
    [
        ([NodeStatus.CONVERGED, NodeStatus.SKIPPED], RunStatus.SUCCEEDED),
        ([], RunStatus.SUCCEEDED),
        ([NodeStatus.CONVERGED, NodeStatus.ROLLED_BACK], RunStatus.PARTIAL),
        ([NodeStatus.FAILED, NodeStatus.ROLLED_BACK, NodeStatus.SKIPPED], RunStatus.FAILED),
        ([NodeStatus.CONVERGED, NodeStatus.IN_PROGRESS], RunStatus.INTERRUPTED),
    ],
)
def test_overall_status(nodes: list[NodeStatus], expected: RunStatus) -> None:
    assert overall_status(nodes) is expected
