"""Round-3 review fixes: rules that reach ``item`` through brackets or an alias, comma
interface lists, cost limits, system accounts, scoped allows, kind typos."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller.plan.diff import Action, Change
from controller.plan.items import PlanItem
from controller.plan.verdicts import Effect
from tests.unit.policy.test_stage import effects, file_doc, judge, policy, state, user_delete


def rule(expression: str, effect: str = "deny", **extra: Any) -> dict[str, Any]:
    return {"name": "r", "expression": expression, "effect": effect, "message": "m", **extra}


@pytest.mark.parametrize(
    "expression",
    [
        '"uid" in item["fields"] && item["fields"]["uid"]["live"] < 1000',
        '[item].exists(i, "uid" in i.fields && i.fields.uid.live < 1000)',
        "[item].exists(i, has(i.fields.uid) && i.fields.uid.live < 1000)",
        '"uid" in item.fields && item.fields.uid.live < 1000',
    ],
)
def test_a_deny_reaching_item_through_brackets_or_an_alias_fires(
    tmp_path: Path, expression: str
) -> None:
    loaded = state(tmp_path, policy("mine", rule(expression), match={"kinds": ["User"]}))
    item = PlanItem("web-1", "User", "svc", Action.UPDATE, (Change("uid", 5, 1500),))
    got = judge(loaded, item)["User/svc"]
    assert ("mine", "r", Effect.DENY) in effects(got)


def firewall_rule(interface: Any, action: str = "block") -> dict[str, Any]:
    return {"apiVersion": "fazai.dev/v1alpha1", "kind": "FirewallRule",
            "metadata": {"name": "blk"},
            "spec": {"target": {"node": "fw"}, "action": action, "interface": interface,
                     "description": "x", "source": {"net": "any"},
                     "destination": {"net": "any"}}}  # fmt: skip


HELD = ("fazai-firewall-rules", "block-on-controller-interface", Effect.REQUIRE_APPROVAL)


@pytest.mark.parametrize(
    ("interface", "held"),
    [
        ("lan", True),
        ("lan,opt1", True),
        ("opt1,lan", True),
        (["opt1", "lan"], True),
        ("mygroup", True),  # an interface group may contain lan
        (["opt1", "lanboth"], True),
        ("opt1", False),
        (["opt1", "wan"], False),
    ],
)
def test_a_block_on_the_controllers_interface_is_held_in_every_spelling(
    tmp_path: Path, interface: Any, held: bool
) -> None:
    from controller.providers.opnsense.essence import interfaces

    loaded = state(tmp_path, firewall_rule(interface))
    create = PlanItem("fw", "FirewallRule", "blk", Action.CREATE,
                      (Change("action", None, "block"),
                       Change("interface", None, interfaces(interface))))  # fmt: skip
    update = PlanItem(
        "fw", "FirewallRule", "blk", Action.UPDATE, (Change("description", "y", "x"),)
    )
    for item in (create, update):
        got = judge(loaded, item)["FirewallRule/blk"]
        assert (HELD in effects(got)) is held, (interface, item.action)


def test_a_plan_from_json_with_the_string_form_is_held(tmp_path: Path) -> None:
    loaded = state(tmp_path)
    changes = (Change("action", None, "block"), Change("interface", None, "opt1,lan"))
    item = PlanItem("fw", "FirewallRule", "x", Action.CREATE, changes)
    assert HELD in effects(judge(loaded, item)["FirewallRule/x"])


def test_the_interface_string_is_checked_as_a_comma_list(tmp_path: Path) -> None:
    from controller.errors import InvalidInputError

    with pytest.raises(InvalidInputError) as caught:
        state(tmp_path, firewall_rule("lan;opt1"))
    assert "interface" in str(caught.value.diagnostics)


NUMBERS = "[" + ",".join(str(i) for i in range(256)) + "]"


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("[1].all(a, [2].all(b, [3].exists(c, a + b + c > 0)))", "nested more than 2 deep"),
        ("item.changes.all(a, item.changes.all(b, item.changes.exists (c, true)))", "nested"),
        ("item.name in [" + ",".join(['"x"'] * 257) + "]", "over 256 entries"),
        ("size({" + ",".join(f"{i}: 1" for i in range(257)) + "}) > 0", "over 256 entries"),
    ],
)
def test_costly_expressions_are_refused_at_validate(
    tmp_path: Path, expression: str, says: str
) -> None:
    from controller.errors import InvalidInputError

    with pytest.raises(InvalidInputError) as caught:
        state(tmp_path, policy("mine", rule(expression)))
    (problem,) = caught.value.diagnostics
    assert says in problem.message
    assert problem.path == "spec.rules[0].expression" and problem.location.line > 0


def test_comprehensions_two_deep_and_in_strings_pass(tmp_path: Path) -> None:
    ok = '[1, 2].all(a, [3].exists(b, a < b)) && item.name != ".all(x, .all(y, .all(z,"'
    state(tmp_path, policy("mine", rule(ok)))


def test_evaluation_past_its_budget_fails_closed(tmp_path: Path) -> None:
    from controller.pipeline.errors import PolicyError
    from controller.pipeline.policy import _evaluate
    from controller.policy import stage

    # Within the limits, but reading item.name so no two items share a result.
    slow = f'{NUMBERS}.all(a, !{NUMBERS}.exists(b, a + b < 0 && item.name == ""))'
    loaded = state(tmp_path, policy("mine", rule(slow)))
    items = [PlanItem("web-1", "User", f"u{i}", Action.CREATE, ()) for i in range(200)]
    policies = stage.PolicySet(stage.load(loaded).policies, budget=0.05)
    from tests.unit.policy.test_stage import RUN, plan

    with pytest.raises(stage.BudgetExceeded, match=r"took over 0\.05 s"):
        policies.evaluate(plan(*items), RUN, loaded.nodes)
    with pytest.raises(PolicyError, match="nothing is written"):
        _evaluate(policies, plan(*items), RUN, loaded)


USERS = "fazai-system-users"


def test_a_system_account_cannot_be_renumbered_then_deleted(tmp_path: Path) -> None:
    loaded = state(tmp_path)
    renumber = PlanItem("web-1", "User", "sshd", Action.UPDATE, (Change("uid", 105, 5000),))
    high = PlanItem("web-1", "User", "dyn", Action.UPDATE, (Change("uid", 61184, 5000),))
    ordinary = PlanItem("web-1", "User", "app", Action.UPDATE, (Change("uid", 1500, 1600),))
    got = judge(loaded, renumber, high, ordinary, user_delete("nobody", 65534))
    assert effects(got["User/sshd"]) == [(USERS, "no-system-uid-change", Effect.DENY)]
    assert effects(got["User/dyn"]) == [(USERS, "no-system-uid-change", Effect.DENY)]
    assert effects(got["User/nobody"]) == [(USERS, "no-system-user-delete", Effect.DENY)]
    assert effects(got["User/app"]) == []


@pytest.mark.parametrize(
    ("live", "desired", "held"),
    [
        ([], ["sudo"], True),
        (None, ["wheel"], True),
        (["users"], ["adm", "users"], True),
        (["sudo"], ["docker", "sudo"], False),
        ([], ["docker"], False),
    ],
)
def test_joining_a_group_that_grants_root_needs_approval(
    tmp_path: Path, live: Any, desired: Any, held: bool
) -> None:
    item = PlanItem("web-1", "User", "m", Action.UPDATE, (Change("groups", live, desired),))
    got = effects(judge(state(tmp_path), item)["User/m"])
    assert ((USERS, "privileged-group-needs-approval", Effect.REQUIRE_APPROVAL) in got) is held


@pytest.mark.parametrize(
    "path",
    [
        "/root/.ssh/authorized_keys",
        "/etc/passwd",
        "/etc/shadow",
        "/etc/group",
        "/etc/pam.d/sshd",
        "//etc/sudoers",  # /etc//ssh/x and /etc/x/../ssh/x are refused at validate
    ],
)
def test_access_files_need_approval_in_every_spelling(tmp_path: Path, path: str) -> None:
    loaded = state(tmp_path, file_doc("f", path))
    item = PlanItem("web-1", "File", "f", Action.UPDATE, (Change("mode", "0644", "0600"),))
    got = effects(judge(loaded, item)["File/f"])
    assert got == [("fazai-access-files", "ssh-and-sudoers-need-approval", Effect.REQUIRE_APPROVAL)]


def allow(expression: str, *overrides: str) -> dict[str, Any]:
    return rule(expression, "allow", reason="ticket OPS-1", overrides=list(overrides))


def test_an_allow_lifts_only_the_defaults_it_names(tmp_path: Path) -> None:
    loaded = state(
        tmp_path,
        policy("renumber-ok", allow("true", f"{USERS}/no-system-uid-change")),
    )
    renumber = PlanItem("web-1", "User", "sshd", Action.UPDATE, (Change("uid", 105, 5000),))
    got = judge(loaded, renumber, user_delete("root", 0))
    assert effects(got["User/sshd"]) == [("renumber-ok", "r", Effect.ALLOW)]
    # The same allow matches root's delete but names another rule: the deny stands.
    assert effects(got["User/root"]) == [(USERS, "no-system-user-delete", Effect.DENY)]


@pytest.mark.parametrize(
    ("bad", "says", "path"),
    [
        (rule("true", "allow", reason="x"), "required field 'overrides'", "spec.rules[0]"),
        (allow("true", "fazai-system-users/no-such"), "no shipped default rule",
         "spec.rules[0].overrides[0]"),
        (rule("true", overrides=[f"{USERS}/no-system-user-delete"]), "only an allow",
         "spec.rules[0].overrides"),
    ],
)  # fmt: skip
def test_an_allow_must_name_existing_defaults(
    tmp_path: Path, bad: dict[str, Any], says: str, path: str
) -> None:
    from controller.errors import InvalidInputError

    with pytest.raises(InvalidInputError) as caught:
        state(tmp_path, policy("mine", bad))
    (problem,) = caught.value.diagnostics
    assert says in problem.message and problem.path == path and problem.location.line > 0


def test_an_allow_that_errors_does_not_apply_and_does_not_deny(tmp_path: Path) -> None:
    loaded = state(
        tmp_path,
        policy(
            "broken-allow", allow("item.fields.nope.live == 1", f"{USERS}/no-system-user-delete")
        ),
        policy("broken-deny", rule("item.fields.nope.live == 1", "requireApproval")),
    )
    got = judge(loaded, user_delete("svc", 1500), user_delete("games", 5))
    # The allow is not there; the requireApproval that errors still fails closed.
    assert [(p, e) for p, _, e in effects(got["User/svc"])] == [("broken-deny", Effect.DENY)]
    assert (USERS, "no-system-user-delete", Effect.DENY) in effects(got["User/games"])


def test_a_typo_in_match_kinds_is_refused_with_its_position(tmp_path: Path) -> None:
    from controller.errors import InvalidInputError

    with pytest.raises(InvalidInputError) as caught:
        state(tmp_path, policy("mine", rule("true"), match={"kinds": ["User", "Usr"]}))
    (problem,) = caught.value.diagnostics
    assert problem.path == "spec.match.kinds[1]" and "'Usr' is no known kind" in problem.message
    assert problem.location.line > 0 and problem.location.column > 0


@pytest.mark.parametrize(
    ("expression", "refused"),
    [
        ('item["nope"] == 1', True),
        ("[item].exists(i, i.nope == 1)", True),
        ('run["actr"] == "alice"', True),
        ('item.fields["uid"].live < 1000', False),
        ('node.labels["tier"] == "web"', False),
        ('item.spec["path"].startsWith("/etc/") && item.fields.mode.live == "0644"', False),
        ('"a" in item.fields && item.fields.a.live == 1 && item.spec.b == 2', False),
    ],
)
def test_the_dry_run_tolerates_missing_keys_only_in_free_maps(
    tmp_path: Path, expression: str, refused: bool
) -> None:
    from controller.errors import InvalidInputError

    document = policy("mine", rule(expression))
    if not refused:
        state(tmp_path, document)
        return
    with pytest.raises(InvalidInputError) as caught:
        state(tmp_path, document)
    assert "which is no field of item, node or run" in str(caught.value.diagnostics)


def test_what_the_agent_proposes_is_a_change_the_agent_default_holds(tmp_path: Path) -> None:
    from controller.plan import plan_json
    from tests.unit.policy.test_stage import plan

    proposed = PlanItem(
        "web-1", "Service", "nginx", Action.UNRESOLVED, (), command="usetool restart-nginx"
    )
    got = judge(state(tmp_path), proposed)["Service/nginx"]
    assert effects(got) == [
        ("fazai-agent-proposals", "agent-needs-approval", Effect.REQUIRE_APPROVAL)
    ]
    assert got.approvals_needed == 1 and not got.denied
    whole = plan(proposed)
    assert whole.has_changes and whole.has_writes
    document = plan_json.to_dict(whole)
    assert [c["action"] for c in document["changes"]] == ["unresolved"]
    # The plan-JSON contract accepts it (fazai policy test reads such plans).
    (back,) = [i for n in plan_json.from_dict(document).nodes for i in n.items]
    assert back.action is Action.UNRESOLVED


def test_every_plan_output_shows_an_unresolved_item(tmp_path: Path) -> None:
    import io

    from rich.console import Console

    import controller.policy
    from controller.output import plan_markdown, plan_text, summary
    from tests.unit.policy.test_stage import RUN, plan

    proposed = PlanItem(
        "web-1", "Service", "nginx", Action.UNRESOLVED, (), command="usetool restart-nginx"
    )
    judged = controller.policy.load(state(tmp_path)).evaluate(plan(proposed), RUN, {})
    buffer = io.StringIO()
    plan_text.render(judged, Console(file=buffer, width=200))
    for shown in (buffer.getvalue(), plan_markdown.render(judged)):
        assert "Service/nginx" in shown and "agent-needs-approval" in shown
    assert "1 unresolved" in summary.summary_line(judged) and judged.has_changes
    assert judged.exit_code == 1  # a change: plan says so, and apply gates it


def test_an_unresolved_item_with_no_proposal_is_held_by_no_default(tmp_path: Path) -> None:
    # A failing Goal writes nothing: an approval would approve nothing.
    left = PlanItem("web-1", "Goal", "nginx", Action.UNRESOLVED, (), reason="checks failing: up")
    got = judge(state(tmp_path), left)["Goal/nginx"]
    assert effects(got) == [] and got.approvals_needed == 0


def test_missing_shipped_defaults_fail_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from controller.policy import defaults

    repo = Path(__file__).resolve().parents[3]
    folder = tmp_path / "pkg"
    (folder / "defaults").mkdir(parents=True)
    for name in ("access-files.yaml", "agent.yaml", "firewall-rules.yaml"):
        shutil.copy(repo / "policies" / name, folder / "defaults" / name)
    monkeypatch.setattr(defaults.resources, "files", lambda _package: folder)
    defaults.shipped_policies.cache_clear()
    try:
        with pytest.raises(defaults.MissingDefaultsError, match="fazai-system-users"):
            defaults.shipped_policies()
        shutil.rmtree(folder / "defaults")
        with pytest.raises(defaults.MissingDefaultsError, match="are missing"):
            defaults.shipped_policies()
    finally:
        monkeypatch.undo()
        defaults.shipped_policies.cache_clear()
    assert {p.name for p in defaults.shipped_policies()} == defaults.EXPECTED


def test_a_secret_named_spec_field_reaches_no_expression() -> None:
    from controller.model.document import Document
    from controller.policy import activation

    spec = {"target": {"node": "web-1"}, "name": "x", "apiToken": "hunter2",
            "env": {"dbPassword": "pw"}}  # fmt: skip
    document = Document("Service", "x", spec)
    shown = activation.spec_view(document)
    assert shown["apiToken"] == "***" and shown["env"]["dbPassword"] == "***"
    assert shown["name"] == "x" and "target" not in shown
