"""Drift over time, read from a real state store holding several recorded runs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from controller.reports import history
from controller.store import Command, StateStore
from tests.unit.reports.handlekit import START, Clock, record_run, recorded


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[StateStore]:
    with StateStore(tmp_path / "state.db", now=clock) as opened:
        yield opened


def test_one_point_per_planning_run_in_the_window_oldest_first(
    store: StateStore, clock: Clock
) -> None:
    drift, partial, in_sync = (
        recorded("plan_1_drift"),
        recorded("plan_2_partial"),
        recorded("plan_3_in_sync"),
    )
    old = record_run(store, clock, drift, START - timedelta(days=40))  # outside the window
    first = record_run(store, clock, drift, START - timedelta(days=3))
    applied = record_run(
        store, clock, drift, START - timedelta(days=3, minutes=-1), command=Command.APPLY
    )
    record_run(store, clock, None, START - timedelta(days=2), command=Command.ROLLBACK)
    second = record_run(store, clock, partial, START - timedelta(days=2))
    third = record_run(store, clock, in_sync, START - timedelta(days=1), source="other")

    points = history.drift_series(store, START - timedelta(days=30))

    assert [p.run_id for p in points] == [first, applied, second, third]
    assert old not in [p.run_id for p in points]
    assert [p.drifted for p in points] == [6, 6, 4, 0]
    assert [p.errors for p in points] == [1, 1, 1, 0]  # rep-gone could not be read
    assert [p.command for p in points] == ["plan", "apply", "plan", "plan"]
    assert points[0].nodes == (("edge-fw", 2), ("rep-db-1", 2), ("rep-web-1", 2))
    assert points[2].nodes == (("edge-fw", 2), ("rep-db-1", 2))
    assert points[0].time == START - timedelta(days=3)
    assert points[3].source == "other"

    only = history.drift_series(store, START - timedelta(days=30), sources={"infra"})
    assert [p.run_id for p in only] == [first, applied, second]


def test_an_empty_store_has_no_points_and_platforms_come_from_the_newest_plan(
    store: StateStore, clock: Clock
) -> None:
    assert history.drift_series(store, START - timedelta(days=30)) == ()
    assert history.node_platforms(store) == {}
    record_run(store, clock, recorded("plan_1_drift"), START)
    assert history.node_platforms(store) == {
        "edge-fw": "opnsense",
        "rep-db-1": "linux",
        "rep-gone": "linux",
        "rep-web-1": "linux",
    }


def test_the_newest_points_are_kept_when_there_are_more_than_the_limit(
    store: StateStore, clock: Clock
) -> None:
    plan = recorded("plan_2_partial")
    ids = [record_run(store, clock, plan, START + timedelta(minutes=i)) for i in range(5)]
    points = history.drift_series(store, START - timedelta(days=1), limit=3)
    assert [p.run_id for p in points] == ids[2:]
