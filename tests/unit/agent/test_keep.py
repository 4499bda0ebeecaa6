"""What becomes of a verified tool: kept in the state store for the goal it was verified
for, and not at all when its params hold a secret (desired state names secrets by
reference, never by value: it is neither stored nor committed back)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from controller.agent.episode import Episode, Outcome, VerifiedTool
from controller.agent.episode import Path as Via
from controller.agent.run import _keep
from controller.model.document import Document
from controller.model.goal import digest
from controller.store import Command, StateStore, Trigger

GOAL = Document("Goal", "g", {"description": "d", "checks": [{"name": "c"}]})
SPEC = {"platform": "linux", "description": "t"}


def _episode(params: dict[str, str]) -> Episode:
    tool = VerifiedTool("t", SPEC, params, ("verified",))
    return Episode("g", "n", Outcome.RESOLVED, Via.SYNTHESIZED, "ok", tool=tool)


def test_a_verified_tool_is_kept_for_the_goal_it_was_verified_for(tmp_path: Path) -> None:
    with StateStore(tmp_path / "s.db") as store:
        run = store.start_run(Trigger.CLI, Command.APPLY, "here", None)
        kept = asyncio.run(_keep(_episode({"mode": "new"}), GOAL, store, run, None, ()))
        (record,) = store.verified_tools("g", "n")
    assert kept.committed is None
    assert record.spec["provenance"]["goalSha256"] == digest(GOAL.spec)
    assert dict(record.params) == {"mode": "new"}


def test_a_tool_whose_params_hold_a_secret_is_neither_kept_nor_committed(tmp_path: Path) -> None:
    with StateStore(tmp_path / "s.db") as store:
        run = store.start_run(Trigger.CLI, Command.APPLY, "here", None)
        kept = asyncio.run(_keep(_episode({"db_pass": "hunter2"}), GOAL, store, run, None, ()))
        assert store.verified_tools("g", "n") == []
    assert kept.committed is not None
    assert kept.committed.startswith("not kept nor committed back: param 'db_pass' holds a secret")
