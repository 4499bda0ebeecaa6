"""The policy stage's one seam: the evaluator in ``controller.policy`` gives every plan
item the verdicts of the repository's Policy documents and the shipped defaults.

Everything else in the pipeline reads verdicts off the plan's items; only this module
knows how they are made.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Protocol

from controller.model.document import Document
from controller.model.state import DesiredState
from controller.plan.items import NodePlan, Plan
from controller.plan.verdicts import RunContext


class PolicySet(Protocol):
    def evaluate(self, plan: Plan, run: RunContext, nodes: Mapping[str, Document]) -> Plan: ...


def _evaluator() -> ModuleType | None:
    try:
        return importlib.import_module("controller.policy")
    except ModuleNotFoundError as exc:
        if exc.name != "controller.policy":
            raise  # the evaluator is there but broken: never plan without it
        return None


def register() -> None:
    """Make the Policy kind known to the loader (importing the evaluator registers it, as
    a platform registers its kinds): called before any desired state is loaded."""
    _evaluator()


def load(state: DesiredState) -> PolicySet | None:
    """The policies of ``state`` (its Policy documents and the shipped defaults); None
    only where this build has no evaluator at all."""
    module = _evaluator()
    if module is None:
        return None
    policies: PolicySet = module.load(state)
    return policies


def check(state: DesiredState, plan: Plan, run: RunContext) -> Plan:
    """``plan`` with the verdicts of ``state``'s policies for ``run``."""
    return check_by(state, plan, lambda node: run)


def check_by(state: DesiredState, plan: Plan, run_for: Callable[[str], RunContext]) -> Plan:
    """``plan`` with verdicts, each node checked for its own run (serve: a node's mode is
    its own). The policies are loaded once; nodes keep their order."""
    policies = load(state)
    if policies is None or not plan.nodes:
        return plan
    groups: dict[RunContext, list[NodePlan]] = {}
    for node in plan.nodes:
        groups.setdefault(run_for(node.node), []).append(node)
    checked: dict[str, NodePlan] = {}
    for run, nodes in groups.items():
        part = Plan(plan.source, plan.revision, tuple(nodes), plan.warnings)
        for node in policies.evaluate(part, run, state.nodes).nodes:
            checked[node.node] = node
    return Plan(
        plan.source, plan.revision, tuple(checked[n.node] for n in plan.nodes), plan.warnings
    )
