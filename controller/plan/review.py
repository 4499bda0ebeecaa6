"""A pull request's review, as data: the head's plan, with each change marked by how it
compares with the base's plan of the same resource (see forges/review.py for how the two
plans are made). A leaf beside the plan types, so that the outputs render a review
without importing the forges that make one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from controller.plan.diff import Action
from controller.plan.items import Plan, PlanItem

Key = tuple[str, str, str]  # node, kind, name
QUIET = (Action.NOOP, Action.UNMANAGED)


class Marking(StrEnum):
    INTRODUCED = "introduced"
    CHANGED = "changed"
    PENDING = "pending"


@dataclass(frozen=True)
class Review:
    head: Plan
    base: Plan | None
    base_source: str
    base_revision: str | None
    base_error: str | None = None  # the base could not be planned; nothing is marked
    markings: Mapping[Key, Marking] = field(default_factory=dict)
    before: Mapping[Key, PlanItem] = field(default_factory=dict)  # the base's, for changed
    dropped: tuple[PlanItem, ...] = ()
    reads: Mapping[str, int] = field(default_factory=dict)  # live reads per node

    @property
    def exit_code(self) -> int:
        return self.head.exit_code

    def marking(self, item: PlanItem) -> Marking | None:
        return self.markings.get(key(item))

    def counts(self) -> dict[str, int]:
        out = {m.value: 0 for m in Marking}
        for marking in self.markings.values():
            out[marking.value] += 1
        out["dropped"] = len(self.dropped)
        return out


def key(item: PlanItem) -> Key:
    return (item.node, item.kind, item.name)


def same(a: PlanItem, b: PlanItem) -> bool:
    """The same action with the same field changes (diff texts aside: they follow), and
    the same reason to be unresolved."""
    if (
        a.action is not b.action
        or a.error != b.error
        or a.reason != b.reason
        or len(a.changes) != len(b.changes)
    ):
        return False
    return all(
        (x.field, x.live, x.desired) == (y.field, y.live, y.desired)
        for x, y in zip(a.changes, b.changes, strict=True)
    )


def classify(
    head: Plan, base: Plan
) -> tuple[dict[Key, Marking], dict[Key, PlanItem], tuple[PlanItem, ...]]:
    """Markings of the head's changes, the base's items behind ``changed`` ones, and the
    base's changes the head drops. A node one side could not read is not compared."""
    head_nodes = {n.node: n for n in head.nodes}
    base_nodes = {n.node: n for n in base.nodes}
    markings: dict[Key, Marking] = {}
    before: dict[Key, PlanItem] = {}
    for node in head.nodes:
        other = base_nodes.get(node.node)
        if node.error or (other is not None and other.error):
            continue
        theirs = {key(i): i for i in other.items} if other else {}
        for item in node.items:
            if item.action in QUIET:
                continue
            old = theirs.get(key(item))
            if old is None or old.action in QUIET:
                markings[key(item)] = Marking.INTRODUCED
            elif same(old, item):
                markings[key(item)] = Marking.PENDING
            else:
                markings[key(item)] = Marking.CHANGED
                before[key(item)] = old
    dropped: list[PlanItem] = []
    for node in base.nodes:
        other = head_nodes.get(node.node)
        if node.error or (other is not None and other.error):
            continue
        ours = {key(i): i for i in other.items} if other else {}
        for item in node.items:
            if item.action in QUIET:
                continue
            new = ours.get(key(item))
            if new is None or new.action in QUIET:
                dropped.append(item)
    return markings, before, tuple(dropped)
