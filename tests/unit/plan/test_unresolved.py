"""Unresolved items: a difference no deterministic handler can write plans as
``unresolved`` with its reason, counts as a difference (exit 1), shows in every output,
and is never counted as something an apply writes (so it gates nothing)."""

from __future__ import annotations

from rich.console import Console

from controller.output import plan_markdown, plan_text
from controller.pipeline import policy
from controller.pipeline.gate import Decision
from controller.plan import plan_json, review
from controller.plan.diff import Action, Change, Observed, compare
from controller.plan.items import NodePlan, Plan, PlanItem
from controller.plan.verdicts import Effect, RunContext, Verdict

WHY = "checks failing: nginx-up (exit 3)"
HOLD = Verdict("fw-deletes", "0", Effect.REQUIRE_APPROVAL, "a second person approves", 2)
DENY = Verdict("never", "0", Effect.DENY, "no")


def goal(*verdicts: Verdict, command: str | None = None) -> PlanItem:
    return PlanItem(
        "web-1",
        "Goal",
        "nginx-serves",
        Action.UNRESOLVED,
        (Change("nginx-up", "fail: exit 3", "pass"),),
        verdicts=verdicts,
        command=command,
        reason=WHY,
    )


def create(*verdicts: Verdict) -> PlanItem:
    return PlanItem(
        "web-1", "File", "motd", Action.CREATE, (Change("content", None, "x"),), verdicts=verdicts
    )


def plan(*items: PlanItem) -> Plan:
    return Plan("here", None, (NodePlan("web-1", "linux", items),))


def test_a_difference_with_a_reason_is_unresolved_and_keeps_its_changes() -> None:
    seen = Observed({"a": "pass"}, {"a": "fail: exit 1"}, unresolved=WHY)
    action, changes = compare(seen)
    assert action is Action.UNRESOLVED
    assert [(c.field, c.live, c.desired) for c in changes] == [("a", "fail: exit 1", "pass")]
    assert compare(Observed({"a": 1}, None, unresolved=WHY))[0] is Action.UNRESOLVED
    assert compare(Observed(None, {"a": 1}, unresolved=WHY))[0] is Action.UNRESOLVED


def test_in_sync_and_not_comparable_stay_what_they_are_whatever_the_reason() -> None:
    assert compare(Observed({"a": "pass"}, {"a": "pass"}, unresolved=WHY))[0] is Action.NOOP
    assert compare(Observed({"a": 1}, None, "cannot read", unresolved=WHY))[0] is Action.ERROR


def test_unresolved_counts_as_a_difference_but_is_never_written() -> None:
    only = plan(goal())
    assert only.has_changes and only.exit_code == 1
    assert not only.has_writes
    assert only.unresolved == (goal(),)
    mixed = plan(goal(), create())
    assert mixed.has_writes and mixed.nodes[0].writes == (create(),)
    # What the agent proposes for an item is a change to write like any other.
    assert goal(command="usetool fix-nginx").writes


def test_verdicts_on_an_unresolved_item_without_a_proposal_gate_nothing() -> None:
    held = plan(goal(HOLD, DENY), create())
    assert held.denied == () and held.approvals_needed == 0
    checked = policy.judged(held, RunContext("cli", "apply", "alice"))
    assert checked.decision is Decision.APPLY
    alone = policy.judged(plan(goal(HOLD)), RunContext("cli", "apply", "alice"))
    assert alone.decision is Decision.IN_SYNC
    proposed = plan(goal(HOLD, command="usetool fix-nginx"))
    assert proposed.approvals_needed == 2


def test_the_reason_travels_through_plan_json_and_back() -> None:
    original = plan(goal(), create())
    document = plan_json.to_dict(original)
    by_kind = {c["kind"]: c for c in document["changes"]}
    assert by_kind["Goal"]["reason"] == WHY and by_kind["Goal"]["action"] == "unresolved"
    assert "reason" not in by_kind["File"]
    assert plan_json.from_dict(document) == original


def test_every_rendering_states_the_reason() -> None:
    console = Console(record=True, width=200, color_system=None)
    plan_text.render(plan(goal()), console)
    text = console.export_text()
    assert f"unresolved: {WHY}" in text
    assert "1 unresolved" in text
    markdown = plan_markdown.render(plan(goal()))
    assert f"unresolved: {WHY}" in markdown
    assert "| in sync | unresolved | status |" in markdown
    assert "| web-1 | linux | 0 | 0 | 0 | 0 | 1 | ok |" in markdown
    # Without unresolved items the table keeps its columns.
    assert "unresolved" not in plan_markdown.render(plan(create()))


def test_a_review_sees_a_new_reason_as_a_change() -> None:
    other = PlanItem(**{**goal().__dict__, "reason": "checks failing: port-open (exit 1)"})
    assert review.same(goal(), goal())
    assert not review.same(goal(), other)
