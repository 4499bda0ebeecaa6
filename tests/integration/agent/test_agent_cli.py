"""`fazai agent` end to end, as a user runs it: the models from fazai.yaml (here the
scripted model server), tokens, actions and observations streamed, the tool shown before
its first apply, the outcome stated, the episode in the audit trail; run again on the
resolved goal, it finds the goal met and calls no model."""

from __future__ import annotations

import json
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


def fazai(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from controller.cli import run; run()", *args],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, cwd=cwd,
    )  # fmt: skip


def test_fazai_agent_resolves_streams_and_records(fleet: Fleet, tmp_path: Path) -> None:
    fleet.nodes["web-1"].run(f"mkdir -p /etc/fazai-agent && printf 'mode=old\\n' > {CONF}")
    check = {"name": "mode-new", "command": ["grep", "-qx", "mode=new", CONF],
             "expect": {"exitCode": 0}}  # fmt: skip
    goal = resource("Goal", "app-mode-new", {"node": "web-1"},
                    description="the app runs in the new mode", checks=[check])  # fmt: skip
    state = write_state(tmp_path / "state", [node_doc(fleet, "web-1"), goal])
    db = tmp_path / "state.db"
    with serving(DATA / "synthesize.yaml") as server:
        config: dict[str, Any] = {
            "apiVersion": "fazai.dev/v1alpha1",
            "kind": "ControllerConfig",
            "sources": [{"name": "site", "url": str(state)}],
            "models": models_section(server.url, roles=("brain", "executor", "embedder")),
        }
        (tmp_path / "fazai.yaml").write_text(yaml.safe_dump(config))
        args = ("agent", "app-mode-new", str(state), "--node", "web-1", "--state", str(db),
                "--config", str(tmp_path / "fazai.yaml"), "--approve-tools")  # fmt: skip
        done = fazai(*args, "--output", "json", cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert server.calls == 4
    (episode,) = json.loads(done.stdout)
    assert (episode["outcome"], episode["path"], episode["calls"]) == ("resolved", "synthesized", 4)
    assert episode["tool"]["params"] == {"mode": "new"}
    said = done.stderr
    assert "action 3:" in said and '"toolspec"' in said  # streamed as it went
    assert "The agent wants to try this tool on the node" in said
    assert "approved by --approve-tools" in said
    assert "web-1: Goal/app-mode-new resolved (synthesized; 4 model calls" in said
    assert "✓ applying it a second time changed nothing (of what its snapshot lists)" in said

    trail = fazai("audit", "--state", str(db), "--output", "json", cwd=tmp_path)
    assert trail.returncode == 0, trail.stderr
    records = [json.loads(line) for line in trail.stdout.splitlines() if line.strip()]
    recorded = [r for r in records if r.get("action") == "agent.episode"]
    assert len(recorded) == 1
    assert recorded[0]["payload"]["transcriptSha256"] == episode["transcriptSha256"]

    # Resolved is resolved: the goal's checks pass, no model is asked (none would answer).
    again = fazai(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resolved (bound; 0 model calls" in again.stderr
    assert "the goal's checks pass" in again.stderr
