"""A small ControllerHandle for the reports and notify tests: a real EventBus and a real
StateStore, with drift and sources set by the test; recorded plans loaded from
tests/data/reports."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from controller.events import EventBus
from controller.plan import plan_json
from controller.plan.items import Plan, PlanItem
from controller.reconcile.handle import (
    Mode,
    NodeDrift,
    PendingApproval,
    SourceStatus,
    UnknownApproval,
)
from controller.store import Command, NodeStatus, RunStatus, StateStore, Trigger

DATA = Path(__file__).resolve().parents[2] / "data" / "reports"
START = datetime(2025, 3, 1, 6, 0, tzinfo=UTC)


def recorded(name: str) -> dict[str, Any]:
    """``plan_1_drift``, ``plan_2_partial`` or ``plan_3_in_sync`` (see record_plans.py)."""
    loaded: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text())
    return loaded


def recorded_plan(name: str) -> Plan:
    """A recorded plan, typed again as the store's readers do (``plan_json.from_dict``)."""
    return plan_json.from_dict(recorded(name))


def recorded_items(name: str, node: str) -> list[PlanItem]:
    """The typed items of ``node`` in a recorded plan."""
    return [i for n in recorded_plan(name).nodes if n.node == node for i in n.items]


class Clock:
    """The store's clock: returns ``moment``, which tests set."""

    def __init__(self, moment: datetime = START) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


def node_drift(
    plan: Mapping[str, Any],
    *,
    source: str = "infra",
    mode: Mode = Mode.DETECT,
    checked: datetime = START,
    revision: str | None = "0123456789abcdef0123456789abcdef01234567",
) -> list[NodeDrift]:
    """What the reconcile loop keeps per node after planning ``plan`` (as passes.py does)."""
    return [
        NodeDrift(node.node, source, mode, checked, revision, node.items, node.error)
        for node in plan_json.from_dict(plan).nodes
    ]


def record_run(
    store: StateStore,
    clock: Clock,
    plan: Mapping[str, Any] | None,
    at: datetime,
    *,
    command: Command = Command.PLAN,
    source: str = "infra",
    revision: str | None = "0123456789abcdef0123456789abcdef01234567",
) -> int:
    clock.moment = at
    run_id = store.start_run(Trigger.SCHEDULE, command, source, revision, plan)
    clock.moment = at + timedelta(seconds=3)
    for node in (plan or {}).get("nodes", []):
        failed = node["status"] == "error"
        store.record_node(
            run_id, node["node"], NodeStatus.FAILED if failed else NodeStatus.CONVERGED
        )
    store.finish_run(run_id, RunStatus.SUCCEEDED)
    return run_id


def default_sources() -> list[SourceStatus]:
    return [
        SourceStatus(
            name="infra",
            location="https://git.example/acme/infra.git",
            branch="main",
            revision="0123456789abcdef0123456789abcdef01234567",
            last_sync=START,
        )
    ]


class FakeHandle:
    """Implements ControllerHandle. ``on_trigger`` (optional) runs when a reconcile is
    requested, standing in for the loop."""

    def __init__(self, store: StateStore, events: EventBus | None = None) -> None:
        self.events = events or EventBus()
        self.store = store
        self.drift_entries: list[NodeDrift] = []
        self.source_list: list[SourceStatus] = default_sources()
        self.triggered: list[tuple[str | None, str]] = []
        self.on_trigger: Callable[[], Awaitable[None]] | None = None

    def ready(self) -> bool:
        return True

    def sources(self) -> Sequence[SourceStatus]:
        return list(self.source_list)

    def drift(self) -> Sequence[NodeDrift]:
        return list(self.drift_entries)

    def approvals(self) -> Sequence[PendingApproval]:
        return []

    async def trigger(self, source: str | None = None, reason: str = "api") -> None:
        self.triggered.append((source, reason))
        if self.on_trigger is not None:
            await self.on_trigger()

    async def notify_push(self, location: str, branch: str, revision: str | None) -> bool:
        return False

    async def approve(self, approval_id: str, by: str = "") -> int | None:
        raise UnknownApproval(approval_id)

    async def abort(self, approval_id: str, by: str = "") -> None:
        raise UnknownApproval(approval_id)
