"""The observed, plan and policy stages: every selected node read and compared with the
desired state (the engine's planner), then each item given the policies' verdicts.

The verdicts are computed off the event loop: a server sharing it keeps answering while
a large plan is checked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence

from controller import events
from controller.engine import plan as planner
from controller.model.state import DesiredState
from controller.pipeline import policy
from controller.pipeline.gate import Checked
from controller.plan.items import Plan
from controller.plan.verdicts import RunContext

DEFAULT_CONCURRENCY = planner.DEFAULT_CONCURRENCY


async def plan(
    state: DesiredState,
    run: RunContext,
    *,
    only: Sequence[str] = (),
    concurrency: int = DEFAULT_CONCURRENCY,
    show_unmanaged: bool = False,
    progress: planner.ProgressCallback | None = None,
    observe: planner.Observe | None = None,
    publish: events.Publish = events.discard,
    run_for: Mapping[str, RunContext] | None = None,
    policies: DesiredState | None = None,
) -> Checked:
    """Plan ``state`` against the live nodes (all, or those in ``only``) and check the plan
    for ``run`` (a node in ``run_for``: for its own run), by ``policies``' Policy documents
    when given (else ``state``'s)."""
    built = await observed(
        state,
        only=only,
        concurrency=concurrency,
        show_unmanaged=show_unmanaged,
        progress=progress,
        observe=observe,
        publish=publish,
    )
    runs = dict(run_for or {})
    judged = await asyncio.to_thread(
        policy.check_by, state, built, lambda node: runs.get(node, run), policies
    )
    return policy.judged(judged, run)


async def plan_by(
    state: DesiredState,
    run_for: Callable[[str], RunContext],
    run: RunContext,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    publish: events.Publish = events.discard,
) -> Checked:
    """As :func:`plan`, each node checked for its own run (``run_for``: serve's node
    modes); ``run`` is the pass's as a whole."""
    built = await observed(state, concurrency=concurrency, publish=publish)
    return policy.judged(await asyncio.to_thread(policy.check_by, state, built, run_for), run)


async def observed(
    state: DesiredState,
    *,
    only: Sequence[str] = (),
    concurrency: int = DEFAULT_CONCURRENCY,
    show_unmanaged: bool = False,
    progress: planner.ProgressCallback | None = None,
    observe: planner.Observe | None = None,
    publish: events.Publish = events.discard,
) -> Plan:
    """The plan before the policy stage (every node read, every resource compared)."""
    return await planner.build(
        state,
        only=only,
        concurrency=concurrency,
        show_unmanaged=show_unmanaged,
        progress=progress,
        observe=observe,
        publish=publish,
    )


def check(state: DesiredState, built: Plan, run: RunContext) -> Checked:
    """The policy stage alone, for a plan made another way (a rollback's)."""
    return policy.judged(policy.check(state, built, run), run)
