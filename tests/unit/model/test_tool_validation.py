"""Tool documents and a Goal's resolvedBy, through the loader to diagnostics that name
the file, line and field: a bad params schema, a placeholder no param declares, a check
that is not a read-only probe (as written, and with a goal's params in place), params
the tool's schema refuses, a tool of the other platform, and the bound resolution a
valid goal carries to its provider."""

from __future__ import annotations

from pathlib import Path

import pytest

import controller.policy  # noqa: F401  (registers the Policy kind, as the CLI does)
from controller import providers
from controller.errors import InvalidInputError
from controller.model import loader
from controller.model.state import DesiredState
from controller.model.tool import ENV_PREFIX, resolution_of
from controller.source.open import open_source

providers.load_all()

NODE = """apiVersion: fazai.dev/v1alpha1
kind: Node
metadata: {name: web-1}
spec: {platform: linux, address: 10.0.0.1}
"""

TOOL = """apiVersion: fazai.dev/v1alpha1
kind: Tool
metadata: {name: sshd-port}
spec:
  platform: linux
  description: sshd listens on the given port
  params:
    type: object
    required: [port]
    properties:
      port: {type: integer, minimum: 1, maximum: 65535}
      file: {type: string, default: /etc/ssh/sshd_config}
  check:
    command: [grep, -qx, "Port ${port}", "${file}"]
  apply:
    script: |
      sed -i "s/^#*Port .*/Port $FAZAI_PARAM_port/" "$FAZAI_PARAM_file"
  snapshot:
    paths: [/etc/ssh/sshd_config]
    services: [ssh]
"""


def _goal(params: str, tool: str = "sshd-port") -> str:
    return f"""apiVersion: fazai.dev/v1alpha1
kind: Goal
metadata: {{name: ssh-port}}
spec:
  target: {{node: web-1}}
  description: sshd on port 2222
  checks:
    - name: listening
      command: [grep, -qx, "Port 2222", /etc/ssh/sshd_config]
      expect: {{exitCode: 0}}
  resolvedBy:
    tool: {tool}
    params: {params}
"""


def _load(root: Path, tool: str, goal: str) -> DesiredState:
    (root / "node.yaml").write_text(NODE)
    (root / "tool.yaml").write_text(tool)
    (root / "goal.yaml").write_text(goal)
    return loader.load(open_source(str(root)))


def _problems(root: Path, tool: str, goal: str) -> list[str]:
    with pytest.raises(InvalidInputError) as caught:
        _load(root, tool, goal)
    return [str(d) for d in caught.value.diagnostics if d.is_error]


def test_a_valid_goal_carries_its_tool_with_params_and_defaults_in_place(tmp_path: Path) -> None:
    state = _load(tmp_path, TOOL, _goal("{port: 2222}"))
    goal = next(d for d in state.resources if d.kind == "Goal")
    resolution = resolution_of(goal.spec)
    assert resolution is not None
    assert resolution.tool == "sshd-port"
    assert resolution.check_command == ("grep", "-qx", "Port 2222", "/etc/ssh/sshd_config")
    assert resolution.environment() == {
        f"{ENV_PREFIX}port": "2222",
        f"{ENV_PREFIX}file": "/etc/ssh/sshd_config",
    }
    assert resolution.snapshot.paths == ("/etc/ssh/sshd_config",)
    # The script keeps its text: params reach it only through the environment.
    assert resolution.apply.script is not None and "$FAZAI_PARAM_port" in resolution.apply.script
    # Tools steer goals; they target no node.
    assert [d.name for d in state.controls if d.kind == "Tool"] == ["sshd-port"]


def test_params_the_schema_refuses_are_pinned_to_the_goal_field(tmp_path: Path) -> None:
    lines = _problems(tmp_path, TOOL, _goal("{port: 99999}"))
    assert len(lines) == 1
    assert lines[0].startswith("goal.yaml:")
    assert "Goal/ssh-port" in lines[0] and "spec.resolvedBy.params.port" in lines[0]
    assert "at most 65535" in lines[0]


def test_a_missing_required_param(tmp_path: Path) -> None:
    lines = _problems(tmp_path, TOOL, _goal("{}"))
    assert any("'port'" in line and "missing" in line for line in lines), lines


def test_a_param_value_that_turns_the_check_into_a_walk_is_refused(tmp_path: Path) -> None:
    # Each value fills one argv entry (no shell), but an option in a value would still
    # change what the probe does: the argv with the values in place is gated again.
    lines = _problems(tmp_path, TOOL, _goal("{port: 22, file: --recursive}"))
    assert len(lines) == 1, lines
    assert "spec.resolvedBy.params" in lines[0]
    assert "not a read-only probe" in lines[0]


def test_an_unknown_tool_and_a_tool_of_the_other_platform(tmp_path: Path) -> None:
    lines = _problems(tmp_path, TOOL, _goal("{port: 22}", tool="nope"))
    assert any("no Tool named 'nope'; tools: sshd-port" in line for line in lines), lines
    fw_tool = TOOL.replace("platform: linux", "platform: opnsense")
    lines = _problems(tmp_path, fw_tool, _goal("{port: 22}"))
    wrong = "Tool/sshd-port is for opnsense nodes, this goal for linux"
    assert any(wrong in line for line in lines), lines


@pytest.mark.parametrize(
    ("edit", "field", "words"),
    [
        (
            ("  check:\n    command: [grep, -qx", "  check:\n    command: [rm, -rf"),
            "spec.check.command",
            "rm",
        ),
        (("Port ${port}", "Port ${prot}"), "spec.check", "${prot} names no param"),
        (
            ("    type: object\n    required", "    type: array\n    required"),
            "spec.params",
            "type: object",
        ),
        (
            ("      port: {type: integer", "      Port-x: {type: integer"),
            "spec.params.properties.Port-x",
            "lowercase",
        ),
        (
            ("  apply:\n    script: |", "  apply:\n    calls: [{post: a/b/c}]\n    x: |"),
            "spec.apply",
            "",
        ),
        (("  check:\n", "  check:\n    get: core/service/search\n"), "spec.check.get", "opnsense"),
    ],
)
def test_bad_tools_name_the_field(
    tmp_path: Path, edit: tuple[str, str], field: str, words: str
) -> None:
    old, new = edit
    assert old in TOOL
    lines = _problems(tmp_path, TOOL.replace(old, new), _goal("{port: 22}"))
    assert any(
        line.startswith("tool.yaml:") and field in line and words in line for line in lines
    ), lines


def test_the_schema_refuses_a_bound_tool_written_by_hand(tmp_path: Path) -> None:
    # The loader's binding key must not be settable from YAML: a goal could otherwise
    # carry a tool no Tool document declares (and no validation has seen).
    goal = _goal("{port: 22}").replace(
        "    params: {port: 22}", "    params: {port: 22}\n    _tool: {}"
    )
    lines = _problems(tmp_path, TOOL, goal)
    assert any("unknown field '_tool'" in line for line in lines), lines


def test_a_param_name_the_tool_does_not_declare_is_refused(tmp_path: Path) -> None:
    # Names become environment variables of the script: an undeclared one (with shell
    # syntax in it, here) must never reach a node, whatever the params schema allows.
    lines = _problems(tmp_path, TOOL, _goal('{port: 22, "x;touch /tmp/p;y": 1}'))
    assert len(lines) == 1, lines
    assert "spec.resolvedBy.params.x;touch /tmp/p;y" in lines[0]
    assert "declares no param 'x;touch /tmp/p;y'" in lines[0]
