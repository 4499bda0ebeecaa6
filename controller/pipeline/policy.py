"""The policy stage's one seam: the evaluator in ``controller.policy`` gives every plan
item the verdicts of the repository's Policy documents and the shipped defaults.

Everything else in the pipeline reads verdicts off the plan's items; only this module
knows how they are made.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Protocol

from controller import policy as evaluator
from controller.errors import FazaiError
from controller.model.document import Document
from controller.model.state import DesiredState
from controller.pipeline.errors import PolicyError
from controller.pipeline.gate import Checked
from controller.plan.items import NodePlan, Plan, PlanItem
from controller.plan.verdicts import RunContext
from controller.policy.stage import BudgetExceeded
from controller.store.redact import redact


class PolicySet(Protocol):
    def evaluate(self, plan: Plan, run: RunContext, nodes: Mapping[str, Document]) -> Plan: ...


class _Stamp:
    """What the stage vouches for: the node plans it judged (by identity)."""

    __slots__ = ("nodes",)

    def __init__(self, nodes: tuple[NodePlan, ...]) -> None:
        self.nodes = frozenset(id(n) for n in nodes)


def judged(plan: Plan, run: RunContext) -> Checked:
    """``plan``, just given its verdicts by this stage, as the gate admits it."""
    return Checked(plan, run, _Stamp(plan.nodes))


def vouches(checked: Checked) -> bool:
    """Whether ``checked`` came out of this stage: stamped by it, each node one it judged
    (a plan made or altered after the stage, or never passed through it, is not)."""
    stamp = checked.stamp
    return isinstance(stamp, _Stamp) and all(id(n) in stamp.nodes for n in checked.plan.nodes)


def load(state: DesiredState) -> PolicySet:
    """The policies of ``state``: its Policy documents and the shipped defaults."""
    policies: PolicySet = evaluator.load(state)
    return policies


def check(
    state: DesiredState, plan: Plan, run: RunContext, policies_of: DesiredState | None = None
) -> Plan:
    """``plan`` with the verdicts of ``state``'s policies for ``run``."""
    return check_by(state, plan, lambda node: run, policies_of)


def check_by(
    state: DesiredState,
    plan: Plan,
    run_for: Callable[[str], RunContext],
    policies_of: DesiredState | None = None,
) -> Plan:
    """``plan`` with verdicts, each node checked for its own run (serve: a node's mode is
    its own). The policies are loaded once, from ``policies_of`` when given (an approval:
    the source's latest state), else from ``state``; nodes keep their order. Policies
    that cannot be loaded fail closed, as an evaluator that fails does: PolicyError."""
    try:
        policies = load(policies_of or state)
    except PolicyError:
        raise
    except Exception as exc:  # defaults unreadable, a broken document: never plan without
        raise PolicyError(
            f"the policies could not be loaded ({type(exc).__name__}: {exc}); nothing is written"
        ) from exc
    if not plan.nodes:
        return plan
    groups: dict[RunContext, list[NodePlan]] = {}
    for node in plan.nodes:
        groups.setdefault(run_for(node.node), []).append(node)
    checked: dict[str, NodePlan] = {}
    for run, nodes in groups.items():
        for node in _evaluate(policies, Plan(plan.source, plan.revision, tuple(nodes)), run, state):
            checked[node.node] = node
    return Plan(
        plan.source, plan.revision, tuple(checked[n.node] for n in plan.nodes), plan.warnings
    )


def _evaluate(
    policies: PolicySet, part: Plan, run: RunContext, state: DesiredState
) -> tuple[NodePlan, ...]:
    """``part``'s nodes with their items' verdicts. The evaluator sees the values as the
    plan's JSON shows them (secrets masked: no rule can read one), and its verdicts are
    put on the plan's own items. An evaluator that fails fails closed: PolicyError, and
    nothing of the plan is written."""
    try:
        judged = policies.evaluate(_shown(part), run, state.nodes)
        return tuple(
            dataclasses.replace(
                node,
                items=tuple(
                    dataclasses.replace(item, verdicts=verdict.verdicts)
                    for item, verdict in zip(node.items, seen.items, strict=True)
                ),
            )
            for node, seen in zip(part.nodes, judged.nodes, strict=True)
        )
    except FazaiError:
        raise
    except Exception as exc:  # a bug of the evaluator must not let a write through
        error = PolicyError(
            f"the policies could not be evaluated ({type(exc).__name__}: {exc}); nothing is written"
        )
        # The budget runs out on a loaded machine too: the next pass may finish in time.
        error.retryable = isinstance(exc, BudgetExceeded)
        raise error from exc


def _shown(plan: Plan) -> Plan:
    def item(i: PlanItem) -> PlanItem:
        changes = tuple(
            dataclasses.replace(c, live=redact(c.live), desired=redact(c.desired))
            for c in i.changes
        )
        return dataclasses.replace(i, changes=changes)

    nodes = tuple(dataclasses.replace(n, items=tuple(item(i) for i in n.items)) for n in plan.nodes)
    return dataclasses.replace(plan, nodes=nodes)
