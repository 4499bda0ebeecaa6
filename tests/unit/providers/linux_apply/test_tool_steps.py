"""A goal's tool as steps of a Linux transaction: the script runs in its own sh with the
params in its environment (run here by a real sh: a value full of shell syntax arrives
as the same bytes), the snapshot keeps what the tool lists (files as secrets, for the
escrow) and its rollback script first, so that a rollback runs it last."""

from __future__ import annotations

import subprocess
from typing import Any

from controller.model.tool import BOUND
from controller.providers.linux import operations
from controller.providers.linux import snapshot as snapshots
from controller.providers.linux.apply import _kept
from controller.providers.linux.operations import Target

TOOL: dict[str, Any] = {
    "platform": "linux",
    "description": "write a value",
    "params": {"type": "object", "properties": {"value": {"type": "string"}}},
    "check": {"command": ["test", "-e", "/etc/x"]},
    "apply": {"script": 'printf %s "$FAZAI_PARAM_value"', "timeout": 120},
    "rollback": {"script": "systemctl reload x"},
    "snapshot": {"paths": ["/etc/x", "/etc/motd"], "services": ["x"]},
}
HOSTILE = "a'b\"c $(id) `id` ; rm -rf / \n\\ %s"


def _goal(value: str) -> Target:
    spec = {"resolvedBy": {"tool": "t", "params": {"value": value},
                           BOUND: {"name": "t", "spec": TOOL}}}  # fmt: skip
    return Target("Goal", "g", "goal t", "update", spec)


def test_the_script_sees_each_param_as_the_same_bytes() -> None:
    (step,) = operations.forward_steps([_goal(HOSTILE)], {}, tag=operations.new_tag())
    assert (step.kind, step.action, step.timeout) == ("Goal", "update", 120)
    assert step.keys == ("Tool/t", "/etc/x", "/etc/motd")
    assert HOSTILE not in step.script  # the value travels on stdin, not in the journaled text
    ran = subprocess.run(
        ["sh", "-c", step.script], input=step.stdin.encode(), capture_output=True, timeout=10
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.decode() == HOSTILE


def test_the_tool_runs_after_the_other_kinds() -> None:
    motd = Target("File", "motd", "/etc/motd", "create", {"state": "present"}, b"hi\n")
    facts = {"files": {"/etc/motd": {"exists": False, "parents": []}}}
    steps = operations.forward_steps([_goal("v"), motd], facts, tag=operations.new_tag())
    assert [s.kind for s in steps] == ["File", "Goal"]


def test_snapshot_keeps_the_listed_objects_and_the_rollback_script_first() -> None:
    goal = _goal("v")
    motd = Target("File", "motd", "/etc/motd", "update", {"state": "present"}, b"hi\n")
    kept = _kept([goal, motd])
    # /etc/motd is the File document's already: once.
    assert [(t.kind, t.key, t.sensitive) for t in kept] == [
        ("File", "/etc/x", True),
        ("Service", "x", False),
    ]
    answer = {
        "files": {
            "/etc/x": {
                "exists": True,
                "type": "file",
                "content": "c2VjcmV0",
                "mode": "0600",
                "uid": 0,
                "gid": 0,
            },
            "/etc/motd": {
                "exists": True,
                "type": "file",
                "content": "aGk=",
                "mode": "0644",
                "uid": 0,
                "gid": 0,
            },
        },
        "services": {"x": {"exists": True, "enabled": True, "running": True}},
    }
    taken = snapshots.build("n", [goal, motd, *kept], answer, tag=operations.new_tag())
    objects = taken["objects"]
    assert objects[0]["kind"] == "Goal"
    assert objects[0]["before"]["rollback"] == "systemctl reload x"
    assert objects[0]["before"]["environment"] == [["FAZAI_PARAM_value", "v"]]
    x = next(o for o in objects if o["key"] == "/etc/x")
    assert "content" not in x["before"] and x["before"]["secretContent"] == "c2VjcmV0"

    current = {**answer, "files": {**answer["files"], "/etc/x": {"exists": False}}}
    plan = operations.rollback_steps(snapshots.objects_of(taken), current)
    # Restored in reverse: the file first, the tool's rollback script last.
    assert [s.kind for s in plan.steps][-1] == "Goal"
    assert plan.steps[-1].script.endswith("sh -c 'systemctl reload x' fazai-tool </dev/null")
    assert any(s.kind == "File" and "/etc/x" in s.keys for s in plan.steps)


def test_a_secret_named_param_makes_the_step_sensitive() -> None:
    spec = {
        "resolvedBy": {
            "tool": "t",
            "params": {"db_password": "hunter2-value"},
            BOUND: {"name": "t", "spec": {**TOOL, "params": {"type": "object"}}},
        }
    }
    (step,) = operations.forward_steps([Target("Goal", "g", "goal t", "update", spec)], {},
                                       tag=operations.new_tag())  # fmt: skip
    assert step.sensitive
    payload = step.payload()
    assert payload["stdin"] == "***" and "hunter2" not in str(payload)
    record = operations.tool_record(Target("Goal", "g", "goal t", "update", spec))
    assert record is not None
    assert record["before"]["secretEnvironment"] == {"FAZAI_PARAM_db_password": "hunter2-value"}
    assert all("hunter2" not in str(pair) for pair in record["before"]["environment"])


def test_a_secret_param_the_tool_prints_is_masked_in_what_is_journaled() -> None:
    from controller.providers.linux import batch

    spec = {
        "resolvedBy": {
            "tool": "t",
            "params": {"api_token": "Zq9-secret-value"},
            BOUND: {"name": "t", "spec": {**TOOL, "params": {"type": "object"}}},
        }
    }
    (step,) = operations.forward_steps(
        [Target("Goal", "g", "goal t", "update", spec)], {}, tag=operations.new_tag()
    )
    said = batch.mask("login failed for token Zq9-secret-value", step)
    assert "Zq9-secret-value" not in said
    assert "Zq9-secret-value" not in repr(step)
