"""Schedules fired by an injected clock: the files they write, the fresh check they wait
for, the reports branch, and a failure that does not stop later reports."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest

from controller.events import EventType
from controller.reconcile.handle import SourceStatus
from controller.reports import render_json
from controller.reports.clock import ManualClock
from controller.reports.scheduler import ReportScheduler
from controller.reports.settings import ReportSettings, Schedule
from controller.store import StateStore
from tests.unit.reports.handlekit import START, Clock, FakeHandle, node_drift, record_run, recorded

BEFORE = START - timedelta(minutes=1)  # 05:59, a minute before the daily 06:00


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore(tmp_path / "state.db", now=Clock()) as opened:
        yield opened


@pytest.fixture
def handle(store: StateStore) -> FakeHandle:
    fake = FakeHandle(store)
    fake.drift_entries = node_drift(recorded("plan_1_drift"), checked=START - timedelta(hours=1))
    return fake


def settings(tmp_path: Path, **options: object) -> ReportSettings:
    schedule = Schedule(
        name="daily",
        cron="0 6 * * *",
        refresh=bool(options.pop("refresh", False)),
        keep=int(options.pop("keep", 0)),  # type: ignore[call-overload]
    )
    return ReportSettings(schedules=(schedule,), dir=tmp_path / "reports", **options)  # type: ignore[arg-type]


class Running:
    def __init__(self, scheduler: ReportScheduler, clock: ManualClock) -> None:
        self.scheduler = scheduler
        self.clock = clock
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def fire_at(self, moment: datetime) -> None:
        """Move the clock to ``moment`` and wait for the report it causes."""
        count = len(self.scheduler.outcomes)
        await self.clock.set(moment)
        await until(lambda: len(self.scheduler.outcomes) > count)


@pytest.fixture
async def running(
    tmp_path: Path, handle: FakeHandle, request: pytest.FixtureRequest
) -> AsyncIterator[Running]:
    options = getattr(request, "param", {})
    clock = ManualClock(BEFORE)
    scheduler = ReportScheduler(settings(tmp_path, **options), handle, clock=clock)
    state = Running(scheduler, clock)
    state.task = asyncio.create_task(scheduler.run(state.stop))
    await clock.sleeping()
    yield state
    state.stop.set()
    await asyncio.wait_for(state.task, 5)


async def test_a_schedule_fires_at_its_time_and_writes_every_format(
    running: Running, tmp_path: Path, handle: FakeHandle
) -> None:
    folder = tmp_path / "reports" / "daily"
    await running.clock.advance(timedelta(seconds=30))
    await asyncio.sleep(0.05)
    assert not folder.exists()  # 05:59:30: not yet

    await running.fire_at(START)
    names = sorted(p.name for p in folder.iterdir())
    assert names == [
        "20250301T060000Z.html",
        "20250301T060000Z.json",
        "20250301T060000Z.md",
        "latest.html",
        "latest.json",
        "latest.md",
    ]
    document = json.loads((folder / "latest.json").read_text())
    jsonschema.validate(document, render_json.schema())
    assert document["generated"] == "2025-03-01T06:00:00+00:00"
    assert document["title"] == "daily"
    assert document["summary"]["drifted"] == 6
    assert {n["node"]: n["mode"] for n in document["nodes"]}["rep-db-1"] == "detect"
    assert "rep-web-1" in (folder / "latest.html").read_text()
    assert handle.triggered == []  # refresh: false reports the last check as it is

    handle.drift_entries = node_drift(recorded("plan_3_in_sync"))
    await running.fire_at(START + timedelta(days=1))
    assert (folder / "20250302T060000Z.md").exists()
    assert json.loads((folder / "latest.json").read_text())["status"] == "in sync"
    assert json.loads((folder / "20250301T060000Z.json").read_text())["status"] == "trouble"


async def test_times_missed_while_asleep_are_skipped_not_made_up(
    running: Running, tmp_path: Path
) -> None:
    await running.fire_at(START + timedelta(days=3, hours=2))  # three 06:00s went by
    await running.clock.sleeping()
    assert len(running.scheduler.outcomes) == 1
    await running.fire_at(START + timedelta(days=4))
    assert len(running.scheduler.outcomes) == 2


@pytest.mark.parametrize("running", [{"refresh": True, "settle_timeout": 5.0}], indirect=True)
async def test_refresh_waits_for_a_fresh_check_of_every_source(
    running: Running, handle: FakeHandle, store: StateStore
) -> None:
    clock = Clock()
    store._now = clock  # the recorded history: two earlier checks
    record_run(store, clock, recorded("plan_1_drift"), START - timedelta(days=2))
    record_run(store, clock, recorded("plan_2_partial"), START - timedelta(days=1))

    async def loop_runs_a_check() -> None:
        async def later() -> None:
            await asyncio.sleep(0.1)
            handle.events.publish(EventType.RUN_STARTED, run_id=99, source="infra")
            await asyncio.sleep(0.1)
            handle.drift_entries = node_drift(recorded("plan_2_partial"), checked=START)
            handle.events.publish(EventType.RUN_FINISHED, run_id=99, source="infra")

        asyncio.get_running_loop().create_task(later())

    # A run that started before the request does not count as fresh.
    handle.events.publish(EventType.RUN_STARTED, run_id=98, source="infra")
    handle.on_trigger = loop_runs_a_check
    await running.fire_at(START)
    outcome = running.scheduler.outcomes[-1]
    assert handle.triggered == [(None, "schedule")]
    assert outcome.settled
    assert outcome.report.drifted == 4  # the fresh check's drift, not the stale 6
    assert [p.drifted for p in outcome.report.series] == [6, 4]
    assert {n.node: n.platform for n in outcome.report.nodes}["edge-fw"] == "opnsense"


@pytest.mark.parametrize("running", [{"refresh": True, "settle_timeout": 0.2}], indirect=True)
async def test_a_check_that_does_not_finish_in_time_reports_the_last_one(
    running: Running, handle: FakeHandle, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "controller.reports.scheduler"):
        await running.fire_at(START)
    outcome = running.scheduler.outcomes[-1]
    assert not outcome.settled and outcome.report.drifted == 6
    assert "no fresh drift check of infra within 0s" in caplog.text


@pytest.mark.parametrize("running", [{"refresh": True, "settle_timeout": 30.0}], indirect=True)
async def test_a_source_backing_off_is_not_waited_for(running: Running, handle: FakeHandle) -> None:
    handle.source_list = [
        SourceStatus(
            "infra",
            "https://git.example/infra.git",
            "main",
            None,
            None,
            error="connection refused",
            retry_at=datetime.now(UTC) + timedelta(minutes=5),
        )
    ]
    async with asyncio.timeout(5):
        await running.fire_at(START)
    outcome = running.scheduler.outcomes[-1]
    assert outcome.settled and handle.triggered == []
    assert outcome.report.sources[0].error == "connection refused"


async def test_a_failed_report_is_logged_and_the_next_one_still_comes(
    running: Running, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "daily").write_text("in the way")
    with caplog.at_level(logging.ERROR, "controller.reports.scheduler"):
        await running.clock.set(START)
        await until(lambda: "report daily failed" in caplog.text)
    assert "cannot write" in caplog.text
    (tmp_path / "reports" / "daily").unlink()
    await running.clock.sleeping()
    await running.fire_at(START + timedelta(days=1))
    assert (tmp_path / "reports" / "daily" / "20250302T060000Z.md").exists()


async def test_reports_are_committed_to_the_branch_of_a_local_source(
    tmp_path: Path, handle: FakeHandle
) -> None:
    import git

    repo_path = tmp_path / "infra"
    repo = git.Repo.init(repo_path, initial_branch="main")
    (repo_path / "x.yaml").write_text("a: 1\n")
    repo.index.add(["x.yaml"])
    repo.index.commit("state")
    head = repo.head.commit.hexsha
    handle.source_list = [SourceStatus("infra", str(repo_path), "main", head, START)]
    clock = ManualClock(BEFORE)
    scheduler = ReportScheduler(
        settings(tmp_path, branch="fazai-reports", keep=1), handle, clock=clock
    )
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    try:
        await clock.sleeping()
        for day in range(2):
            await clock.set(START + timedelta(days=day))
            await until(lambda day=day: len(scheduler.outcomes) > day)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    first, second = scheduler.outcomes
    assert second.commit is not None and first.commit is not None
    reports = repo.commit("fazai-reports")
    assert reports.hexsha == second.commit and reports.parents[0].hexsha == first.commit
    names = sorted(b.path for b in reports.tree.traverse() if b.type == "blob")
    assert "daily/20250301T060000Z.json" in names and "daily/20250302T060000Z.html" in names
    assert "daily/latest.md" in names
    message = reports.message
    assert isinstance(message, str) and f"infra@{head[:12]}" in message
    assert repo.head.commit.hexsha == head and repo.active_branch.name == "main"
    # keep: 1 trims the folder, never the branch's history
    local = sorted(p.name for p in (tmp_path / "reports" / "daily").iterdir())
    assert [n for n in local if n.startswith("2025")] == [
        "20250302T060000Z.html",
        "20250302T060000Z.json",
        "20250302T060000Z.md",
    ]
