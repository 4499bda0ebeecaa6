"""Goals on real OpenSSH nodes: checks run in the one fact read; a passing goal is in sync,
a failing one plans unresolved with its reason (text and JSON, exit 1), and an apply
writes what it can beside it and leaves the goal unresolved, or, where what it wrote is
what the goal checks, finds the goal met and says so (exit 0)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from controller.testing.fleet import Fleet
from tests.integration.statekit import node_doc, resource, write_state

ON = {"node": "web-1"}


def fazai(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from controller.cli import run; run()", *args],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def goal(name: str, *checks: dict[str, Any]) -> dict[str, Any]:
    return resource("Goal", name, ON, description=f"{name}, as its checks say", checks=list(checks))


ETC = {"name": "etc-there", "command": ["test", "-d", "/etc"], "expect": {"exitCode": 0}}
MISSING = {"name": "marker", "command": ["test", "-e", "/nonexistent"], "expect": {"exitCode": 0}}
REASON = "checks failing: marker (exit 1)"
# Opening a FIFO for reading waits for a writer, and none comes: a read-only check
# that never ends on its own (the probe allow-list has no sleep).
FIFO = "/tmp/fazai-goal.fifo"


def hang(name: str, timeout: int) -> dict[str, Any]:
    return {"name": name, "command": ["cat", FIFO], "timeout": timeout, "expect": {"exitCode": 0}}


def test_a_passing_goal_is_in_sync(fleet: Fleet, tmp_path: Path) -> None:
    passing = goal(
        "base",
        ETC,
        {"name": "os", "command": ["cat", "/etc/os-release"], "expect": {"stdoutMatches": "^ID="}},
        {"name": "id", "command": ["id", "-u"], "expect": {"stdoutMatches": "^0$"}},
    )
    state = write_state(tmp_path / "state", [node_doc(fleet, "web-1"), passing])
    planned = fazai("plan", str(state), "--output", "json")
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert json.loads(planned.stdout)["changes"] == []


def test_a_failing_goal_plans_unresolved_with_its_reason(fleet: Fleet, tmp_path: Path) -> None:
    secret = "fazai-goal-secret-7d1c"
    node = fleet.nodes["web-1"]
    node.run(f"echo 'TOKEN={secret}' > /etc/fazai-goal.env && rm -f {FIFO} && mkfifo {FIFO}")
    try:
        failing = goal(
            "marker-there",
            ETC,
            MISSING,
            # Its output holds a secret: the plan says only that the text is not there.
            {
                "name": "env-ready",
                "command": ["cat", "/etc/fazai-goal.env"],
                "expect": {"stdoutContains": "READY"},
            },
            hang("slow", 1),
        )
        state = write_state(tmp_path / "state", [node_doc(fleet, "web-1"), failing])
        started = time.monotonic()
        text = fazai("plan", str(state))
        took = time.monotonic() - started
        as_json = fazai("plan", str(state), "--output", "json")
    finally:
        node.run(f"rm -f /etc/fazai-goal.env {FIFO}")
    reason = (
        "checks failing: marker (exit 1), env-ready (output lacks the expected text), "
        "slow (timed out after 1s)"
    )
    assert text.returncode == 1, text.stdout + text.stderr
    assert took < 15  # the check that never ends was killed at its 1 s timeout
    assert "Goal/marker-there" in text.stdout and "unresolved" in text.stdout
    assert reason in text.stdout
    assert as_json.returncode == 1, as_json.stderr
    plan = json.loads(as_json.stdout)
    (item,) = plan["changes"]
    assert (item["node"], item["kind"], item["name"], item["action"]) == (
        "web-1",
        "Goal",
        "marker-there",
        "unresolved",
    )
    assert item["reason"] == reason
    assert sorted((c["field"], c["live"], c["desired"]) for c in item["changes"]) == [
        ("env-ready", "fail: output lacks the expected text", "pass"),
        ("marker", "fail: exit 1", "pass"),
        ("slow", "fail: timed out after 1s", "pass"),
    ]
    assert plan["summary"]["exitCode"] == 1
    for out in (text, as_json):
        assert secret not in out.stdout + out.stderr


def test_the_check_budget_bounds_the_fact_read(fleet: Fleet, tmp_path: Path) -> None:
    # A command timeout of 10 s leaves 1 s for checks: the first check is cut at what is
    # left, the others are not run, and the read ends well within the node's timeout.
    slow = [hang(f"slow-{i}", 8) for i in range(3)]
    node = node_doc(fleet, "web-1", commandTimeout=10)
    state = write_state(tmp_path / "state", [node, goal("slow", *slow)])
    fleet.nodes["web-1"].run(f"rm -f {FIFO} && mkfifo {FIFO}")
    started = time.monotonic()
    try:
        planned = fazai("plan", str(state), "--output", "json")
    finally:
        fleet.nodes["web-1"].run(f"rm -f {FIFO}")
    assert time.monotonic() - started < 10
    assert planned.returncode == 1, planned.stdout + planned.stderr
    (item,) = json.loads(planned.stdout)["changes"]
    live = {c["field"]: c["live"] for c in item["changes"]}
    assert live["slow-0"].startswith("fail: timed out after ")
    assert live["slow-0"].endswith("(the node's check time budget ran out)")
    assert (
        live["slow-1"]
        == live["slow-2"]
        == ("fail: not run: the node's check time budget (1s) is spent")
    )


def test_apply_writes_the_file_and_leaves_the_goal_unresolved(fleet: Fleet, tmp_path: Path) -> None:
    node = fleet.nodes["web-1"]
    path = "/etc/fazai-goal-apply.conf"
    docs = [
        node_doc(fleet, "web-1"),
        resource("File", "conf", ON, path=path, content="managed\n", mode="0644"),
        goal("marker-there", ETC, MISSING),
    ]
    state = write_state(tmp_path / "state", docs)
    db = tmp_path / "state.db"
    try:
        applied = fazai("apply", str(state), "--state", str(db), "--auto-approve")
        assert node.run(f"cat {path}").stdout == b"managed\n"
        assert "marker-there" in applied.stdout + applied.stderr
        assert REASON in applied.stdout + applied.stderr
        # An unresolved goal left is a difference the apply could not write.
        assert applied.returncode == 1, applied.stdout + applied.stderr

        after = fazai("plan", str(state), "--output", "json")
        assert after.returncode == 1, after.stderr
        changes = json.loads(after.stdout)["changes"]
        assert [(c["kind"], c["name"], c["action"], c["reason"]) for c in changes] == [
            ("Goal", "marker-there", "unresolved", REASON)
        ]
    finally:
        node.run(f"rm -f {path}")


def test_an_apply_that_meets_the_goal_ends_in_sync(fleet: Fleet, tmp_path: Path) -> None:
    node = fleet.nodes["web-1"]
    path = "/etc/fazai-goal-met.conf"
    written = {"name": "written", "command": ["grep", "-qx", "managed", path]}
    docs = [
        node_doc(fleet, "web-1"),
        resource("File", "conf", ON, path=path, content="managed\n", mode="0644"),
        goal("conf-written", {**written, "expect": {"exitCode": 0}}),
    ]
    state = write_state(tmp_path / "state", docs)
    try:
        before = fazai("plan", str(state), "--output", "json")
        assert [c["action"] for c in json.loads(before.stdout)["changes"]] == [
            "create",
            "unresolved",
        ]
        db = tmp_path / "state.db"
        applied = fazai("apply", str(state), "--state", str(db), "--auto-approve")
        # The apply's verify read the goal again: met, so nothing is left unresolved.
        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert "unresolved:" not in applied.stderr
        assert fazai("plan", str(state)).returncode == 0
    finally:
        node.run(f"rm -f {path}")
