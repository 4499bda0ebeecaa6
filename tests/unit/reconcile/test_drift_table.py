"""The drift table keeps a pass's plan items typed, secrets masked, up to the edges that
render them: the drift event, the API's drift view and the report make their JSON or
their values from those items, and no secret reaches any of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller.engine import plan as planning
from controller.events import Event, EventBus, EventType
from controller.model.state import DesiredState
from controller.plan import plan_json
from controller.plan.diff import Action, Change
from controller.plan.items import NodePlan, Plan, PlanItem
from controller.plan.masked import masked
from controller.reconcile import passes
from controller.reconcile.approvals import Approvals
from controller.reconcile.config import ControllerConfig, SourceConfig
from controller.reconcile.handle import Mode
from controller.reconcile.shared import Shared
from controller.reconcile.storethread import StoreThread
from controller.reports import build
from controller.secrets import Secret
from controller.server import views
from controller.source.tree import SourceTree
from controller.store import StateStore, Trigger
from controller.store.redact import MASK, redact
from controller.store.sealed import Sealed

NODE = "web-1"
SECRETS = ("hunter2", "old-key", "new-key", "s3cr3t")


def plan() -> Plan:
    items = (
        PlanItem(
            NODE,
            "User",
            "deploy",
            Action.UPDATE,
            (
                Change("password", None, Secret("hunter2")),
                Change("env", {"apiKey": "old-key", "port": 1}, {"apiKey": "new-key", "port": 2}),
                Change("keys", [{"token": "s3cr3t"}], []),
            ),
        ),
        PlanItem(NODE, "File", "motd", Action.NOOP),
        PlanItem(NODE, "Package", "nginx", Action.CREATE, (Change("installed", None, True),)),
        PlanItem(NODE, "File", "stray", Action.UNMANAGED),
    )
    return Plan("mem", "c0ffee", (NodePlan(NODE, "linux", items, seconds=0.1),))


def test_masking_a_typed_item_is_what_redacting_its_json_gives() -> None:
    for item in plan().nodes[0].items:
        assert plan_json.item_dict(masked(item)) == redact(plan_json.item_dict(item))
    sealed = Sealed("key-id", "Y2lwaGVy")
    item = PlanItem(NODE, "File", "f", Action.UPDATE, (Change("content", None, sealed),))
    assert masked(item).changes[0].desired == sealed.to_json()


async def test_a_pass_keeps_typed_masked_items_and_every_edge_renders_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    planned = plan()

    async def fake_build(state: DesiredState, **_: Any) -> Plan:
        return planned  # the live reads are not what this test is about

    monkeypatch.setattr(planning, "build", fake_build)
    source = SourceConfig("infra", str(tmp_path), mode=Mode.DETECT)
    config = ControllerConfig(sources=(source,), state=tmp_path / "state.db")
    bus = EventBus()
    state = DesiredState(SourceTree("mem", "c0ffee", {}, {}), {}, [])
    writer = StoreThread(source.name)
    with StateStore(tmp_path / "state.db") as store:
        shared = Shared(config, bus, store)
        async with bus.subscribe() as queue:
            await passes.run_pass(
                shared,
                Approvals(shared, lambda *_: None),
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

    entry = shared.drift[(source.name, NODE)]
    # Typed, noop left out, secrets masked in the table itself.
    assert all(isinstance(i, PlanItem) for i in entry.items)
    assert [(i.kind, i.action) for i in entry.items] == [
        ("User", Action.UPDATE),
        ("Package", Action.CREATE),
        ("File", Action.UNMANAGED),
    ]
    assert entry.drifted == 3
    user = entry.items[0]
    assert [c.desired for c in user.changes[:2]] == [MASK, {"apiKey": MASK, "port": 2}]
    assert user.changes[2].live == [{"token": MASK}]

    (drift,) = [e for e in events if e.type is EventType.DRIFT_DETECTED]
    assert drift.data["items"] == [plan_json.item_dict(i) for i in entry.items]

    api = views.drift(entry)
    assert api["items"] == drift.data["items"] and api["drifted"] == 3

    report = build.from_drift([entry], [], title="t", generated=entry.checked, window_days=1)
    assert [(r.kind, r.action) for r in report.resources] == [
        ("Package", "create"),
        ("User", "update"),
    ]

    for shown in (repr(entry), repr(events), repr(api), repr(report)):
        for secret in SECRETS:
            assert secret not in shown
