"""`fazai plan --agent`: the agent works on each unresolved goal proposing only; its
read-only probes run, nothing is applied or recorded, and the plan shows what it would
try as the item's command, with the approval the shipped policy holds it for."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from controller.testing.fleet import Fleet
from controller.testing.scripted_model import models_section, serving
from tests.integration.statekit import node_doc, resource, write_state

DATA = Path(__file__).parents[2] / "data" / "agent"
CONF = "/etc/fazai-agent/app.conf"


def test_plan_agent_shows_the_proposal_and_applies_nothing(fleet: Fleet, tmp_path: Path) -> None:
    node = fleet.nodes["web-1"]
    node.run(f"mkdir -p /etc/fazai-agent && printf 'mode=old\\n' > {CONF}")
    check = {"name": "mode-new", "command": ["grep", "-qx", "mode=new", CONF],
             "expect": {"exitCode": 0}}  # fmt: skip
    goal = resource("Goal", "app-mode-new", {"node": "web-1"},
                    description="the app runs in the new mode", checks=[check])  # fmt: skip
    state = write_state(tmp_path / "state", [node_doc(fleet, "web-1"), goal])
    with serving(DATA / "synthesize.yaml") as server:
        config: dict[str, Any] = {
            "apiVersion": "fazai.dev/v1alpha1",
            "kind": "ControllerConfig",
            "sources": [{"name": "site", "url": str(state)}],
            "models": models_section(server.url, roles=("brain", "executor", "embedder")),
        }
        (tmp_path / "fazai.yaml").write_text(yaml.safe_dump(config))
        done = subprocess.run(
            [sys.executable, "-c", "from controller.cli import run; run()", "plan", str(state),
             "--agent", "--config", str(tmp_path / "fazai.yaml")],
            capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
            cwd=tmp_path,
        )  # fmt: skip
        assert server.calls == 4
    assert done.returncode == 1, done.stdout + done.stderr
    assert 'the agent proposes: usetool app-mode {"mode":"new"}' in done.stdout
    assert "fazai-agent-proposals" in done.stdout  # held for an approval
    assert "web-1: Goal/app-mode-new proposed (synthesized; 4 model calls" in done.stderr
    assert node.run(f"cat {CONF}").stdout == b"mode=old\n"
