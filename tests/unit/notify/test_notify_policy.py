"""Which events become notices, and dedup: the same drift once, a changed drift again, a
resolved drift said, and all of it remembered across a restart."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.events import EventBus, EventType
from controller.notify.dedup import DedupState, default_path
from controller.notify.policy import Policy
from controller.notify.settings import NoticeKind
from controller.store import Command, NodeStatus, RunStatus, StateStore, Trigger
from tests.unit.reports.handlekit import Clock, FakeHandle, node_drift, recorded

REV = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore(tmp_path / "state.db", now=Clock()) as opened:
        yield opened


@pytest.fixture
def handle(store: StateStore) -> FakeHandle:
    return FakeHandle(store, EventBus())


def policy(handle: FakeHandle) -> Policy:
    return Policy(handle, DedupState(default_path(handle.store.path)))


def items(plan: str, node: str) -> list[dict[str, Any]]:
    return [c for c in recorded(plan)["changes"] if c["node"] == node]


def drift_event(
    handle: FakeHandle, node: str, found: list[dict[str, Any]], mode: str = "detect"
) -> Any:
    return handle.events.publish(
        EventType.DRIFT_DETECTED,
        source="infra",
        node=node,
        revision=REV,
        mode=mode,
        changes=len(found),
        items=found,
        run_id=1,
    )


def finished(handle: FakeHandle, command: str = "plan", run_id: int = 1, **data: Any) -> Any:
    return handle.events.publish(
        EventType.RUN_FINISHED,
        source="infra",
        run_id=run_id,
        status=data.pop("status", "succeeded"),
        command=command,
        revision=REV,
        **data,
    )


async def test_the_same_drift_is_notified_once_and_says_what_where_from_which_commit(
    handle: FakeHandle,
) -> None:
    rules = policy(handle)
    found = items("plan_1_drift", "rep-web-1")
    (notice,) = await rules.notices(drift_event(handle, "rep-web-1", found))
    assert notice.kind is NoticeKind.DRIFT and not notice.changed
    assert notice.title == "Drift on rep-web-1: 1 to create, 1 to update"
    assert (notice.node, notice.source, notice.revision, notice.mode) == (
        "rep-web-1",
        "infra",
        REV,
        "detect",
    )
    assert "at commit 0123456789ab (mode detect)" in notice.text
    assert "~ File/motd-web (rep-web-1) update" in notice.text
    assert "mode: 0600 -> 0644" in notice.text  # why: the field change
    assert [r.name for r in notice.resources] == ["app-conf", "motd-web"]

    # The next interval finds the same drift (items in another order): nothing new.
    assert await rules.notices(drift_event(handle, "rep-web-1", list(reversed(found)))) == []
    # Another node's drift is its own.
    assert (
        len(await rules.notices(drift_event(handle, "rep-db-1", items("plan_1_drift", "rep-db-1"))))
        == 1
    )


async def test_a_changed_drift_is_notified_again(handle: FakeHandle) -> None:
    rules = policy(handle)
    found = items("plan_1_drift", "rep-web-1")
    await rules.notices(drift_event(handle, "rep-web-1", found))
    changed = copy.deepcopy(found)
    motd = next(i for i in changed if i["name"] == "motd-web")
    next(c for c in motd["changes"] if c["field"] == "mode")["live"] = "0666"
    (notice,) = await rules.notices(drift_event(handle, "rep-web-1", changed))
    assert notice.changed and notice.title.startswith("Drift changed on rep-web-1")
    assert "mode: 0666 -> 0644" in notice.text
    fewer = [i for i in found if i["name"] == "motd-web"]
    (less,) = await rules.notices(drift_event(handle, "rep-web-1", fewer))
    assert less.title == "Drift changed on rep-web-1: 1 to update"


async def test_resolved_drift_gets_a_resolved_notice_once(handle: FakeHandle) -> None:
    rules = policy(handle)
    await rules.notices(drift_event(handle, "rep-web-1", items("plan_1_drift", "rep-web-1")))
    await rules.notices(drift_event(handle, "rep-db-1", items("plan_1_drift", "rep-db-1")))
    # Someone fixed rep-web-1 by hand; rep-db-1 still drifts.
    handle.drift_entries = node_drift(recorded("plan_2_partial"))
    (notice,) = await rules.notices(finished(handle))
    assert notice.kind is NoticeKind.RESOLVED and notice.node == "rep-web-1"
    assert notice.title == "Drift resolved on rep-web-1"
    assert "File/motd-web update" in notice.text and "File/app-conf create" in notice.text
    assert await rules.notices(finished(handle)) == []
    # The same drift coming back is news again.
    again = await rules.notices(
        drift_event(handle, "rep-web-1", items("plan_1_drift", "rep-web-1"))
    )
    assert len(again) == 1 and not again[0].changed


async def test_a_restart_keeps_what_was_notified(handle: FakeHandle) -> None:
    found = items("plan_1_drift", "rep-web-1")
    assert len(await policy(handle).notices(drift_event(handle, "rep-web-1", found))) == 1
    restarted = policy(handle)  # a new process reads the file
    assert await restarted.notices(drift_event(handle, "rep-web-1", found)) == []
    handle.drift_entries = node_drift(recorded("plan_3_in_sync"))
    (resolved,) = await restarted.notices(finished(handle))
    assert resolved.kind is NoticeKind.RESOLVED
    saved = json.loads(default_path(handle.store.path).read_text())
    assert saved == {"open": {}, "version": 1}


async def test_an_unreadable_state_file_is_set_aside(handle: FakeHandle) -> None:
    path = default_path(handle.store.path)
    path.write_text("{not json")
    rules = policy(handle)
    assert path.with_name(path.name + ".bad").read_text() == "{not json"
    assert (
        len(await rules.notices(drift_event(handle, "n", items("plan_1_drift", "rep-db-1")))) == 1
    )
    assert json.loads(path.read_text())["open"]["drift/infra/n"]["lines"] == [
        "Sysctl/fwd-db update",
        "User/deploy-db create",
    ]


def record_apply(store: StateStore, plan: dict[str, Any], results: dict[str, NodeStatus]) -> int:
    run_id = store.start_run(Trigger.SCHEDULE, Command.APPLY, "infra", REV, plan)
    for node, status in results.items():
        store.record_node(run_id, node, status, "" if status is NodeStatus.CONVERGED else "boom")
    store.finish_run(run_id, RunStatus.SUCCEEDED)
    return run_id


async def test_an_apply_says_what_changed_and_closes_the_drift_it_healed(
    handle: FakeHandle, store: StateStore
) -> None:
    rules = policy(handle)
    found = items("plan_1_drift", "rep-web-1")
    await rules.notices(drift_event(handle, "rep-web-1", found))
    plan = {**recorded("plan_1_drift"), "changes": found}
    run_id = record_apply(store, plan, {"rep-web-1": NodeStatus.CONVERGED})
    (applied,) = await rules.notices(finished(handle, "apply", run_id))
    assert applied.kind is NoticeKind.APPLIED
    assert applied.title == f"Applied: 2 change(s) on 1 node(s) from infra@{REV[:12]}"
    assert applied.run_id == run_id and applied.status == "succeeded"
    assert [(n.node, n.status) for n in applied.nodes] == [("rep-web-1", "converged")]
    assert "content: sha256:" in applied.text
    # The drift is closed by the apply, without a separate "resolved".
    handle.drift_entries = node_drift(recorded("plan_3_in_sync"))
    assert await rules.notices(finished(handle)) == []
    # An apply with nothing to do is not news.
    empty = record_apply(store, {**plan, "changes": []}, {"rep-web-1": NodeStatus.CONVERGED})
    assert await rules.notices(finished(handle, "apply", empty)) == []


async def test_in_auto_mode_only_the_apply_is_notified_not_the_drift_before_it(
    handle: FakeHandle, store: StateStore
) -> None:
    rules = policy(handle)
    found = items("plan_1_drift", "rep-web-1")
    assert await rules.notices(drift_event(handle, "rep-web-1", found, mode="auto")) == []
    plan = {**recorded("plan_1_drift"), "changes": found}
    run_id = record_apply(store, plan, {"rep-web-1": NodeStatus.CONVERGED})
    (applied,) = await rules.notices(finished(handle, "apply", run_id))
    assert applied.kind is NoticeKind.APPLIED
    # The same drift seen again in detect mode is news: auto kept it out of the dedup.
    (drift,) = await rules.notices(drift_event(handle, "rep-web-1", found))
    assert drift.kind is NoticeKind.DRIFT


async def test_failures_are_said_once_per_reason_until_the_node_converges(
    handle: FakeHandle, store: StateStore
) -> None:
    rules = policy(handle)

    def failed(reason: str, kind: EventType = EventType.NODE_ROLLED_BACK) -> Any:
        return handle.events.publish(
            kind, source="infra", run_id=7, node="rep-db-1", reason=reason, revision=REV
        )

    (first,) = await rules.notices(failed("verify: sysctl value is still 0"))
    assert first.kind is NoticeKind.ROLLED_BACK and first.title == "Apply rolled back on rep-db-1"
    assert "rolled back: verify: sysctl value is still 0" in first.text
    assert first.reason == "verify: sysctl value is still 0"
    assert await rules.notices(failed("verify: sysctl value is still 0")) == []
    (other,) = await rules.notices(failed("rollback failed", EventType.NODE_FAILED))
    assert other.kind is NoticeKind.FAILED and "may be partly changed" in other.text
    run_id = record_apply(store, recorded("plan_1_drift"), {"rep-db-1": NodeStatus.CONVERGED})
    await rules.notices(finished(handle, "apply", run_id))
    assert len(await rules.notices(failed("rollback failed", EventType.NODE_FAILED))) == 1


async def test_a_refused_head_is_said_once_and_its_end_too(handle: FakeHandle) -> None:
    rules = policy(handle)

    def refused(revision: str) -> Any:
        return handle.events.publish(
            EventType.SIGNATURE_REFUSED, source="infra", revision=revision, reason="unsigned"
        )

    (notice,) = await rules.notices(refused("a" * 40))
    assert notice.kind is NoticeKind.SIGNATURE_REFUSED
    assert notice.title == "Refused commit aaaaaaaaaaaa of infra"
    assert await rules.notices(refused("a" * 40)) == []
    assert len(await rules.notices(refused("b" * 40))) == 1
    assert await rules.notices(finished(handle, status="failed")) == []
    (back,) = await rules.notices(finished(handle))
    assert back.kind is NoticeKind.RESOLVED and back.title == "Source infra reconciles again"


async def test_other_events_are_not_notified(handle: FakeHandle) -> None:
    rules = policy(handle)
    for kind in (EventType.RUN_STARTED, EventType.NODE_READ, EventType.CHANGE_APPLIED):
        assert await rules.notices(handle.events.publish(kind, source="infra", node="x")) == []
