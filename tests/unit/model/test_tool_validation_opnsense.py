"""OPNsense Tool documents through the loader to diagnostics naming file:line and the
field: calls a tool may never make (firmware, the configuration history every rollback
restores from, a reboot), the Linux-only fields, a check without its expectation, a
placeholder no param declares, and the bound resolution a valid firewall goal carries
(params placed in the bodies, whole placeholders keeping their type)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import controller.policy  # noqa: F401  (registers the Policy kind, as the CLI does)
from controller import providers
from controller.errors import InvalidInputError
from controller.model import loader
from controller.model.state import DesiredState
from controller.model.tool import ApiCall, resolution_of
from controller.source.open import open_source

providers.load_all()

NODE = """apiVersion: fazai.dev/v1alpha1
kind: Node
metadata: {name: edge-fw}
spec:
  platform: opnsense
  url: https://fw.example.net
  apiKeyRef: {env: FW_KEY}
  apiSecretRef: {env: FW_SECRET}
"""

TOOL = """apiVersion: fazai.dev/v1alpha1
kind: Tool
metadata: {name: unbound-port}
spec:
  platform: opnsense
  description: Unbound listens on the given port, live
  params:
    type: object
    required: [port]
    properties:
      port: {type: integer, minimum: 1, maximum: 65535}
  check:
    get: unbound/settings/get
    expect: {path: unbound.general.port, equals: "${port}"}
  apply:
    calls:
      - post: unbound/settings/set
        body: {unbound: {general: {port: "${port}", note: "port ${port}"}}}
      - post: unbound/service/reconfigure
  rollback:
    calls:
      - post: unbound/service/reconfigure
"""

GOAL = """apiVersion: fazai.dev/v1alpha1
kind: Goal
metadata: {name: dns-port}
spec:
  target: {node: edge-fw}
  description: Unbound on 5353
  checks:
    - name: port
      get: unbound/settings/get
      expect: {path: unbound.general.port, equals: "5353"}
  resolvedBy:
    tool: unbound-port
    params: {port: 5353}
"""


def _load(root: Path, tool: str, goal: str = GOAL) -> DesiredState:
    (root / "node.yaml").write_text(NODE)
    (root / "tool.yaml").write_text(tool)
    (root / "goal.yaml").write_text(goal)
    return loader.load(open_source(str(root)))


def _problems(root: Path, tool: str, goal: str = GOAL) -> list[str]:
    with pytest.raises(InvalidInputError) as caught:
        _load(root, tool, goal)
    return [str(d) for d in caught.value.diagnostics if d.is_error]


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_a_valid_firewall_goal_carries_its_calls_with_params_in_place(tmp_path: Path) -> None:
    state = _load(tmp_path, TOOL)
    goal = next(d for d in state.resources if d.kind == "Goal")
    resolution = resolution_of(goal.spec)
    assert resolution is not None and resolution.platform == "opnsense"
    assert resolution.apply.calls == (
        # a whole "${port}" keeps the integer; inside text it is text
        ApiCall("unbound/settings/set", {"unbound": {"general": {"port": 5353,
                                                                 "note": "port 5353"}}}),
        ApiCall("unbound/service/reconfigure", {}),
    )  # fmt: skip
    assert resolution.rollback is not None
    assert resolution.rollback.calls == (ApiCall("unbound/service/reconfigure", {}),)
    check = resolution.check_api
    assert check is not None
    assert (check.path, check.at, check.equals) == ("unbound/settings/get",
                                                    "unbound.general.port", 5353)  # fmt: skip
    assert resolution.check_command is None and resolution.apply.script is None


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("core/firmware/upgrade", "core/ is not among the modules a tool may call"),
        ("firewall/filter/addRule", "firewall/ is not among the modules a tool may call"),
        ("firewall/alias/reconfigure", "firewall/ is not among the modules"),
        ("interfaces/vlan_settings/set", "interfaces/ is not among the modules"),
        ("core/backup/revertBackup/config-1.xml", "core/ is not among the modules"),
        ("core/service/stop/webgui", "core/ is not among the modules"),
        ("auth/user/del/1", "auth/ is not among the modules"),
        ("routes/routes/delroute/1", "routes/ is not among the modules"),
        ("diagnostics/firewall/kill_states", "diagnostics/ is not among the modules"),
        ("cron/settings/addJob", "cron/ is not among the modules"),
        ("wireguard/service/reconfigure", "wireguard/ is not among the modules"),
        ("core/System/Halt", "core/ is not among the modules"),
        ("unbound/service/stop", "a tool may not stop (a rollback would not undo it)"),
        ("unbound/service/reboot", "a tool may not reboot"),
    ],
)
def test_a_call_a_tool_may_never_make_is_pinned_to_its_post(
    tmp_path: Path, path: str, words: str
) -> None:
    tool = TOOL.replace("      - post: unbound/service/reconfigure\n  rollback",
                        f"      - post: {path}\n  rollback")  # fmt: skip
    assert path in tool
    lines = _problems(tmp_path, tool)
    line = _line_of(tool, f"post: {path}")
    assert any(
        re.match(rf"tool\.yaml:{line}:\d+: Tool/unbound-port: spec\.apply\.calls\.1\.post: ", text)
        and words in text
        for text in lines
    ), lines


def test_a_refused_call_in_the_rollback_is_refused_too(tmp_path: Path) -> None:
    old = "  rollback:\n    calls:\n      - post: unbound/service/reconfigure"
    tool = TOOL.replace(old, old.replace("unbound/service/reconfigure", "core/firmware/poweroff"))
    lines = _problems(tmp_path, tool)
    line = _line_of(tool, "post: core/firmware/poweroff")
    assert any(
        text.startswith(f"tool.yaml:{line}:") and "spec.rollback.calls.0.post" in text
        for text in lines
    ), lines


@pytest.mark.parametrize(
    ("old", "new", "needle", "field", "words"),
    [
        # a script on an opnsense tool: its steps are API calls, never shell
        ("  apply:\n    calls:", "  apply:\n    script: sv restart unbound\n    calls:",
         "script: sv restart", "spec.apply.script", "'script' is for linux tools"),
        ("  check:\n    get:", "  check:\n    command: [ss, -lnt]\n    get:",
         "command: [ss, -lnt]", "spec.check.command", "'command' is for linux tools"),
        ("    expect: {path: unbound.general.port, equals: \"${port}\"}\n", "",
         "  check:", "spec.check", "needs 'get' and 'expect'"),
        ("  apply:\n", "  snapshot: {paths: [/conf/config.xml]}\n  apply:\n",
         "snapshot:", "spec.snapshot", "configuration backup"),
        ("general: {port: \"${port}\"", "general: {port: \"${prot}\"",
         "  apply:", "spec.apply", "${prot} names no param"),
    ],
)  # fmt: skip
def test_linux_fields_and_a_broken_check_on_an_opnsense_tool(
    tmp_path: Path, old: str, new: str, needle: str, field: str, words: str
) -> None:
    assert old in TOOL
    tool = TOOL.replace(old, new)
    lines = _problems(tmp_path, tool)
    line = _line_of(tool, needle)
    assert any(
        text.startswith(f"tool.yaml:{line}:") and f"Tool/unbound-port: {field}" in text
        and words in text
        for text in lines
    ), lines  # fmt: skip


def test_an_opnsense_tool_cannot_resolve_a_linux_goal(tmp_path: Path) -> None:
    linux = NODE.replace("edge-fw", "web-1").replace("platform: opnsense", "platform: linux")
    goal = GOAL.replace("edge-fw", "web-1").replace(
        "      get: unbound/settings/get\n      expect: {path: unbound.general.port, "
        'equals: "5353"}',
        "      command: [ss, -lntu]\n      expect: {exitCode: 0}",
    )
    (tmp_path / "linux.yaml").write_text(linux)
    lines = _problems(tmp_path, TOOL, goal)
    line = _line_of(goal, "tool: unbound-port")
    assert any(
        text.startswith(f"goal.yaml:{line}:")
        and "Tool/unbound-port is for opnsense nodes, this goal for linux" in text
        for text in lines
    ), lines
