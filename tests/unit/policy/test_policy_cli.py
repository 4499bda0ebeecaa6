"""`fazai policy test` and `fazai validate` as a user meets them: the real command line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def fazai(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from controller.cli import run; run()", *args],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, cwd=cwd,
        env={**os.environ, "COLUMNS": "300"},
    )  # fmt: skip


def test_example_suite_of_the_shipped_defaults_passes() -> None:
    done = fazai("policy", "test", "desired_state", "--plans", "policies/tests")
    assert done.returncode == 0, done.stderr
    assert "PASS linux-defaults" in done.stdout and "PASS firewall-defaults" in done.stdout
    assert "3 cases, 0 failed" in done.stdout


def test_a_wrong_expectation_fails_with_exit_1(tmp_path: Path) -> None:
    suite = tmp_path / "tests"
    shutil.copytree(REPO / "policies" / "tests", suite)
    case = suite / "defaults.yaml"
    text = case.read_text()
    # games is denied by the defaults: expecting "none" must fail, naming what was found
    case.write_text(text.replace("name: games, effect: deny", "name: games, effect: none"))
    done = fazai("policy", "test", "desired_state", "--plans", str(suite))
    assert done.returncode == 1, done.stderr
    assert "FAIL linux-defaults" in done.stdout
    assert (
        "web-1 User/games: expected none, got deny "
        "(deny by fazai-system-users/no-system-user-delete)" in done.stdout
    )
    assert "PASS firewall-defaults" in done.stdout


def test_a_wrong_policy_name_fails(tmp_path: Path) -> None:
    suite = tmp_path / "tests"
    shutil.copytree(REPO / "policies" / "tests", suite)
    case = suite / "defaults.yaml"
    case.write_text(case.read_text().replace("policy: sandbox-sshd-hardening", "policy: other"))
    done = fazai("policy", "test", "desired_state", "--plans", str(suite))
    assert done.returncode == 1
    assert "File/sshd-hardening: expected allow by other" in done.stdout


def test_a_broken_case_file_is_trouble_with_its_position(tmp_path: Path) -> None:
    suite = tmp_path / "tests"
    shutil.copytree(REPO / "policies" / "tests", suite)
    (suite / "bad.yaml").write_text(
        "apiVersion: fazai.dev/v1alpha1\nkind: PolicyTest\nmetadata: {name: bad}\n"
        "spec:\n  plan: plans/linux.json\n  expect:\n"
        "    - {node: web-1, kind: User, name: games, effect: forbid}\n"
    )
    (suite / "noplan.yaml").write_text(
        "apiVersion: fazai.dev/v1alpha1\nkind: PolicyTest\nmetadata: {name: noplan}\n"
        "spec:\n  plan: plans/missing.json\n  expect:\n"
        "    - {node: web-1, kind: User, name: games, effect: deny}\n"
    )
    (suite / "plans" / "broken.json").write_text('{"kind": "Plan",\n  "nodes": [}\n')
    (suite / "broken-plan.yaml").write_text(
        "apiVersion: fazai.dev/v1alpha1\nkind: PolicyTest\nmetadata: {name: b}\n"
        "spec:\n  plan: plans/broken.json\n  expect:\n"
        "    - {node: web-1, kind: User, name: games, effect: deny}\n"
    )
    done = fazai("policy", "test", "desired_state", "--plans", str(suite))
    assert done.returncode == 2, done.stderr
    assert f"{suite}/bad.yaml:7:46: PolicyTest: spec.expect[0].effect:" in done.stderr
    assert f"{suite}/noplan.yaml:5:3:" in done.stderr and "missing.json" in done.stderr
    assert f"{suite}/plans/broken.json:2:13:" in done.stderr
    assert "PASS" not in done.stdout  # nothing is evaluated while a case is broken


def test_a_plan_that_breaks_the_schema_is_trouble(tmp_path: Path) -> None:
    (tmp_path / "plan.json").write_text('{"apiVersion": "fazai.dev/v1alpha1", "kind": "Plan"}')
    (tmp_path / "case.yaml").write_text(
        "apiVersion: fazai.dev/v1alpha1\nkind: PolicyTest\nmetadata: {name: c}\n"
        "spec:\n  plan: plan.json\n  expect:\n"
        "    - {node: web-1, kind: User, name: games, effect: deny}\n"
    )
    done = fazai("policy", "test", "desired_state", "--plans", str(tmp_path / "case.yaml"))
    assert done.returncode == 2
    assert f"{tmp_path}/plan.json: Plan: 'source' is a required property" in done.stderr


def test_validate_refuses_bad_cel_with_file_line_and_field(tmp_path: Path) -> None:
    shutil.copytree(REPO / "desired_state", tmp_path / "state")
    (tmp_path / "state" / "policy.yaml").write_text(
        "apiVersion: fazai.dev/v1alpha1\nkind: Policy\nmetadata: {name: guard}\nspec:\n"
        "  rules:\n    - name: r\n      effect: deny\n      message: m\n"
        "      expression: item.kind == 'User' && item.acton == 'delete'\n"
    )
    done = fazai("validate", str(tmp_path / "state"))
    assert done.returncode == 2
    assert (
        "policy.yaml:9:47: Policy/guard: spec.rules[0].expression: item has no field 'acton'"
        in done.stderr
    )
    assert "Traceback" not in done.stderr


def test_a_repository_policy_cannot_take_a_shipped_defaults_name(tmp_path: Path) -> None:
    shutil.copytree(REPO / "desired_state", tmp_path / "state")
    (tmp_path / "state" / "policy.yaml").write_text(
        "apiVersion: fazai.dev/v1alpha1\nkind: Policy\nmetadata: {name: fazai-system-users}\n"
        "spec:\n  rules:\n    - {name: r, effect: deny, message: m, expression: 'false'}\n"
    )
    done = fazai("validate", str(tmp_path / "state"))
    assert done.returncode == 2
    assert (
        "policy.yaml:3:12: Policy/fazai-system-users: metadata.name: names starting with "
        "'fazai-' are kept for the shipped defaults" in done.stderr
    )


def test_a_plan_nested_too_deep_is_trouble_naming_the_file(tmp_path: Path) -> None:
    suite = tmp_path / "tests"
    shutil.copytree(REPO / "policies" / "tests", suite)
    (suite / "plans" / "linux.json").write_text("[" * 200_000)
    done = fazai("policy", "test", "desired_state", "--plans", str(suite))
    assert done.returncode == 2, done.stderr
    assert "linux.json: nested too deeply to read" in done.stderr
    assert "internal error" not in done.stderr.lower() and "Traceback" not in done.stderr
    assert "1 error in the test files" in done.stderr
