"""The command line as a user meets it: exit codes, messages, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema

import controller

EXAMPLE = Path(__file__).parents[3] / "desired_state"


def fazai(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from controller.cli import run; run()", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_version_and_help() -> None:
    assert fazai("--version").stdout.strip() == f"fazai, version {controller.__version__}"
    for command in ("validate", "plan", "schema", "demo"):
        result = fazai(command, "--help")
        assert result.returncode == 0 and "Usage: " in result.stdout


def test_validate_example() -> None:
    result = fazai("validate", str(EXAMPLE))
    assert result.returncode == 0
    assert "valid: 4 nodes, 20 resources" in result.stderr


def test_schema_of_a_kind_validates_documents() -> None:
    result = fazai("schema", "sysctl")
    schema = json.loads(result.stdout)
    doc = {
        "apiVersion": "fazai.dev/v1alpha1",
        "kind": "Sysctl",
        "metadata": {"name": "a"},
        "spec": {"target": {"node": "n"}, "key": "net.ipv4.ip_forward", "value": 1},
    }
    jsonschema.validate(doc, schema)
    every = json.loads(fazai("schema").stdout)
    assert set(every) == {
        "File",
        "FirewallAlias",
        "FirewallRule",
        "Goal",
        "HostOverride",
        "NftTable",
        "Node",
        "Package",
        "Policy",
        "Service",
        "Sysctl",
        "Tool",
        "User",
    }


def test_unknown_kind_and_unknown_node_are_trouble() -> None:
    result = fazai("schema", "Widget")
    assert result.returncode == 2 and "unknown kind 'Widget'" in result.stderr
    result = fazai("plan", str(EXAMPLE), "--node", "nope")
    assert result.returncode == 2 and "no Node named nope" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_source_and_bad_ref() -> None:
    result = fazai("validate", "/nonexistent/state")
    assert result.returncode == 2
    assert "error: /nonexistent/state: no such file or directory" in result.stderr
    result = fazai("validate", str(EXAMPLE), "--ref", "main")
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_history_lists_recorded_runs(tmp_path: Path) -> None:
    from controller.store import Command, NodeStatus, RunStatus, StateStore, Trigger

    db = tmp_path / "state.db"
    with StateStore(db) as store:
        run = store.start_run(Trigger.CLI, Command.APPLY, "/srv/state", "a" * 40)
        store.record_node(run, "web-1", NodeStatus.CONVERGED)
        store.record_node(run, "db-1", NodeStatus.ROLLED_BACK, "verify failed")
        store.finish_run(run, RunStatus.PARTIAL)
    listed = json.loads(fazai("history", "--state", str(db), "--output", "json").stdout)
    assert [(r["id"], r["command"], r["status"], r["revision"]) for r in listed] == [
        (run, "apply", "partial", "a" * 40)
    ]
    assert {(n["node"], n["status"]) for n in listed[0]["nodes"]} == {
        ("web-1", "converged"),
        ("db-1", "rolled_back"),
    }
    text = fazai("history", "--state", str(db)).stdout
    assert "apply" in text and "db-1=rolled_back" in text


def test_apply_refuses_when_the_plan_has_errors(tmp_path: Path) -> None:
    # The example's nodes are not running here: the plan cannot read them, so nothing may
    # be applied, and the refusal is clean.
    result = fazai("apply", str(EXAMPLE), "--state", str(tmp_path / "s.db"), "-o", "json")
    assert result.returncode == 2
    assert "the plan has errors; nothing applied" in result.stderr
    assert "Traceback" not in result.stderr
