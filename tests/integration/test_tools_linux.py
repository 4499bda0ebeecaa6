"""A Goal resolved by a Tool on real OpenSSH nodes, with no model anywhere: the plan
holds an update through the tool when the goal is unmet and the tool's check says "not
converged"; the apply runs the tool in the node's transaction and verifies the goal;
the next plan is in sync. A tool that does not meet the goal, or fails, is rolled back
byte for byte (and its own rollback script runs); a tool whose check says converged
while the goal fails leaves the goal unresolved with that reason; a param carrying
shell syntax stays a value."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from controller.testing.fleet import Fleet
from tests.integration.statekit import node_doc, resource, write_state

ON = {"node": "web-1"}
CONF = "/etc/fazai-tool/limits.conf"
MARKER = "/tmp/fazai-tool-rolled-back"


def fazai(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from controller.cli import run; run()", *args],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def tool(script: str, check: list[str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "fazai.dev/v1alpha1",
        "kind": "Tool",
        "metadata": {"name": "set-limit"},
        "spec": {
            "platform": "linux",
            "description": "set max= in a limits file",
            "params": {
                "type": "object",
                "required": ["value"],
                "properties": {
                    "value": {"type": "string", "maxLength": 64},
                    "file": {"type": "string", "default": CONF},
                },
            },
            "check": {"command": check or ["grep", "-qx", "max=${value}", "${file}"]},
            "apply": {"script": script},
            "rollback": {"script": f"touch {MARKER}"},
            "snapshot": {"paths": [CONF]},
        },
    }


SETS = 'printf "max=%s\\n" "$FAZAI_PARAM_value" > "$FAZAI_PARAM_file"'


def goal(wanted: str, value: str | None = None) -> dict[str, Any]:
    check = {"name": "limit", "command": ["grep", "-qx", f"max={wanted}", CONF],
             "expect": {"exitCode": 0}}  # fmt: skip
    return resource(
        "Goal", "limit-set", ON, description=f"the limit is {wanted}", checks=[check],
        resolvedBy={"tool": "set-limit", "params": {"value": value or wanted}},
    )  # fmt: skip


def _setup(fleet: Fleet) -> None:
    fleet.nodes["web-1"].run(
        f"rm -f {MARKER}; mkdir -p /etc/fazai-tool && printf 'max=1\\n# keep me\\n' > {CONF}"
        f" && chmod 0640 {CONF}"
    )


def _file(fleet: Fleet) -> str:
    return fleet.nodes["web-1"].run(f"stat -c %a {CONF}; cat {CONF}").stdout.decode()


def _exists(fleet: Fleet, path: str) -> bool:
    return fleet.nodes["web-1"].run(f"test -e {path}", check=False).returncode == 0


def _items(plan: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [i for i in json.loads(plan.stdout)["changes"] if i["kind"] == "Goal"]


def test_an_unmet_goal_is_resolved_by_its_tool_and_then_in_sync(
    fleet: Fleet, tmp_path: Path
) -> None:
    _setup(fleet)
    state = write_state(tmp_path / "state", [node_doc(fleet, "web-1"), tool(SETS), goal("5")])
    db = tmp_path / "state.db"
    planned = fazai("plan", str(state), "--output", "json")
    assert planned.returncode == 1, planned.stdout + planned.stderr
    (item,) = _items(planned)
    assert item["action"] == "update"
    assert "reason" not in item or item["reason"] is None
    text = fazai("plan", str(state)).stdout
    assert "Tool/set-limit" in text and "not converged" in text

    applied = fazai("apply", str(state), "--state", str(db), "--auto-approve")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert _file(fleet) == "640\nmax=5\n"
    assert not _exists(fleet, MARKER)

    again = fazai("plan", str(state), "--output", "json")
    assert again.returncode == 0, again.stdout + again.stderr
    assert _items(again) == []  # in sync: the plan lists no change


def test_a_tool_that_does_not_meet_the_goal_is_rolled_back_byte_for_byte(
    fleet: Fleet, tmp_path: Path
) -> None:
    _setup(fleet)
    before = _file(fleet)
    # The tool writes 7 where the goal wants 5: its check (max=5) says not converged,
    # the apply runs, and the verify finds the goal still unmet.
    state = write_state(
        tmp_path / "state", [node_doc(fleet, "web-1"), tool(SETS), goal("5", value="7")]
    )
    state_yaml = (state / "state.yaml").read_text()
    (state / "state.yaml").write_text(state_yaml.replace("max=${value}", "max=5"))
    applied = fazai("apply", str(state), "--state", str(tmp_path / "s.db"), "--auto-approve")
    assert applied.returncode != 0, applied.stdout + applied.stderr
    assert "rolled back" in applied.stdout + applied.stderr
    assert _file(fleet) == before
    assert _exists(fleet, MARKER)  # the tool's own rollback script ran


def test_a_failing_tool_script_is_rolled_back(fleet: Fleet, tmp_path: Path) -> None:
    _setup(fleet)
    before = _file(fleet)
    half = f'{SETS}; echo "half done" >&2; exit 3'
    state = write_state(tmp_path / "state", [node_doc(fleet, "web-1"), tool(half), goal("5")])
    applied = fazai("apply", str(state), "--state", str(tmp_path / "s.db"), "--auto-approve")
    assert applied.returncode != 0
    out = applied.stdout + applied.stderr
    assert "exit 3" in out and "rolled back" in out
    assert _file(fleet) == before


def test_a_tool_that_says_converged_cannot_help_an_unmet_goal(fleet: Fleet, tmp_path: Path) -> None:
    _setup(fleet)
    state = write_state(
        tmp_path / "state",
        [node_doc(fleet, "web-1"), tool(SETS, check=["test", "-e", CONF]), goal("5")],
    )
    planned = fazai("plan", str(state), "--output", "json")
    assert planned.returncode == 1
    (item,) = _items(planned)
    assert item["action"] == "unresolved"
    assert item["reason"] == (
        "checks failing: limit (exit 1); Tool/set-limit reports it converged, "
        "so applying it cannot help"
    )


def test_a_param_with_shell_syntax_stays_a_value(fleet: Fleet, tmp_path: Path) -> None:
    _setup(fleet)
    value = "$(touch /tmp/fazai-pwned)'; touch /tmp/fazai-pwned; '"
    node = fleet.nodes["web-1"]
    node.run("rm -f /tmp/fazai-pwned")
    state = write_state(tmp_path / "state", [node_doc(fleet, "web-1"), tool(SETS), goal(value)])
    applied = fazai("apply", str(state), "--state", str(tmp_path / "s.db"), "--auto-approve")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert not _exists(fleet, "/tmp/fazai-pwned")
    assert node.run(f"cat {CONF}").stdout.decode() == f"max={value}\n"
