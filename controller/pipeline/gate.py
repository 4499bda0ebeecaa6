"""What the policies' verdicts let through.

Deny wins over everything: while one item that would be written is denied, nothing of
the plan is written, on any node. ``requireApproval`` turns an automatic apply into a
pending approval, even in ``auto`` mode; only an approval given through ``serve``'s API
releases it (a person answering the CLI's y/N is not a second person). Verdicts on items
that write nothing (in sync, unmanaged, not comparable, unresolved with no proposal)
gate nothing: nothing of theirs would be written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from controller.plan.items import NodePlan, Plan, PlanItem
from controller.plan.verdicts import Effect, RunContext, Verdict


class Decision(StrEnum):
    IN_SYNC = "in-sync"  # nothing to write
    ERRORS = "errors"  # some node or resource could not be read or compared
    DENIED = "denied"  # a policy denies an item: nothing is written
    APPROVAL = "approval"  # a policy asks for approval first
    APPLY = "apply"  # may be written as it is


@dataclass(frozen=True)
class Checked:
    """A plan after the policy stage, and the run it was checked for. Made only by the
    stage (``pipeline.policy``), which stamps it with the node plans it judged: the gate
    admits only a plan whose nodes are those very ones (see ``policy.vouches``)."""

    plan: Plan
    run: RunContext
    stamp: object = field(default=None, repr=False, compare=False)

    def narrowed(self, nodes: Sequence[NodePlan]) -> Checked:
        """The same judgment of some of its nodes (``nodes``: taken from ``plan.nodes``)."""
        part = Plan(self.plan.source, self.plan.revision, tuple(nodes), self.plan.warnings)
        return dataclasses.replace(self, plan=part)

    @property
    def denied(self) -> tuple[PlanItem, ...]:
        return self.plan.denied  # the items that would be written, as plan outputs count

    @property
    def approvals_needed(self) -> int:
        return approvals_needed(self.plan.nodes)

    @property
    def decision(self) -> Decision:
        if self.denied:
            return Decision.DENIED
        if self.plan.has_errors:
            return Decision.ERRORS
        if not self.plan.has_writes:
            return Decision.IN_SYNC  # unresolved differences may be left: none is written
        if self.approvals_needed:
            return Decision.APPROVAL
        return Decision.APPLY

    def denials(self) -> tuple[str, ...]:
        """One line per denied item: what, and each policy's word on it."""
        return tuple(_line(i, i.denied) for i in self.denied)

    def approval_reasons(self) -> tuple[str, ...]:
        return reasons(self.plan.nodes)


def needs_approval(node: NodePlan) -> bool:
    return any(i.approvals_needed for i in node.writes)


def approvals_needed(nodes: tuple[NodePlan, ...] | list[NodePlan]) -> int:
    """How many distinct approvers the changes of ``nodes`` need (0: none)."""
    return max((i.approvals_needed for n in nodes for i in n.writes), default=0)


def reasons(nodes: tuple[NodePlan, ...] | list[NodePlan]) -> tuple[str, ...]:
    """Why ``nodes`` wait for approval: one line per item a policy holds back."""
    return tuple(
        _line(i, tuple(v for v in i.verdicts if v.effect is Effect.REQUIRE_APPROVAL))
        for n in nodes
        for i in n.writes
        if i.approvals_needed
    )


def _line(item: PlanItem, verdicts: tuple[Verdict, ...]) -> str:
    said = "; ".join(f"{v.policy}/{v.rule}: {v.message}" for v in verdicts)
    return f"{item.node}: {item.action.value} {item.kind}/{item.name}: {said}"
