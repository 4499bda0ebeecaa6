"""Goals and kinds with no applier on Linux, from recorded fact answers.

Each case under tests/data/linux_goals holds documents, the answer remote_facts.py gave
(recorded) and the items expected, each with the reason an unresolved one carries;
resources not listed must be in sync. The other tests judge single check answers and
the request a goal adds to the node's one fact read.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.model import loader
from controller.model.document import Document
from controller.model.state import DesiredState
from controller.plan.diff import Action, Observed, compare
from controller.providers.linux import essence
from controller.source.open import open_source

CASES = sorted((Path(__file__).parents[2] / "data" / "linux_goals").glob("*.yaml"))
NODE = {
    "apiVersion": "fazai.dev/v1alpha1",
    "kind": "Node",
    "metadata": {"name": "web-1"},
    "spec": {"platform": "linux", "address": "192.0.2.10"},
}


def load(documents: list[dict[str, Any]], tmp_path: Path) -> DesiredState:
    docs: list[dict[str, Any]] = [NODE]
    for doc in documents:
        spec = {"target": {"node": "web-1"}, **doc["spec"]}
        docs.append({"apiVersion": "fazai.dev/v1alpha1", **doc, "spec": spec})
    (tmp_path / "state.yaml").write_text(yaml.safe_dump_all(docs))
    return loader.load(open_source(str(tmp_path)))


def observe(
    documents: list[dict[str, Any]], answer: dict[str, Any], tmp_path: Path
) -> tuple[essence.FactRequest, dict[str, Observed]]:
    state = load(documents, tmp_path)
    request = essence.FactRequest()
    readers: dict[Document, essence.Reader] = {
        doc: essence.prepare(doc, state.source, request) for doc in state.resources
    }
    return request, {doc.name: read(answer) for doc, read in readers.items()}


def item(kind: str, name: str, observed: Observed) -> dict[str, Any]:
    action, changes = compare(observed, f"{kind}/{name}")
    out: dict[str, Any] = {
        "kind": kind,
        "name": name,
        "action": action.value,
        "changes": [{"field": c.field, "live": c.live, "desired": c.desired} for c in changes],
    }
    if action is Action.UNRESOLVED:
        out["reason"] = observed.unresolved
    if observed.error:
        out["error"] = observed.error
    return out


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_recorded_answers_plan_as_expected(path: Path, tmp_path: Path) -> None:
    case = yaml.safe_load(path.read_text())
    kinds = {d["metadata"]["name"]: d["kind"] for d in case["documents"]}
    _, seen = observe(case["documents"], case["answer"], tmp_path)
    items = [item(kinds[name], name, observed) for name, observed in seen.items()]
    changed = [i for i in items if i["action"] != Action.NOOP.value]
    key = lambda i: (i["kind"], i["name"])  # noqa: E731
    assert sorted(changed, key=key) == sorted(case["expect"], key=key)


def goal(*checks: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "Goal",
        "metadata": {"name": "g"},
        "spec": {"description": "a goal", "checks": list(checks)},
    }


def judged(check: dict[str, Any], answer: dict[str, Any], tmp_path: Path) -> str:
    _, seen = observe([goal({"name": "c", **check})], {"checks": [answer]}, tmp_path)
    live = seen["g"].live
    assert live is not None
    return str(live["c"])


OK = {"exit": 0, "truncated": False}


@pytest.mark.parametrize(
    ("expect", "answer", "verdict"),
    [
        ({}, OK, "pass"),
        ({}, {**OK, "exit": 3}, "fail: exit 3"),
        ({"exitCode": 3}, {**OK, "exit": 3}, "pass"),
        ({"exitCode": 3}, OK, "fail: exit 0"),
        ({}, {**OK, "exit": -15}, "fail: killed by signal 15"),
        ({"stdoutContains": "active"}, {**OK, "contains": True}, "pass"),
        (
            {"stdoutContains": "Active"},
            {**OK, "contains": False},
            "fail: output lacks the expected text",
        ),
        # the exit code is judged first: a failing program fails on it, whatever it printed
        ({"stdoutContains": "x"}, {**OK, "exit": 1, "contains": True}, "fail: exit 1"),
        # the node judges the output (remote_facts.judge_output): only its answers come back
        ({"stdoutMatches": "^port 443$"}, {**OK, "matches": True}, "pass"),
        (
            {"stdoutMatches": "^port 443$"},
            {**OK, "matches": False},
            "fail: output does not match",
        ),
        (
            {"stdoutContains": "a", "stdoutMatches": "z$"},
            {**OK, "contains": True, "matches": False},
            "fail: output does not match",
        ),
        (
            {"stdoutContains": "end"},
            {**OK, "contains": False, "truncated": True},
            "fail: output lacks the expected text (only the first 64 KiB of the output are read)",
        ),
        ({}, {"timed_out": True, "timeout": 7}, "fail: timed out after 7s"),
        (
            {},
            {"timed_out": True, "timeout": 2.5, "budget": True},
            "fail: timed out after 2.5s (the node's check time budget ran out)",
        ),
        ({}, {"error": "no such program: ss"}, "fail: no such program: ss"),
        ({}, {"error": "permission denied: /usr/sbin/x"}, "fail: permission denied: /usr/sbin/x"),
        ({}, {"truncated": False}, "fail: the node reported no exit status"),
        # an answer without the verdict asked for (an older script) fails, never passes
        ({"stdoutContains": "x"}, OK, "fail: output lacks the expected text"),
    ],
)
def test_each_answer_is_judged(
    expect: dict[str, Any], answer: dict[str, Any], verdict: str, tmp_path: Path
) -> None:
    # an empty expectation is the default one, spelled out (the schema wants one)
    check = {"command": ["test", "-d", "/etc"], "expect": expect or {"exitCode": 0}}
    assert judged(check, answer, tmp_path) == verdict


def test_a_failing_check_never_shows_its_output(tmp_path: Path) -> None:
    secret = "s3cr3t-Token-9f8e"
    checks = [
        {"name": "a", "command": ["cat", "/etc/app.env"], "expect": {"stdoutContains": "ready"}},
        {"name": "b", "command": ["cat", "/etc/app.env"], "expect": {"stdoutMatches": "^ok$"}},
        {"name": "c", "command": ["cat", "/etc/app.env"], "expect": {"exitCode": 1}},
    ]
    printed = {"exit": 0, "stdout": f"TOKEN={secret}\n", "truncated": False}
    _, seen = observe([goal(*checks)], {"checks": [printed] * 3}, tmp_path)
    observed = seen["g"]
    action, changes = compare(observed, "Goal/g")
    assert action is Action.UNRESOLVED
    assert observed.unresolved == (
        "checks failing: a (output lacks the expected text), b (output does not match), c (exit 0)"
    )
    assert secret not in repr(observed) and secret not in repr(changes)


def test_all_passing_is_in_sync(tmp_path: Path) -> None:
    _, seen = observe(
        [goal({"name": "a", "command": ["true"], "expect": {"exitCode": 0}})],
        {"checks": [OK]},
        tmp_path,
    )
    assert compare(seen["g"]) == (Action.NOOP, ())
    assert seen["g"].desired == {"a": "pass"}


def test_goals_add_their_checks_to_the_one_request_in_order(tmp_path: Path) -> None:
    first = goal(
        {"name": "a", "command": ["test", "-d", "/etc"], "expect": {"exitCode": 0}},
        {"name": "b", "command": ["ss", "-ltn"], "timeout": 3, "expect": {"exitCode": 0}},
    )
    second = {**goal({"name": "a", "command": ["cat", "/etc/hostname"], "expect": {"exitCode": 0}})}
    second["metadata"] = {"name": "h"}
    answers = [OK, {**OK, "exit": 2}, {"error": "no such program: cat"}]
    request, seen = observe([first, second], {"checks": answers}, tmp_path)
    none = {"contains": None, "matches": None}
    assert request.checks == [
        {"argv": ["test", "-d", "/etc"], "timeout": 10, **none},
        {"argv": ["ss", "-ltn"], "timeout": 3, **none},
        {"argv": ["cat", "/etc/hostname"], "timeout": 10, **none},
    ]
    sent = json.loads(request.to_json())
    assert sent["checks"] == request.checks
    assert sent["check_budget"] == essence.DEFAULT_CHECK_BUDGET
    # each goal reads its own answers, by position
    assert seen["g"].live == {"a": "pass", "b": "fail: exit 2"}
    assert seen["h"].live == {"a": "fail: no such program: cat"}


def test_no_checks_asked_for_without_goals(tmp_path: Path) -> None:
    request, _ = observe(
        [{"kind": "Package", "metadata": {"name": "p"}, "spec": {}}],
        {"host": {"package_manager": "dpkg"}, "packages": {"installed": {}}},
        tmp_path,
    )
    assert json.loads(request.to_json())["checks"] == []


def test_an_answer_without_the_checks_is_an_error(tmp_path: Path) -> None:
    _, seen = observe(
        [goal({"name": "a", "command": ["true"], "expect": {"exitCode": 0}})], {}, tmp_path
    )
    assert compare(seen["g"])[0] is Action.ERROR
    assert seen["g"].error == "the node did not answer the goal's checks"


def test_a_command_that_skipped_validation_is_never_sent(tmp_path: Path) -> None:
    # The loader refuses such a goal; the provider checks again before the node runs it.
    state = load([goal({"name": "a", "command": ["true"], "expect": {"exitCode": 0}})], tmp_path)
    (valid,) = state.resources
    checks = [{"name": "a", "command": ["rm", "-rf", "/etc"], "expect": {"exitCode": 0}}]
    bad = dataclasses.replace(valid, spec={**valid.spec, "checks": checks})
    request = essence.FactRequest()
    seen = essence.prepare(bad, state.source, request)({"checks": []})
    assert request.checks == []
    assert seen.error is not None and seen.error.startswith("not a read-only probe")
    assert compare(seen)[0] is Action.ERROR
