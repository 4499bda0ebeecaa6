"""The engine's live events, published from inside the transaction as it goes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from controller.engine import plan as planning
from controller.events import EventBus, EventType
from controller.store import StateStore
from tests.unit.engine.test_apply_engine import Script, approved, run, setup


def kinds(bus: EventBus) -> list[tuple[str, dict[str, Any]]]:
    return [(e.type.value, dict(e.data)) for e in bus.history()]


def test_a_converged_node_publishes_each_step_then_verified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus = EventBus()
    state = setup(tmp_path, monkeypatch, Script())
    result = run(state, approved("a"), tmp_path / "db", publish=bus.publish)
    run_id = result.run_id
    assert [t for t, _ in kinds(bus)] == [
        "run.started", "change.applied", "node.verified", "run.finished",
    ]  # fmt: skip
    events = dict(kinds(bus))
    assert events["run.started"] == {
        "run_id": run_id, "command": "apply", "revision": None, "trigger": "cli",
    }  # fmt: skip
    assert events["change.applied"] == {
        "run_id": run_id, "node": "a", "kind": "File", "name": "motd", "action": "update",
    }  # fmt: skip
    assert events["node.verified"] == {"run_id": run_id, "node": "a", "changes": 1}
    assert events["run.finished"]["status"] == "succeeded"
    assert events["run.finished"]["command"] == "apply"


def test_a_rolled_back_node_and_a_failed_one_say_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus = EventBus()
    state = setup(tmp_path, monkeypatch, Script(verify_live={"content": "sha256:other"}))
    result = run(state, approved("a"), tmp_path / "db", publish=bus.publish)
    (rolled,) = [d for t, d in kinds(bus) if t == "node.rolled_back"]
    assert (rolled["run_id"], rolled["node"]) == (result.run_id, "a")
    assert "verify found the node still differs" in rolled["reason"]
    assert not [t for t, _ in kinds(bus) if t == "node.verified"]

    failing = EventBus()
    (tmp_path / "b").mkdir()
    broken = setup(
        tmp_path / "b", monkeypatch, Script(verify_live={"content": "x"}, rollback_fails=True)
    )
    run(broken, approved("a"), tmp_path / "b" / "db", publish=failing.publish)
    (failed,) = [d for t, d in kinds(failing) if t == "node.failed"]
    assert "ROLLBACK FAILED" in failed["reason"]
    assert kinds(failing)[-1][1]["status"] == "failed"


def test_plan_publishes_node_read_per_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from controller.engine import apply as applying

    script = Script()
    state = setup(tmp_path, monkeypatch, script)
    monkeypatch.setattr(
        planning.providers, "for_platform", lambda platform: applying._provider(platform)
    )
    bus = EventBus()
    plan = asyncio.run(planning.build(state, publish=bus.publish))
    reads = sorted((d["node"], d["changes"], d["error"]) for t, d in kinds(bus))
    assert reads == [("a", 1, None), ("b", 1, None)]
    assert {e.type for e in bus.history()} == {EventType.NODE_READ}
    assert plan.has_changes
    with StateStore(tmp_path / "db") as store:
        assert store.list_runs() == []  # planning records nothing
