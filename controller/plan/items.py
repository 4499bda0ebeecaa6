"""The plan's types: what applying the desired state would change, per node and resource
instance. Plans are immutable values, typed from the engine that builds them to the edges
that render them (text, markdown, JSON, the store, the API): JSON is made only there, by
``plan_json`` beside this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.diagnostics import Diagnostic
from controller.errors import RetryDecision
from controller.plan.diff import WRITES, Action, Change
from controller.plan.verdicts import Effect, Verdict


@dataclass(frozen=True)
class PlanItem:
    node: str
    kind: str
    name: str
    action: Action
    changes: tuple[Change, ...] = ()
    error: str | None = None
    adopt: str | None = None  # the id of the existing object the document takes over
    verdicts: tuple[Verdict, ...] = ()  # what the policies said of this item
    # The command or tool call the agent proposes for this item (None: a typed change of
    # a document); policies see it as ``command``.
    command: str | None = None
    # Why an UNRESOLVED item is left for the agent (no handler can make it so).
    reason: str | None = None

    @property
    def writes(self) -> bool:
        """Whether applying the plan would write this item: a typed change, or what the
        agent proposes. An unresolved difference with no proposal writes nothing."""
        return self.action in WRITES or (
            self.action is Action.UNRESOLVED and self.command is not None
        )

    @property
    def denied(self) -> tuple[Verdict, ...]:
        return tuple(v for v in self.verdicts if v.effect is Effect.DENY)

    @property
    def approvals_needed(self) -> int:
        """How many distinct approvers this item needs before it may be applied (0: none)."""
        return max(
            (v.approvals for v in self.verdicts if v.effect is Effect.REQUIRE_APPROVAL), default=0
        )


@dataclass(frozen=True)
class NodePlan:
    node: str
    platform: str
    items: tuple[PlanItem, ...] = ()
    error: str | None = None  # the node as a whole could not be read
    error_type: str | None = None
    seconds: float = 0.0
    # What the read's failure says about retrying (controller.errors), for the loop.
    retry: RetryDecision | None = field(default=None, compare=False)

    @property
    def changed(self) -> tuple[PlanItem, ...]:
        quiet = (Action.NOOP, Action.ERROR, Action.UNMANAGED)
        return tuple(i for i in self.items if i.action not in quiet)

    @property
    def writes(self) -> tuple[PlanItem, ...]:
        """The changes an apply would write (the differences less what is unresolved)."""
        return tuple(i for i in self.items if i.writes)

    @property
    def unresolved(self) -> tuple[PlanItem, ...]:
        return tuple(i for i in self.items if i.action is Action.UNRESOLVED)

    @property
    def failed(self) -> bool:
        return self.error is not None or any(i.action is Action.ERROR for i in self.items)


@dataclass(frozen=True)
class Plan:
    source: str
    revision: str | None
    nodes: tuple[NodePlan, ...]
    warnings: tuple[Diagnostic, ...] = field(default=())

    @property
    def has_changes(self) -> bool:
        return any(n.changed for n in self.nodes)

    @property
    def has_writes(self) -> bool:
        """Whether an apply would write anything (unresolved differences are not written)."""
        return any(n.writes for n in self.nodes)

    @property
    def unresolved(self) -> tuple[PlanItem, ...]:
        return tuple(i for n in self.nodes for i in n.unresolved)

    @property
    def has_errors(self) -> bool:
        return any(n.failed for n in self.nodes)

    @property
    def exit_code(self) -> int:
        """diff(1) style: 0 in sync, 1 differences, 2 trouble."""
        if self.has_errors:
            return 2
        return 1 if self.has_changes else 0

    @property
    def denied(self) -> tuple[PlanItem, ...]:
        """Items that would be written and a policy denies: while there is one, nothing of
        the plan is applied. A verdict on an item that writes nothing (in sync, unmanaged,
        not comparable) gates nothing, as the gate counts it."""
        return tuple(i for n in self.nodes for i in n.writes if i.denied)

    @property
    def approvals_needed(self) -> int:
        """How many distinct approvers the plan's changes need before it may be applied
        (0: none); items that write nothing need none."""
        return max((i.approvals_needed for n in self.nodes for i in n.writes), default=0)

    def counts(self) -> dict[str, int]:
        out = {a.value: 0 for a in Action}
        for node in self.nodes:
            for item in node.items:
                out[item.action.value] += 1
        return out
