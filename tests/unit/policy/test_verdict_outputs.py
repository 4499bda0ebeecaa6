"""Verdicts next to their item in every plan output, and the plan JSON back to a typed
plan (what `fazai policy test` reads)."""

from __future__ import annotations

import copy
import io
import json
from typing import Any

import jsonschema
import pytest
from rich.console import Console

from controller.errors import InvalidInputError
from controller.output import plan_markdown, plan_text, review_markdown, review_text
from controller.plan import plan_json
from controller.plan.diff import Action, Change
from controller.plan.items import NodePlan, Plan, PlanItem
from controller.plan.review import Marking, Review
from controller.plan.verdicts import Effect, Verdict

DENY = Verdict("fazai-system-users", "no-system-user-delete", Effect.DENY, "no system users")
HOLD = Verdict("fazai-access-files", "ssh", Effect.REQUIRE_APPROVAL, "ssh | sudo", approvals=2)
ALLOW = Verdict("retire", "ok", Effect.ALLOW, "retired", reason="ticket OPS-1")


def judged() -> Plan:
    items = (
        PlanItem("web-1", "File", "sshd", Action.UPDATE,
                 (Change("mode", "0644", "0600"),), verdicts=(HOLD,)),
        PlanItem("web-1", "User", "games", Action.DELETE, (Change("uid", 5, None),),
                 verdicts=(DENY,)),
        PlanItem("web-1", "User", "lp", Action.DELETE, (Change("uid", 7, None),),
                 verdicts=(ALLOW,)),
        PlanItem("web-1", "Package", "vim", Action.NOOP),
        PlanItem("web-1", "Package", "htop", Action.CREATE, command="apt-get install htop"),
    )  # fmt: skip
    return Plan(
        "/srv/state", "0123456789abcdef0123", (NodePlan("web-1", "linux", items, seconds=1.5),)
    )


def test_json_carries_verdicts_per_change_and_matches_the_schema() -> None:
    rendered = json.loads(plan_json.render(judged()))
    jsonschema.validate(rendered, plan_json.schema())
    by_name = {c["name"]: c for c in rendered["changes"]}
    assert by_name["games"]["verdicts"] == [
        {"policy": "fazai-system-users", "rule": "no-system-user-delete", "effect": "deny",
         "message": "no system users", "approvals": 1}
    ]  # fmt: skip
    assert by_name["sshd"]["verdicts"][0]["approvals"] == 2
    assert by_name["lp"]["verdicts"][0]["reason"] == "ticket OPS-1"
    assert (
        "verdicts" not in by_name["htop"] and by_name["htop"]["command"] == "apt-get install htop"
    )


def test_schema_refuses_a_verdict_without_its_effect() -> None:
    rendered = json.loads(plan_json.render(judged()))
    del rendered["changes"][0]["verdicts"][0]["effect"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(rendered, plan_json.schema())


def test_text_shows_each_verdict_under_its_item_and_the_gate() -> None:
    buffer = io.StringIO()
    plan_text.render(judged(), Console(file=buffer, width=300, color_system=None))
    lines = buffer.getvalue().splitlines()
    games = next(i for i, line in enumerate(lines) if "User/games" in line)
    assert lines[games + 1].strip() == (
        "policy denied by fazai-system-users/no-system-user-delete: no system users"
    )
    sshd = next(i for i, line in enumerate(lines) if "File/sshd" in line)
    assert (
        lines[sshd + 1].strip() == "policy needs 2 approvals by fazai-access-files/ssh: ssh | sudo"
    )
    assert "policy allowed by retire/ok: retired (reason: ticket OPS-1)" in buffer.getvalue()
    assert lines[-1] == "policy: 1 change(s) denied; nothing of this plan is applied"


def test_markdown_and_the_pull_request_comment_show_verdicts() -> None:
    out = plan_markdown.render(judged())
    assert "**⛔ policy: 1 change(s) denied; nothing of this plan is applied**" in out
    games = out.index("**User/games** delete")
    assert (
        out.index(
            "  - ⛔ policy **denied** by `fazai-system-users/no-system-user-delete`: "
            "no system users"
        )
        > games
    )
    assert "  - ✋ policy **needs 2 approvals** by `fazai-access-files/ssh`: ssh \\| sudo" in out
    assert "  - ✅ policy **allowed** by `retire/ok`: retired (reason: ticket OPS-1)" in out

    plan = judged()
    review = Review(plan, None, "main", None, "base not planned",
                    {("web-1", "User", "games"): Marking.INTRODUCED})  # fmt: skip
    comment = review_markdown.render(review)
    assert "⛔ policy **denied** by `fazai-system-users/no-system-user-delete`" in comment
    assert "**⛔ policy: 1 change(s) denied" in comment
    buffer = io.StringIO()
    review_text.render(review, Console(file=buffer, width=300, color_system=None))
    assert "policy denied by fazai-system-users/no-system-user-delete" in buffer.getvalue()


def test_a_verdict_message_cannot_pose_as_plan_lines() -> None:
    evil = Verdict("p", "r", Effect.DENY, "ok\n- `+` **File/x** create\n| a | b |")
    item = PlanItem("web-1", "User", "u", Action.DELETE, verdicts=(evil,))
    plan = Plan("s", None, (NodePlan("web-1", "linux", (item,)),))
    out = plan_markdown.render(plan)
    assert "\n- `+` **File/x**" not in out
    buffer = io.StringIO()
    plan_text.render(plan, Console(file=buffer, width=300, color_system=None))
    assert "\n- `+`" not in buffer.getvalue()


def test_from_dict_round_trips_the_plan_json() -> None:
    data = plan_json.to_dict(judged())
    again = plan_json.from_dict(copy.deepcopy(data))
    # In-sync items are only counted in the JSON: they do not come back, the rest does.
    expected = copy.deepcopy(data)
    expected["summary"]["noop"] = 0
    expected["nodes"][0]["resources"] -= 1
    assert plan_json.to_dict(again) == expected
    item = next(i for i in again.nodes[0].items if i.name == "sshd")
    assert item.verdicts == (HOLD,) and item.changes == (Change("mode", "0644", "0600"),)


def test_from_dict_keeps_errors_adoption_and_warnings() -> None:
    from controller.diagnostics import Diagnostic, Location, Severity

    plan = Plan(
        "s", None,
        (NodePlan("fw", "opnsense", (PlanItem("fw", "HostOverride", "www", Action.UPDATE,
                                              adopt="0b7c1f0e-3c1a-4d7e-9a55-1d2b3c4d5e6f"),
                                     PlanItem("fw", "FirewallRule", "r", Action.ERROR,
                                              error="unknown alias")), seconds=0.25),
         NodePlan("db", "linux", error="refused", error_type="UnreachableError")),
        (Diagnostic(Location("a.yaml", 3, 5), "selector matches no node", "File/x",
                    "spec.target", Severity.WARNING),),
    )  # fmt: skip
    data = plan_json.to_dict(plan)
    assert plan_json.to_dict(plan_json.from_dict(data)) == data


@pytest.mark.parametrize(
    ("breakage", "field"),
    [
        (lambda d: d["changes"][0].update(action="explode"), "changes[0].action"),
        (lambda d: d.pop("nodes"), ""),
        (lambda d: d["changes"][0]["verdicts"][0].update(effect="maybe"), "verdicts[0].effect"),
    ],
)
def test_from_dict_refuses_what_the_schema_refuses(breakage: Any, field: str) -> None:
    data = plan_json.to_dict(judged())
    breakage(data)
    with pytest.raises(InvalidInputError) as caught:
        plan_json.from_dict(data, "plan.json")
    (first, *_) = caught.value.diagnostics
    assert first.location.file == "plan.json" and field in first.path


def test_the_pull_requests_commit_status_fails_on_a_denied_change() -> None:
    from controller.forges import command
    from controller.forges.base import CommitState

    denied = Review(judged(), None, "main", None)
    assert command.verdict(denied) == (CommitState.FAILURE, "1 change(s) denied by policy")
    held = Plan("s", None, (NodePlan("web-1", "linux", (judged().nodes[0].items[0],)),))
    state, _ = command.verdict(Review(held, None, "main", None))
    assert state is CommitState.SUCCESS  # an approval is asked at apply, not in review
