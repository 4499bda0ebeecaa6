"""After an automatic apply a converged node is in sync but for what no apply writes:
its unresolved items (a failing Goal) stay in the drift table, for the API, the reports
and the agent, instead of being wiped with the differences the apply fixed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from controller.engine.apply import ApplyResult, NodeOutcome
from controller.events import EventBus
from controller.plan.diff import Action, Change
from controller.plan.items import PlanItem
from controller.reconcile import passes
from controller.reconcile.config import ControllerConfig, SourceConfig
from controller.reconcile.handle import Mode, NodeDrift
from controller.reconcile.shared import Shared
from controller.store import NodeStatus, StateStore

GOAL = PlanItem(
    "web-1",
    "Goal",
    "up",
    Action.UNRESOLVED,
    (Change("up", "fail: exit 3", "pass"),),
    reason="checks failing: up (exit 3)",
)
FILE = PlanItem("web-1", "File", "motd", Action.CREATE, (Change("content", None, "x"),))


def test_a_converged_node_keeps_only_what_its_apply_found_unresolved(tmp_path: Path) -> None:
    source = SourceConfig("infra", str(tmp_path), mode=Mode.AUTO)
    config = ControllerConfig(sources=(source,), state=tmp_path / "state.db")
    with StateStore(tmp_path / "state.db") as store:
        shared = Shared(config, EventBus(), store)
        then = datetime(2026, 1, 1, tzinfo=UTC)
        for node in ("web-1", "web-2"):
            shared.drift[("infra", node)] = NodeDrift(
                node, "infra", Mode.AUTO, then, "c0ffee", (GOAL, FILE), labels={"role": "web"}
            )
        # web-1's apply still found the goal unresolved; web-2's apply met it (the File
        # it wrote is what the goal checks).
        result = ApplyResult(
            7,
            (
                NodeOutcome("web-1", NodeStatus.CONVERGED, changes=1, unresolved=("Goal/up",)),
                NodeOutcome("web-2", NodeStatus.CONVERGED, changes=1),
            ),
        )
        planned = {"web-1": (GOAL,), "web-2": (GOAL,)}
        passes.record_applied(shared, "infra", source.mode_for, result, planned)
        kept = shared.drift[("infra", "web-1")]
        assert kept.items == (GOAL,) and kept.labels == {"role": "web"}
        assert kept.checked > then and kept.error is None
        assert shared.drift[("infra", "web-2")].items == ()
