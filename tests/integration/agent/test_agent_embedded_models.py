"""The agent with the embedded models (real, small: SmolLM2 135M as the brain, through
the worker and llama.cpp, under a grammar made from the actions' schema) on a real node.
They cannot solve a goal; what must hold anyway: every finished answer is one valid
action, the loop ends within its budget, nothing they propose reaches the node unless
it passed the policy stage and verification, and the goal ends unresolved with a
reason."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from controller.agent import actions
from controller.agent.episode import Outcome
from controller.agent.run import find_goal, resolve
from controller.events import EventType
from controller.llm.runtime import ModelRuntime
from controller.llm.settings import ModelsSettings, WorkerSettings
from controller.pipeline import context
from controller.pipeline import source as pipeline_source
from controller.source.open import open_source
from controller.store import StateStore
from controller.testing.fleet import Fleet
from tests.integration.statekit import node_doc, resource, write_state

CONF = "/etc/fazai-agent/app.conf"


def test_tiny_models_stay_inside_every_bound(
    fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    node = fleet.nodes["web-1"]
    node.run(f"mkdir -p /etc/fazai-agent && printf 'mode=old\\n' > {CONF}")
    before = node.run(f"cat {CONF}").stdout
    check = {"name": "mode-new", "command": ["grep", "-qx", "mode=new", CONF],
             "expect": {"exitCode": 0}}  # fmt: skip
    goal = resource(
        "Goal", "app-mode-new", {"node": "web-1"}, description="the app runs in the new mode",
        checks=[check], budget={"iterations": 4, "seconds": 240},
    )  # fmt: skip
    state = pipeline_source.load(
        open_source(str(write_state(tmp_path / "state", [node_doc(fleet, "web-1"), goal])))
    )
    shown: list[str] = []
    approvals: list[str] = []

    def publish(type: EventType, **data: Any) -> None:
        if type is EventType.AGENT_ACTION:
            shown.append(data["action"])

    async def approve(name: str, spec: Any, params: Any) -> bool:
        approvals.append(name)
        return False  # a person says no: nothing the model made may run

    async def go() -> Any:
        runtime = ModelRuntime(ModelsSettings(worker=WorkerSettings(socket=tmp_path / "m.sock")))
        try:
            found, _ = find_goal(state, "app-mode-new", "web-1")
            with StateStore(tmp_path / "state.db") as store:
                return await resolve(
                    state, found, state.nodes["web-1"], store, runtime, context.cli("apply"),
                    approve=approve, publish=publish, turn_tokens=96,
                )  # fmt: skip
        finally:
            await runtime.close()

    episode = asyncio.run(go())
    assert episode.outcome is Outcome.UNRESOLVED
    assert episode.reason  # it says why
    assert "mode-new" in episode.reason or "iterations" in episode.reason
    assert len(episode.turns) <= 4 and episode.calls <= 4
    # Whatever reached the loop as an action was one valid action of the schema.
    for text in shown:
        assert actions.name_of(actions.parse(text)) == json.loads(text)["action"]
    for turn in episode.turns:
        assert turn.observation  # every turn says what came of it
    assert node.run(f"cat {CONF}").stdout == before
