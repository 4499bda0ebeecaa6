"""A pull request's Goals in a review: checks the base does not run as they are (a goal
the head adds or changes) are not run on the nodes, since whether each passes shows in
the comment and would answer, push after push, any question about a node's files or a
firewall's settings. They are listed as unresolved, not run; ``--trust-head`` runs them.
Goals the base has, unchanged, run as in any plan."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.forges import command
from controller.forges.review import NOT_RUN
from controller.plan.diff import Action
from controller.plan.items import PlanItem
from controller.plan.review import Review
from controller.testing.fleet import Fleet
from controller.testing.opnsense import EmulatorServer
from tests.integration.reviewkit import (
    NODE,
    PullRequest,
    commit,
    opened,
    review_fleet,
)
from tests.integration.statekit import resource

__all__ = ["review_fleet"]  # the fixture, imported for pytest


def goal(name: str, node: str, *checks: dict[str, Any]) -> dict[str, Any]:
    return resource("Goal", name, {"node": node}, description="an outcome", checks=list(checks))


# Each would answer "does root's password hash start so?" or "does the firewall run so?".
ORACLE = goal(
    "shadow-oracle",
    NODE,
    {"name": "hash", "command": ["cat", "/etc/shadow"], "expect": {"stdoutMatches": "^root:"}},
)
FW_ORACLE = goal(
    "fw-oracle",
    "edge-fw",
    {
        "name": "series",
        "get": "core/service/search",
        "expect": {"path": "rows.0.name", "exists": True},
    },
)
TRUSTED = goal(
    "etc-there", NODE, {"name": "etc", "command": ["test", "-d", "/etc"], "expect": {"exitCode": 0}}
)


@pytest.fixture
def pull_request(
    review_fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[PullRequest, EmulatorServer]]:
    with opened(review_fleet, tmp_path, monkeypatch) as (pr, emu):
        # The base runs one goal; the head keeps it as it is and adds two.
        commit(pr.repo, {"goals.yaml": [TRUSTED]}, "base: a goal")
        pr.repo.heads["feature"].checkout()
        pr.repo.git.merge("main", "--no-edit")
        pr.repo.heads["main"].checkout()
        pr.push_head({"goals.yaml": [TRUSTED, ORACLE, FW_ORACLE]}, "feature: two goals")
        emu.requests.clear()
        yield pr, emu


def review_of(pr: PullRequest, **options: object) -> Review:
    pair = command.load_pair(str(pr.root), "main", "feature", "")
    return command.plan_pair(pair, **options)  # type: ignore[arg-type]


def goals_of(result: Review) -> dict[str, PlanItem]:
    return {i.name: i for n in result.head.nodes for i in n.items if i.kind == "Goal"}


def test_checks_the_head_adds_are_not_run(
    pull_request: tuple[PullRequest, EmulatorServer],
) -> None:
    pr, emu = pull_request
    goals = goals_of(review_of(pr))
    for name in ("shadow-oracle", "fw-oracle"):
        assert goals[name].action is Action.UNRESOLVED
        assert goals[name].reason == NOT_RUN
        assert goals[name].changes == ()
    assert goals["etc-there"].action is Action.NOOP  # the base's goal, unchanged: run
    assert emu.requests.count("GET", r"/core/service/search$") == 0


def test_a_head_that_changes_a_goal_of_the_base_is_not_run_either(
    pull_request: tuple[PullRequest, EmulatorServer],
) -> None:
    pr, _ = pull_request
    changed = goal(
        "etc-there",
        NODE,
        {"name": "etc", "command": ["cat", "/etc/shadow"], "expect": {"stdoutContains": "$6$"}},
    )
    pr.push_head({"goals.yaml": [changed]}, "feature: the base's goal, other checks")
    assert goals_of(review_of(pr))["etc-there"].reason == NOT_RUN


def test_trust_head_runs_them(pull_request: tuple[PullRequest, EmulatorServer]) -> None:
    pr, emu = pull_request
    goals = goals_of(review_of(pr, trust_head=True))
    assert goals["shadow-oracle"].reason != NOT_RUN
    assert goals["fw-oracle"].reason != NOT_RUN
    assert emu.requests.count("GET", r"/core/service/search$") >= 1
