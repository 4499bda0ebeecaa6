"""Building a plan: what applying the desired state would change, per node and resource
instance (the plan's types are ``controller.plan.items``).

Building one reads every selected node concurrently (bounded),
one bulk read each; a node that cannot be read gets an error entry while the others are
still planned.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

from controller import events, providers
from controller.errors import FazaiError, NodeError, retry_decision
from controller.hashes import mask_hashes
from controller.model.document import Document
from controller.model.state import DesiredState
from controller.plan.diff import Action, Change, Observed, compare
from controller.plan.items import NodePlan, Plan, PlanItem
from controller.providers.base import Observation
from controller.source.tree import SourceTree

DEFAULT_CONCURRENCY = 32


ProgressCallback = Callable[[str, NodePlan | None], None]
Observe = Callable[[Document, Sequence[Document], SourceTree], Awaitable[Observation]]
"""How a node's live state is read: its provider's ``observe`` unless a caller (a review
planning two states against one read of each node) passes its own."""


async def build(
    state: DesiredState,
    *,
    only: Sequence[str] = (),
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: ProgressCallback | None = None,
    show_unmanaged: bool = False,
    observe: Observe | None = None,
    publish: events.Publish = events.discard,
) -> Plan:
    """Plan ``state`` against the live nodes (all, or those named in ``only``).

    With ``show_unmanaged``, objects found on a node that no document describes are
    listed too (as ``unmanaged``: reported, never changed). ``publish`` gets a
    ``node.read`` event as each node is read."""
    names = [n for n in sorted(state.nodes) if not only or n in only]
    limit = asyncio.Semaphore(max(1, concurrency))

    async def one(name: str) -> NodePlan:
        async with limit:
            if progress:
                progress(name, None)
            result = await plan_node(state, state.nodes[name], show_unmanaged, observe)
            publish(
                events.EventType.NODE_READ,
                node=name,
                changes=len(result.changed),
                error=result.error,
                seconds=round(result.seconds, 3),
                # Whether retrying the read unchanged can help (the loop stops reading a
                # node that refused it for good: controller/reconcile/refusals.py).
                permanent=bool(result.retry and result.retry.permanent),
            )
            if progress:
                progress(name, result)
            return result

    results = await asyncio.gather(*(one(n) for n in names))
    return Plan(state.source.description, state.revision, tuple(results), tuple(state.warnings))


async def plan_node(
    state: DesiredState,
    node: Document,
    show_unmanaged: bool = False,
    observe: Observe | None = None,
) -> NodePlan:
    started = time.monotonic()
    platform = node.spec["platform"]
    resources = state.resources_for(node.name)
    try:
        read = observe or providers.for_platform(platform).observe
        observed = await read(node, resources, state.source)
    except FazaiError as exc:
        message = mask_hashes(exc.message if isinstance(exc, NodeError) else str(exc))
        return NodePlan(
            node.name,
            platform,
            error=message,
            error_type=type(exc).__name__,
            seconds=time.monotonic() - started,
            retry=retry_decision(exc),
        )
    items = [item_of(node.name, doc, observed.resources[doc]) for doc in resources]
    if show_unmanaged:
        for extra in observed.unmanaged:
            changes = tuple(Change(k, v, None) for k, v in sorted(extra.live.items()))
            items.append(PlanItem(node.name, extra.kind, extra.name, Action.UNMANAGED, changes))
    items.sort(key=lambda i: (i.kind, i.name))
    return NodePlan(node.name, platform, tuple(items), seconds=time.monotonic() - started)


def item_of(node: str, doc: Document, seen: Observed) -> PlanItem:
    """The plan item of ``doc`` as read on ``node`` (the planner's, and the engine's
    check that what it is about to write is what was judged)."""
    action, changes = compare(seen, _label(doc))
    # A node's error can quote its files (nft quotes lines it read): no hash goes further.
    error = None if seen.error is None else mask_hashes(seen.error)
    reason = None if action is not Action.UNRESOLVED else seen.unresolved
    return PlanItem(node, doc.kind, doc.name, action, changes, error, seen.adopt, reason=reason)


def _label(doc: Document) -> str:
    return str(doc.spec.get("path") or f"{doc.kind}/{doc.name}")
