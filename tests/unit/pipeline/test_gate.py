"""The pipeline's gate and its writers' refusals, on plans whose items carry verdicts
(the evaluator that makes them lives in controller.policy; here they are given)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

from controller.model import loader
from controller.model.document import Document
from controller.model.state import DesiredState
from controller.pipeline import context, policy, writes
from controller.pipeline.errors import ApprovalRequired, PolicyDenied, PolicyError
from controller.pipeline.gate import Checked, Decision
from controller.plan import plan_json
from controller.plan.diff import Action, Change
from controller.plan.items import NodePlan, Plan, PlanItem
from controller.plan.verdicts import Effect, RunContext, Verdict
from controller.source.open import open_source
from controller.store import Command, StateStore, Trigger

RUN = RunContext("cli", "apply", "alice")
DENY = Verdict("system-users", "uid", Effect.DENY, "never delete a system user")
HOLD = Verdict("fw-deletes", "0", Effect.REQUIRE_APPROVAL, "a second person approves", 2)


def item(action: Action, *verdicts: Verdict, name: str = "svc") -> PlanItem:
    return PlanItem(
        "web-1", "User", name, action, (Change("uid", 500, None),), None, None, verdicts
    )


def checked(*items: PlanItem) -> Checked:
    # The verdicts are given here, as the stage's evaluator would: stamped as judged.
    return policy.judged(Plan("here", None, (NodePlan("web-1", "linux", items),)), RUN)


def test_a_deny_on_a_write_stops_the_plan_with_its_message() -> None:
    gate = checked(item(Action.DELETE, DENY), item(Action.CREATE, name="other"))
    assert gate.decision is Decision.DENIED
    assert gate.denials() == (
        "web-1: delete User/svc: system-users/uid: never delete a system user",
    )
    with pytest.raises(PolicyDenied) as refused:
        writes.admit(gate, granted=5)  # no number of approvals lifts a deny
    assert "never delete a system user" in str(refused.value)


def test_a_verdict_on_an_item_that_writes_nothing_gates_nothing() -> None:
    gate = checked(item(Action.NOOP, DENY), item(Action.CREATE, name="other"))
    assert gate.decision is Decision.APPLY
    writes.admit(gate)


def test_require_approval_needs_as_many_approvals_as_the_policy_asks() -> None:
    gate = checked(item(Action.DELETE, HOLD))
    assert (gate.decision, gate.approvals_needed) == (Decision.APPROVAL, 2)
    assert gate.approval_reasons() == (
        "web-1: delete User/svc: fw-deletes/0: a second person approves",
    )
    for granted in (0, 1):
        with pytest.raises(ApprovalRequired) as refused:
            writes.admit(gate, granted=granted)
        assert refused.value.required == 2
    writes.admit(gate, granted=2)


def test_deny_wins_over_require_approval_and_errors() -> None:
    broken = PlanItem("web-1", "File", "f", Action.ERROR, error="unreadable")
    assert checked(item(Action.DELETE, HOLD, DENY), broken).decision is Decision.DENIED


def _state(tmp_path: Path) -> DesiredState:
    docs = [
        {"apiVersion": "fazai.dev/v1alpha1", "kind": "Node", "metadata": {"name": n},
         "spec": {"platform": "linux", "address": "192.0.2.1"}}
        for n in ("web-1", "web-2")
    ]  # fmt: skip
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "nodes.yaml").write_text(yaml.safe_dump_all(docs))
    return loader.load(open_source(str(tmp_path / "docs"), None, ""))


def test_a_refused_apply_starts_no_run_and_touches_no_node(tmp_path: Path) -> None:
    # The node's address is unroutable: had the engine started, it would record a run.
    state = _state(tmp_path)
    with StateStore(tmp_path / "state.db") as store:
        for gate in (checked(item(Action.DELETE, DENY)), checked(item(Action.DELETE, HOLD))):
            with pytest.raises((PolicyDenied, ApprovalRequired)):
                asyncio.run(writes.apply(state, gate, store))
        assert store.list_runs() == []


def test_a_rollback_is_judged_as_the_inverse_of_the_run_it_undoes(tmp_path: Path) -> None:
    state = _state(tmp_path)
    made = Plan(
        "here",
        None,
        (
            NodePlan("web-1", "linux", (
                PlanItem("web-1", "User", "svc", Action.CREATE, (Change("uid", None, 500),)),
                PlanItem("web-1", "File", "motd", Action.UPDATE, (Change("sha256", "aa", "bb"),)),
                PlanItem("web-1", "File", "same", Action.NOOP),
            )),
            NodePlan("web-2", "linux", (
                PlanItem("web-2", "User", "old", Action.DELETE, (Change("uid", 600, None),)),
            )),
        ),
    )  # fmt: skip
    recorded = plan_json.to_dict(made)  # as the engine records a run's plan
    with StateStore(tmp_path / "state.db") as store:
        run_id = store.start_run(Trigger.CLI, Command.APPLY, "here", None, recorded)
        for node in ("web-1", "web-2"):
            store.begin_transaction(run_id, node)
        undo = writes.rollback_plan(state, store, run_id)
        only = writes.rollback_plan(state, store, run_id, ["web-2"])
    items = {(i.node, i.kind, i.name): i for n in undo.nodes for i in n.items}
    assert {k: v.action for k, v in items.items()} == {
        ("web-1", "User", "svc"): Action.DELETE,  # its create is undone
        ("web-1", "File", "motd"): Action.UPDATE,
        ("web-2", "User", "old"): Action.CREATE,  # its delete is undone
    }
    assert items[("web-1", "User", "svc")].changes == (Change("uid", 500, None),)
    assert items[("web-1", "File", "motd")].changes == (Change("sha256", "bb", "aa"),)
    assert [n.node for n in only.nodes] == ["web-2"]


class _Recording:
    """A stand-in evaluator at the seam: records the runs it is asked about and gives
    every item of a node in ``auto`` mode a requireApproval."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def evaluate(self, plan: Plan, run: RunContext, nodes: Mapping[str, Document]) -> Plan:
        self.calls.append((run.mode, tuple(n.node for n in plan.nodes)))
        held = tuple(
            NodePlan(n.node, n.platform, tuple(
                PlanItem(i.node, i.kind, i.name, i.action, i.changes, verdicts=(HOLD,))
                for i in n.items
            )) if run.mode == "auto" else n
            for n in plan.nodes
        )  # fmt: skip
        return Plan(plan.source, plan.revision, held, plan.warnings)


def test_each_node_is_checked_for_its_own_mode_and_keeps_its_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = _state(tmp_path)
    evaluator = _Recording()
    monkeypatch.setattr(policy, "load", lambda state: evaluator)
    nodes = tuple(
        NodePlan(n, "linux", (PlanItem(n, "User", "u", Action.CREATE),))
        for n in ("web-1", "web-2", "web-3")
    )
    modes = {"web-1": "auto", "web-2": "manual", "web-3": "auto"}
    runs = {m: context.serve(Trigger.WATCH, m, None) for m in ("auto", "manual")}
    out = policy.check_by(state, Plan("here", None, nodes), lambda n: runs[modes[n]])
    assert sorted(evaluator.calls) == [("auto", ("web-1", "web-3")), ("manual", ("web-2",))]
    assert [n.node for n in out.nodes] == ["web-1", "web-2", "web-3"]
    assert [bool(n.items[0].verdicts) for n in out.nodes] == [True, False, True]
    assert runs["auto"] == RunContext("commit", "auto", "fazai-serve")


def test_the_cli_run_is_the_os_user() -> None:
    import getpass

    assert context.cli("apply") == RunContext("cli", "apply", getpass.getuser())


class _Nosy:
    """An evaluator that keeps what it was shown, and fails where told to."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.seen: list[object] = []

    def evaluate(self, plan: Plan, run: RunContext, nodes: Mapping[str, Document]) -> Plan:
        if self.fail:
            raise ValueError("cannot convert")
        self.seen += [c.desired for n in plan.nodes for i in n.items for c in i.changes]
        return Plan(plan.source, plan.revision, tuple(
            NodePlan(n.node, n.platform, tuple(
                PlanItem(i.node, i.kind, i.name, i.action, i.changes, verdicts=(DENY,))
                for i in n.items
            )) for n in plan.nodes
        ))  # fmt: skip


def test_the_evaluator_sees_no_secret_and_its_verdicts_land_on_the_plans_own_items(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from controller.secrets import Secret

    evaluator = _Nosy()
    monkeypatch.setattr(policy, "load", lambda state: evaluator)
    secret = {"apiKey": Secret("s3cr3t"), "port": 22}
    own = PlanItem("web-1", "File", "f", Action.UPDATE, (Change("auth", None, secret),))
    out = policy.check(
        _state(tmp_path), Plan("here", None, (NodePlan("web-1", "linux", (own,)),)), RUN
    )
    assert evaluator.seen == [{"apiKey": "***", "port": 22}]
    (judged,) = out.nodes[0].items
    assert judged.verdicts == (DENY,) and judged.changes == own.changes  # unmasked, as planned


def test_an_evaluator_that_fails_fails_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from controller.pipeline.errors import PolicyError

    monkeypatch.setattr(policy, "load", lambda state: _Nosy(fail=True))
    plan = Plan("here", None, (NodePlan("web-1", "linux", (item(Action.CREATE),)),))
    with pytest.raises(PolicyError, match=r"could not be evaluated.*nothing is written"):
        policy.check(_state(tmp_path), plan, RUN)


def test_verdicts_on_items_that_write_nothing_count_nowhere() -> None:
    # A deny on an unmanaged object (or one in sync) gates nothing: the plan's outputs
    # and the gate agree that nothing of it is denied or waits.
    deny = Verdict("no-foreign", "the-rule", Effect.DENY, "foreign rules")
    held = Verdict("hold", "the-rule", Effect.REQUIRE_APPROVAL, "look first", approvals=2)
    quiet = (
        PlanItem("fw", "FirewallRule", "theirs", Action.UNMANAGED, verdicts=(deny,)),
        PlanItem("fw", "FirewallRule", "same", Action.NOOP, verdicts=(held,)),
    )
    plan = Plan("here", None, (NodePlan("fw", "opnsense", quiet),))
    checked = policy.judged(plan, RunContext("cli", "apply", "me", "here"))
    assert (plan.denied, plan.approvals_needed) == ((), 0)
    assert (checked.denied, checked.approvals_needed) == ((), 0)
    assert checked.decision is Decision.IN_SYNC
    writes.admit(checked)  # lets it through: nothing of it would be written


def test_the_gate_admits_only_what_came_out_of_the_policy_stage() -> None:
    plan = Plan("here", None, (NodePlan("web-1", "linux", (item(Action.CREATE),)),))
    with pytest.raises(PolicyError, match="did not pass the policy stage"):
        writes.admit(Checked(plan, RUN))  # never judged
    judged = policy.judged(plan, RUN)
    writes.admit(judged)
    writes.admit(judged.narrowed(judged.plan.nodes))  # some of what was judged
    # A node swapped in after the stage (a deny taken off, say) is not vouched for.
    swapped = dataclasses.replace(
        judged, plan=Plan("here", None, (NodePlan("web-1", "linux", (item(Action.DELETE),)),))
    )
    with pytest.raises(PolicyError, match="did not pass the policy stage"):
        writes.admit(swapped)
