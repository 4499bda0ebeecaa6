"""A big plan is recorded and published without stalling the event loop.

Redacting, encoding and committing a plan of thousands of objects is a second of work;
on the loop it froze ``/healthz`` and the SSE stream (bench/commit_to_converged.py
--diagnose). The reconcile pass does it in threads. What is asserted is where that work
runs (never on the loop's thread), not how late the loop ticked: a thread holding the GIL
in one C call (json.dumps of the whole plan) or a full garbage collection of a big test
process delays the loop too, by an amount no bound fits on every machine.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from controller.engine import plan as planning
from controller.events import Event, EventBus, EventType, Redacted
from controller.model.state import DesiredState
from controller.plan import items as planitems
from controller.plan import plan_json
from controller.plan.diff import Action, Change
from controller.reconcile import passes
from controller.reconcile.approvals import Approvals
from controller.reconcile.config import ControllerConfig, SourceConfig
from controller.reconcile.handle import Mode
from controller.reconcile.shared import Shared
from controller.reconcile.storethread import StoreThread
from controller.secrets import Secret
from controller.source.tree import SourceTree
from controller.store import NodeStatus, RunStatus, StateStore, Trigger, database
from controller.store.redact import MASK, redact

ITEMS = 2000
NODE = "edge-fw"


def big_plan() -> planitems.Plan:
    items = tuple(
        planitems.PlanItem(
            NODE,
            "FirewallRule",
            f"rule-{i:04d}",
            Action.UPDATE,
            (
                Change("description", f"old {i}", f"new {i}"),
                Change("password", None, Secret(f"hunter{i}")),
                Change(
                    "options",
                    {"ports": [str(p) for p in range(60)], "apiKey": f"old-key-{i}"},
                    {"ports": [str(p) for p in range(61)], "apiKey": f"new-key-{i}"},
                ),
            ),
        )
        for i in range(ITEMS)
    )
    node = planitems.NodePlan(NODE, "opnsense", items, seconds=0.5)
    return planitems.Plan("mem", "c0ffee", (node,))


async def test_a_big_plan_is_recorded_and_published_without_stalling_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = big_plan()

    async def build(state: DesiredState, **_: Any) -> planitems.Plan:
        return plan  # the live reads are not what this test is about

    monkeypatch.setattr(planning, "build", build)
    # The heavy steps, wrapped to note the thread each ran in.
    ran: dict[str, set[int]] = {"to_dict": set(), "redact": set(), "kept_and_shown": set()}

    def noting(name: str, fn: Any) -> Any:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            ran[name].add(threading.get_ident())
            return fn(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(plan_json, "to_dict", noting("to_dict", plan_json.to_dict))
    monkeypatch.setattr(database, "redact", noting("redact", database.redact))
    monkeypatch.setattr(passes, "_kept_and_shown", noting("kept_and_shown", passes._kept_and_shown))
    source = SourceConfig("infra", str(tmp_path), mode=Mode.DETECT)
    config = ControllerConfig(sources=(source,), state=tmp_path / "state.db")
    bus = EventBus()
    state = DesiredState(SourceTree("mem", "c0ffee", {}, {}), {}, [])
    writer = StoreThread(source.name)
    with StateStore(tmp_path / "state.db") as store:
        shared = Shared(config, bus, store)
        approvals = Approvals(shared, lambda *_: None)
        async with bus.subscribe() as queue:
            loop_thread = threading.get_ident()
            outcome = await passes.run_pass(
                shared,
                approvals,
                source,
                state,
                Trigger.API,
                shared.publisher(source=source.name),
                writer=writer,
            )
            events: list[Event] = []
            while not queue.empty():
                events.append(queue.get_nowait())
        writer.close()
        run = store.get_run(outcome.plan_run)

    assert all(ran.values()), ran  # each step was taken, and noted
    on_loop = [name for name, threads in ran.items() if loop_thread in threads]
    assert on_loop == [], f"done on the event loop's thread: {on_loop}"

    assert outcome.problems == ()
    assert outcome.drifted == (NODE,)
    assert run is not None
    assert run.status is RunStatus.SUCCEEDED
    assert [(n.node, n.status) for n in run.nodes] == [(NODE, NodeStatus.SKIPPED)]
    assert run.plan is not None and len(run.plan["changes"]) == ITEMS
    recorded = run.plan["changes"][7]["changes"]
    assert recorded[1] == {"field": "password", "live": None, "desired": MASK}
    assert recorded[2]["desired"]["apiKey"] == MASK

    types = [e.type for e in events]
    assert types == [EventType.RUN_STARTED, EventType.DRIFT_DETECTED, EventType.RUN_FINISHED]
    drift = events[1].data
    assert (drift["node"], drift["run_id"], drift["changes"]) == (NODE, run.id, ITEMS)
    assert len(drift["items"]) == ITEMS
    shown = drift["items"][ITEMS - 1]
    assert shown["name"] == f"rule-{ITEMS - 1:04d}"
    assert shown["changes"][0] == {"field": "description", "live": f"old {ITEMS - 1}",
                                   "desired": f"new {ITEMS - 1}"}  # fmt: skip
    assert shown["changes"][1]["desired"] == MASK
    assert shown["changes"][2]["live"] == {"ports": [str(p) for p in range(60)], "apiKey": MASK}
    # The API's drift table keeps the plan's items (the bus and the store redact).
    assert len(shared.drift[(source.name, NODE)].items) == ITEMS


def test_publish_keeps_redacted_values_and_redacts_the_rest() -> None:
    bus = EventBus()
    clean = redact({"token": "t0k3n", "name": "rule"})
    event = bus.publish(
        EventType.DRIFT_DETECTED,
        items=Redacted([clean]),
        password="hunter2",
        extra={"apiKey": "k", "port": 22},
        privateKey=Redacted("already clean, but the key's name says secret"),
        secretRef=Redacted(None),
    )
    assert event.data == {
        "items": [{"token": MASK, "name": "rule"}],
        "password": MASK,
        "extra": {"apiKey": MASK, "port": 22},
        "privateKey": MASK,
        "secretRef": None,
    }


async def test_store_thread_runs_a_cancelled_tasks_cleanup_after_its_call_in_flight() -> None:
    order: list[str] = []
    gate = threading.Event()

    def slow() -> None:
        gate.wait(5)
        order.append("in flight")

    thread = StoreThread("test")
    try:
        in_flight = asyncio.create_task(thread.call(slow))
        await asyncio.sleep(0.05)  # running on the thread, held at the gate
        queued = asyncio.create_task(thread.call(order.append, "queued"))
        await asyncio.sleep(0)  # submitted behind it
        in_flight.cancel()
        queued.cancel()
        cleanup = asyncio.create_task(thread.last(order.append, "cleanup"))
        await asyncio.sleep(0)
        gate.set()
        await cleanup
        for task in (in_flight, queued):
            with pytest.raises(asyncio.CancelledError):
                await task
    finally:
        gate.set()
        thread.close()
    # The write in flight completed; the one not started never ran; the cleanup came last.
    assert order == ["in flight", "cleanup"]
