"""The policy stage's verdicts: each shipped default, the allow-with-reason override, a
repository's deny that nothing overrides, and rules that fail closed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

import controller.policy
from controller.errors import InvalidInputError
from controller.model import loader
from controller.model.document import Document
from controller.model.state import DesiredState
from controller.plan.diff import Action, Change
from controller.plan.items import NodePlan, Plan, PlanItem
from controller.plan.verdicts import Effect, RunContext
from controller.policy import PolicySet
from controller.policy.celengine import engine as cel
from controller.source.open import open_source

RUN = RunContext(trigger="commit", mode="auto", actor="alice", source="infra")
NODES = [
    {"apiVersion": "fazai.dev/v1alpha1", "kind": "Node", "metadata": {"name": "web-1",
     "labels": {"tier": "web"}}, "spec": {"platform": "linux", "address": "10.0.0.1"}},
    {"apiVersion": "fazai.dev/v1alpha1", "kind": "Node", "metadata": {"name": "fw"},
     "spec": {"platform": "opnsense", "url": "https://fw.example", "apiKeyRef": {"env": "K"},
              "apiSecretRef": {"env": "S"}, "controllerInterfaces": ["lan"]}},
]  # fmt: skip


def policy(
    name: str, *rules: dict[str, Any], match: dict[str, Any] | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {"rules": list(rules)}
    if match:
        spec["match"] = match
    return {"apiVersion": "fazai.dev/v1alpha1", "kind": "Policy", "metadata": {"name": name},
            "spec": spec}  # fmt: skip


def state(tmp_path: Path, *documents: dict[str, Any]) -> DesiredState:
    folder = tmp_path / "infra"
    folder.mkdir(exist_ok=True)
    (folder / "all.yaml").write_text(yaml.safe_dump_all([*NODES, *documents]))
    return loader.load(open_source(str(folder)))


def file_doc(name: str, path: str) -> dict[str, Any]:
    spec = {"target": {"node": "web-1"}, "path": path, "content": "secret-ish\n"}
    return {"apiVersion": "fazai.dev/v1alpha1", "kind": "File", "metadata": {"name": name},
            "spec": spec}  # fmt: skip


def plan(*items: PlanItem) -> Plan:
    linux = tuple(i for i in items if i.node == "web-1")
    fw = tuple(i for i in items if i.node == "fw")
    return Plan("infra", None, (NodePlan("web-1", "linux", linux), NodePlan("fw", "opnsense", fw)))


def judge(loaded: DesiredState, *items: PlanItem, run: RunContext = RUN) -> dict[str, PlanItem]:
    out = controller.policy.load(loaded).evaluate(plan(*items), run, loaded.nodes)
    return {f"{i.kind}/{i.name}": i for n in out.nodes for i in n.items}


def user_delete(name: str, uid: int) -> PlanItem:
    return PlanItem("web-1", "User", name, Action.DELETE, (Change("uid", uid, None),))


def file_update(name: str) -> PlanItem:
    return PlanItem("web-1", "File", name, Action.UPDATE, (Change("mode", "0644", "0600"),))


def effects(item: PlanItem) -> list[tuple[str, str, Effect]]:
    return [(v.policy, v.rule, v.effect) for v in item.verdicts]


def test_system_user_and_root_delete_are_denied(tmp_path: Path) -> None:
    got = judge(state(tmp_path), user_delete("games", 5), user_delete("root", 0),
                user_delete("olduser", 1500))  # fmt: skip
    assert effects(got["User/games"]) == [
        ("fazai-system-users", "no-system-user-delete", Effect.DENY)
    ]
    assert got["User/games"].denied and got["User/root"].denied
    assert got["User/olduser"].verdicts == ()


def test_ssh_and_sudoers_files_need_approval(tmp_path: Path) -> None:
    loaded = state(
        tmp_path,
        file_doc("sshd", "/etc/ssh/sshd_config"),
        file_doc("sudoers", "/etc/sudoers"),
        file_doc("sudo-ops", "/etc/sudoers.d/ops"),
        file_doc("motd", "/etc/motd"),
    )
    got = judge(loaded, *(file_update(n) for n in ("sshd", "sudoers", "sudo-ops", "motd")))
    for name in ("sshd", "sudoers", "sudo-ops"):
        assert effects(got[f"File/{name}"]) == [
            ("fazai-access-files", "ssh-and-sudoers-need-approval", Effect.REQUIRE_APPROVAL)
        ], name
        assert got[f"File/{name}"].approvals_needed == 1
    assert got["File/motd"].verdicts == ()


def test_firewall_rule_delete_and_block_on_the_controllers_interface(tmp_path: Path) -> None:
    def rule(name: str, action: Action, fields: dict[str, Any]) -> PlanItem:
        changes = tuple(Change(k, None, v) for k, v in fields.items())
        return PlanItem("fw", "FirewallRule", name, action, changes)

    got = judge(
        state(tmp_path),
        rule("old", Action.DELETE, {}),
        rule("block-lan", Action.CREATE, {"action": "block", "interface": ["lan"]}),
        rule("reject-lan", Action.CREATE, {"action": "reject", "interface": ["opt1", "lan"]}),
        rule("block-wan", Action.CREATE, {"action": "block", "interface": ["wan"]}),
        rule("pass-lan", Action.CREATE, {"action": "pass", "interface": ["lan"]}),
    )
    assert effects(got["FirewallRule/old"]) == [
        ("fazai-firewall-rules", "rule-delete-needs-approval", Effect.REQUIRE_APPROVAL)
    ]
    for name in ("block-lan", "reject-lan"):
        assert [v.rule for v in got[f"FirewallRule/{name}"].verdicts] == [
            "block-on-controller-interface"
        ]
    assert got["FirewallRule/block-wan"].verdicts == ()  # the controller comes in on lan
    assert got["FirewallRule/pass-lan"].verdicts == ()


def test_block_rule_moved_onto_the_controllers_interface_reads_the_document(
    tmp_path: Path,
) -> None:
    """Only the interface changes: the rule's action (block) comes from its document."""
    doc = {"apiVersion": "fazai.dev/v1alpha1", "kind": "FirewallRule",
           "metadata": {"name": "drop"},
           "spec": {"target": {"node": "fw"}, "action": "block", "interface": "lan"}}  # fmt: skip
    item = PlanItem("fw", "FirewallRule", "drop", Action.UPDATE,
                    (Change("interface", ["wan"], ["lan"]),))  # fmt: skip
    got = judge(state(tmp_path, doc), item)
    assert got["FirewallRule/drop"].approvals_needed == 1


def test_agent_command_needs_approval(tmp_path: Path) -> None:
    item = PlanItem("web-1", "Package", "htop", Action.CREATE, command="apt-get install htop")
    got = judge(state(tmp_path), item, PlanItem("web-1", "Package", "vim", Action.CREATE))
    assert [v.policy for v in got["Package/htop"].verdicts] == ["fazai-agent-proposals"]
    assert got["Package/vim"].verdicts == ()


def test_allow_with_reason_overrides_a_default_and_says_why(tmp_path: Path) -> None:
    allow = policy(
        "retire-games",
        {"name": "games-goes", "effect": "allow", "message": "games is retired",
         "reason": "ticket OPS-12: the games account is unused",
         "overrides": ["fazai-system-users/no-system-user-delete"], "expression":
         'item.kind == "User" && item.name == "games"'},
    )  # fmt: skip
    got = judge(state(tmp_path, allow), user_delete("games", 5), user_delete("lp", 7))
    verdicts = got["User/games"].verdicts
    assert [(v.policy, v.effect, v.reason) for v in verdicts] == [
        ("retire-games", Effect.ALLOW, "ticket OPS-12: the games account is unused")
    ]
    assert not got["User/games"].denied
    assert got["User/lp"].denied  # the allow matched games only


AGENT = "fazai-agent-proposals/agent-needs-approval"
USER_DELETE = "fazai-system-users/no-system-user-delete"


def test_repository_allow_never_overrides_a_repository_deny(tmp_path: Path) -> None:
    deny = policy("no-ftp", {"name": "no", "effect": "deny", "message": "no ftp",
                             "expression": 'item.name == "ftp"'})  # fmt: skip
    allow = policy("yes-ftp", {"name": "yes", "effect": "allow", "message": "ftp",
                               "reason": "legacy", "expression": 'item.name == "ftp"',
                               "overrides": [AGENT]})  # fmt: skip
    got = judge(state(tmp_path, deny, allow), PlanItem("web-1", "Package", "ftp", Action.CREATE))
    assert effects(got["Package/ftp"]) == [("no-ftp", "no", Effect.DENY)]


def test_a_rule_that_errors_at_run_time_fails_closed(tmp_path: Path) -> None:
    """A missing key on this item: the item is denied naming policy, rule and error,
    and an allow does not lift that deny."""
    risky = policy(
        "uid-check",
        {"name": "needs-uid", "effect": "requireApproval", "message": "low uid",
         "expression": "item.fields.uid.desired < 100"},
    )  # fmt: skip
    allow = policy("all-fine", {"name": "ok", "effect": "allow", "message": "fine",
                                "reason": "test", "expression": "true",
                                "overrides": [USER_DELETE]})  # fmt: skip
    item = PlanItem("web-1", "User", "bob", Action.CREATE, (Change("shell", None, "/bin/sh"),))
    got = judge(state(tmp_path, risky, allow), item)
    (verdict,) = got["User/bob"].verdicts
    assert (verdict.policy, verdict.rule, verdict.effect) == ("uid-check", "needs-uid", Effect.DENY)
    assert "could not be evaluated" in verdict.message and "uid" in verdict.message


def test_match_narrows_by_platform_labels_trigger_source_and_action(tmp_path: Path) -> None:
    rule = {"name": "r", "effect": "requireApproval", "message": "m", "expression": "true"}
    loaded = state(
        tmp_path,
        policy("web-only", rule, match={"nodeSelector": {"matchLabels": {"tier": "web"}}}),
        policy("fw-only", rule, match={"platforms": ["opnsense"]}),
        policy("schedule-only", rule, match={"triggers": ["schedule"]}),
        policy("other-source", rule, match={"sources": ["elsewhere"]}),
        policy("deletes", rule, match={"actions": ["delete"], "kinds": ["Package"]}),
    )
    web = PlanItem("web-1", "Package", "vim", Action.CREATE)
    fw = PlanItem("fw", "HostOverride", "www", Action.CREATE)
    got = judge(loaded, web, fw)
    assert [v.policy for v in got["Package/vim"].verdicts] == ["web-only"]
    assert [v.policy for v in got["HostOverride/www"].verdicts] == ["fw-only"]
    scheduled = RunContext("schedule", "auto", "loop", "elsewhere")
    got = judge(loaded, PlanItem("web-1", "Package", "vim", Action.DELETE), run=scheduled)
    assert sorted(v.policy for v in got["Package/vim"].verdicts) == [
        "deletes", "other-source", "schedule-only", "web-only"
    ]  # fmt: skip


def test_strongest_first_and_approvals_is_the_largest_count(tmp_path: Path) -> None:
    loaded = state(
        tmp_path,
        policy("two", {"name": "a", "effect": "requireApproval", "approvals": 2,
                       "message": "two people", "expression": "true"}),
        policy("one", {"name": "b", "effect": "requireApproval", "message": "one",
                       "expression": "true"},
               {"name": "c", "effect": "deny", "message": "no", "expression":
                'item.name == "x"'}),
    )  # fmt: skip
    got = judge(loaded, PlanItem("web-1", "Package", "x", Action.CREATE))
    item = got["Package/x"]
    assert item.verdicts[0].effect is Effect.DENY
    assert item.approvals_needed == 2
    out = controller.policy.load(loaded).evaluate(
        plan(PlanItem("web-1", "Package", "y", Action.CREATE)), RUN, loaded.nodes
    )
    assert out.approvals_needed == 2 and out.denied == ()


def test_noop_and_error_items_are_not_judged(tmp_path: Path) -> None:
    got = judge(state(tmp_path), PlanItem("web-1", "User", "games", Action.NOOP),
                PlanItem("web-1", "User", "lp", Action.ERROR, error="x"))  # fmt: skip
    assert got["User/games"].verdicts == () and got["User/lp"].verdicts == ()


def test_each_expression_compiles_once_per_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = state(tmp_path)
    calls: list[str] = []
    real = cel.compile
    monkeypatch.setattr(cel, "compile", lambda source: calls.append(source) or real(source))
    policies = controller.policy.load(loaded)
    compiled = len(calls)
    assert compiled == sum(len(p.rules) for p in policies.policies)
    items = [user_delete(f"u{i}", i) for i in range(50)]
    policies.evaluate(plan(*items), RUN, loaded.nodes)
    assert len(calls) == compiled


def test_no_secret_reaches_an_expression(tmp_path: Path) -> None:
    """A File's content is not in item.spec: a rule reading it errors (and denies)."""
    reader = policy("peek", {"name": "p", "effect": "requireApproval", "message": "m",
                             "expression": 'item.spec.content == "secret-ish\\n"'})  # fmt: skip
    got = judge(state(tmp_path, file_doc("motd", "/etc/motd"), reader), file_update("motd"))
    (verdict,) = got["File/motd"].verdicts
    assert verdict.effect is Effect.DENY and "secret-ish" not in verdict.message


def test_policies_are_not_planned_on_nodes(tmp_path: Path) -> None:
    loaded = state(tmp_path, policy("p", {"name": "r", "effect": "deny", "message": "m",
                                          "expression": "false"}))  # fmt: skip
    assert [d.kind for d in loaded.controls] == ["Policy"]
    assert all(d.kind != "Policy" for d in loaded.resources)
    assert loaded.resources_for("web-1") == []


def test_an_unvalidated_bad_expression_stops_the_set() -> None:
    doc = Document("Policy", "raw", {"rules": [{"name": "r", "expression": "1 +",
                                                "effect": "deny", "message": "m"}]})  # fmt: skip
    from controller.policy.document import from_document

    with pytest.raises(InvalidInputError):
        PolicySet([from_document(doc)])


def test_a_pruned_state_keeps_its_policies_and_pruned_files_are_judged(tmp_path: Path) -> None:
    """`plan --prune` plans a state with an absent document per owned, undescribed
    object: the repository's policies must come along, and the absent File's path is
    what the sudoers default reads."""
    from datetime import UTC, datetime

    from controller.engine import prune
    from controller.store import OwnedObject

    deny = policy("no-ftp", {"name": "no", "effect": "deny", "message": "no ftp",
                             "expression": 'item.name == "ftp"'})  # fmt: skip
    loaded = state(tmp_path, deny)
    now = datetime.now(UTC)
    owned = [
        OwnedObject("web-1", "File", "ops", "/etc/sudoers.d/ops", 1, now),
        OwnedObject("web-1", "File", "banner", "/etc/issue.net", 1, now),
    ]
    pruned = prune.plan(loaded, {"web-1": owned}, ["web-1"]).state
    assert [d.name for d in pruned.controls] == ["no-ftp"]
    ops = PlanItem("web-1", "File", "ops", Action.DELETE, (Change("mode", "0440", None),))
    banner = PlanItem("web-1", "File", "banner", Action.DELETE, (Change("mode", "0644", None),))
    got = judge(pruned, ops, banner, PlanItem("web-1", "Package", "ftp", Action.CREATE))
    assert [v.policy for v in got["File/ops"].verdicts] == ["fazai-access-files"]
    assert got["File/banner"].verdicts == ()  # its path is known, and not a guarded one
    assert got["Package/ftp"].denied


def _tool_goal(name: str, paths: list[str]) -> list[dict[str, Any]]:
    tool = {"apiVersion": "fazai.dev/v1alpha1", "kind": "Tool", "metadata": {"name": name},
            "spec": {"platform": "linux", "description": "d",
                     "check": {"command": ["test", "-e", "/etc/x"]},
                     "apply": {"script": "true"}, "snapshot": {"paths": paths}}}  # fmt: skip
    goal = {"apiVersion": "fazai.dev/v1alpha1", "kind": "Goal", "metadata": {"name": name},
            "spec": {"target": {"node": "web-1"}, "description": "d",
                     "checks": [{"name": "c", "command": ["test", "-e", "/etc/x"],
                                 "expect": {"exitCode": 0}}],
                     "resolvedBy": {"tool": name}}}  # fmt: skip
    return [tool, goal]


def test_a_tool_that_may_change_login_files_needs_approval_as_a_file_there_does(
    tmp_path: Path,
) -> None:
    loaded = state(
        tmp_path,
        *_tool_goal("sshd-dropin", ["/etc/ssh/sshd_config.d/50-x.conf"]),
        *_tool_goal("motd", ["/etc/motd"]),
    )
    got = judge(
        loaded,
        PlanItem("web-1", "Goal", "sshd-dropin", Action.UPDATE),
        PlanItem("web-1", "Goal", "motd", Action.UPDATE),
    )
    access = ("fazai-access-files", "ssh-and-sudoers-need-approval", Effect.REQUIRE_APPROVAL)
    assert effects(got["Goal/sshd-dropin"]) == [access]
    assert effects(got["Goal/motd"]) == []
