"""What merging a pull request would change on the live nodes, and what it would not.

Both the base and the head are planned against the live nodes (one read of each node
serves both, see :mod:`observe`). The head's plan is what merging would do; each of its
changes is marked by comparing it with the base's plan of the same resource:

* ``introduced``: the base would leave the resource alone; the head brings the change;
* ``changed``: the base would change the resource too, but differently;
* ``pending``: the base would do exactly the same: drift that exists whatever the pull
  request says (merging it does not cause it, and not merging it does not avoid it).

The base's changes the head no longer makes are listed as ``dropped``.

Both plans go through the pipeline up to its policy stage (nothing is written): each
item carries the verdicts of its own side's policies, for a run that merging would
start (``pipeline.context.review``), so the comment can say what a policy will deny or
hold for approval.

Only the base is trusted with how to reach a node: a head that adds a node or changes a
Node's connection (address, URL, port, user, keys, secret references, TLS) would make
the controller connect, with its credentials, where the unmerged pull request says. Such
a node is not read (an ``UntrustedNodeError`` in the plan) unless ``trust_head`` is set.

Nor is the head trusted with what runs on a node: a Goal's checks run as the node's
user, and whether each passes shows in the comment, so checks the base does not run as
they are (a goal the head adds, or changes in any way) would make every push a question
answered by the node (does /etc/shadow match this pattern?). Such goals are listed as
unresolved, not run, unless ``trust_head`` is set.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from controller.engine import plan as planning
from controller.engine.plan import Observe
from controller.errors import UntrustedNodeError
from controller.forges.observe import SharedReads, connection
from controller.model.document import Document
from controller.model.state import DesiredState, target_nodes
from controller.pipeline import context
from controller.pipeline import planning as pipeline
from controller.plan.diff import Action
from controller.plan.items import Plan, PlanItem
from controller.plan.review import Review, classify
from controller.source.tree import SourceTree

GOAL = "Goal"
NOT_RUN = (
    "not run in a review: the pull request adds or changes this goal, and its checks "
    "run on the node only once merged (--trust-head runs them now)"
)


def untrusted(base: DesiredState | None, head: DesiredState) -> dict[str, str]:
    """Head nodes whose connection the base does not vouch for, with the reason."""
    out: dict[str, str] = {}
    for name, doc in head.nodes.items():
        trusted = base.nodes.get(name) if base is not None else None
        if trusted is None:
            out[name] = "the pull request adds this node"
            continue
        ours, theirs = connection(doc), connection(trusted)
        changed = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
        if changed:
            out[name] = f"the pull request changes how to reach this node ({', '.join(changed)})"
    return out


def untrusted_goals(base: DesiredState | None, head: DesiredState) -> tuple[Document, ...]:
    """The head's Goals whose checks the base does not run as they are: another spec, or
    nodes the base does not run them on (a label the head gives a node can widen a
    selector's reach)."""
    if base is None:
        return tuple(d for d in head.resources if d.kind == GOAL)
    trusted = {d.name: d for d in base.resources if d.kind == GOAL}

    def held(goal: Document) -> bool:
        ours = trusted.get(goal.name)
        if ours is None or ours.spec != goal.spec:
            return True
        return not set(target_nodes(goal, head.nodes)) <= set(target_nodes(ours, base.nodes))

    return tuple(d for d in head.resources if d.kind == GOAL and held(d))


def _without(state: DesiredState, held: Sequence[Document]) -> DesiredState:
    if not held:
        return state
    kept = [r for r in state.resources if not any(r is h for h in held)]
    return dataclasses.replace(state, resources=kept)


def _with_held(plan: Plan, held: Sequence[Document], head: DesiredState) -> Plan:
    """``plan`` with each held goal as an unresolved item on the nodes it targets (those
    that could be read: a node that failed says so already)."""
    if not held:
        return plan
    nodes = []
    for node in plan.nodes:
        extra = tuple(
            PlanItem(node.node, GOAL, d.name, Action.UNRESOLVED, (), reason=NOT_RUN)
            for d in held
            if node.node in target_nodes(d, head.nodes)
        )
        if extra and node.error is None:
            items = tuple(sorted(node.items + extra, key=lambda i: (i.kind, i.name)))
            node = dataclasses.replace(node, items=items)
        nodes.append(node)
    return dataclasses.replace(plan, nodes=tuple(nodes))


async def build(
    base: DesiredState | None,
    head: DesiredState,
    *,
    base_source: str = "",
    base_error: str | None = None,
    only: Sequence[str] = (),
    concurrency: int = planning.DEFAULT_CONCURRENCY,
    show_unmanaged: bool = False,
    trust_head: bool = False,
    progress: planning.ProgressCallback | None = None,
    author: str | None = None,
) -> Review:
    """Plan ``head`` and ``base`` (None: it could not be loaded, ``base_error`` says why)
    against one read of each node, check both with their policies (``author``: who the
    pull request's changes come from, the run's actor), and mark the head's changes."""
    held = () if trust_head else untrusted_goals(base, head)
    full_head, head = head, _without(head, held)
    states = [head] if base is None else [base, head]
    shared = SharedReads(states)
    refused = {} if trust_head else untrusted(base, full_head)
    options: dict[str, Any] = {
        "only": only,
        "concurrency": concurrency,
        "show_unmanaged": show_unmanaged,
    }
    run = context.review(author, head.source.description)
    head_run = pipeline.plan(
        head,
        run,
        observe=_guarded(shared.observer(head), refused),
        progress=progress,
        **options,
    )
    if base is None:
        head_plan = _with_held((await head_run).plan, held, full_head)
        return Review(head_plan, None, base_source, None, base_error, reads=dict(shared.reads))
    base_checked, head_checked = await asyncio.gather(
        pipeline.plan(base, run, observe=shared.observer(base), **options), head_run
    )
    base_plan = base_checked.plan
    head_plan = _with_held(head_checked.plan, held, full_head)
    markings, before, dropped = classify(head_plan, base_plan)
    return Review(
        head_plan,
        base_plan,
        base_source or base_plan.source,
        base_plan.revision,
        None,
        markings,
        before,
        dropped,
        dict(shared.reads),
    )


def _guarded(observe: Observe, refused: Mapping[str, str]) -> Observe:
    async def guarded(node: Document, resources: Sequence[Document], tree: SourceTree) -> Any:
        reason = refused.get(node.name)
        if reason is not None:
            raise UntrustedNodeError(
                node.name,
                f"not read: {reason}; only the base's connection details are trusted "
                "(--trust-head reads it as the head says)",
            )
        return await observe(node, resources, tree)

    return guarded
