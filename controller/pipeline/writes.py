"""The apply and record stages: the engine's transactions, behind the gate.

These are the pipeline's only ways to a write. Each takes a plan that passed the policy
stage and refuses, before anything is read or written, one the gate does not let
through: a denied item stops the whole plan (:class:`PolicyDenied`); one that needs an
approval is written only as an approved plan (:func:`apply_approved`, serve's API).
The engine records every run it starts (``engine.apply``).

One write has no plan to judge: :func:`recover` puts a node a killed run left half
written back to the snapshot its transaction recorded before writing. It is not gated:
refusing it would leave the node half applied, and it restores only what the journal
holds for that node.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from controller import events
from controller.engine import apply as applying
from controller.model.state import DesiredState
from controller.pipeline import planning
from controller.pipeline.errors import ApprovalRequired, PolicyDenied
from controller.pipeline.gate import Checked
from controller.plan.diff import Action, Change
from controller.plan.items import NodePlan, Plan, PlanItem
from controller.plan.verdicts import RunContext
from controller.store import StateStore, Trigger
from controller.words import count

_INVERSE = {"create": Action.DELETE, "delete": Action.CREATE, "update": Action.UPDATE}


def admit(checked: Checked, *, granted: int = 0) -> None:
    """Refuse ``checked`` unless its plan may be written with ``granted`` approvals."""
    denied = checked.denied
    if denied:
        raise PolicyDenied(
            f"a policy denies {count(len(denied), 'change')}: nothing is written, on any node",
            checked.denials(),
        )
    needed = checked.approvals_needed
    if needed > granted:
        raise ApprovalRequired(
            f"a policy requires {count(needed, 'approval')} before this is written",
            checked.approval_reasons(),
            needed,
        )


async def apply(
    state: DesiredState,
    checked: Checked,
    store: StateStore,
    *,
    concurrency: int = 8,
    fail_fast: bool = False,
    trigger: Trigger = Trigger.CLI,
    publish: events.Publish = events.discard,
    lock_timeout: float = 0.0,
    interrupt: applying.Interrupt = applying.NEVER,
    recorded: RunContext | None = None,
) -> applying.ApplyResult:
    """Apply ``checked``'s plan (its nodes only) as the engine does, once the gate lets it.
    ``recorded``: who the run and the audit trail name, when more than the policies saw
    (a commit's author with its signature check); else ``checked.run``."""
    admit(checked)
    return await applying.apply(
        state,
        checked.plan,
        store,
        concurrency=concurrency,
        fail_fast=fail_fast,
        trigger=trigger,
        publish=publish,
        lock_timeout=lock_timeout,
        interrupt=interrupt,
        run=recorded or checked.run,
    )


async def apply_approved(
    state: DesiredState,
    approved: Plan,
    store: StateStore,
    run: RunContext,
    *,
    granted: int = 1,
    concurrency: int = 8,
    trigger: Trigger = Trigger.API,
    publish: events.Publish = events.discard,
    recorded: RunContext | None = None,
) -> applying.ApplyResult:
    """Apply a plan people approved (``granted``: how many approvals it got;
    ``recorded``: who the run and the audit trail name, its approvers included).

    The policies are checked again against a fresh plan of its nodes first: the live
    state may have moved since the plan was offered, and a deny (or a call for more
    approvals than were given) now refuses the approval, before a run starts. The engine
    then applies the approved plan, and refuses a node whose changes are no longer the
    approved ones."""
    fresh = await planning.plan(
        state, run, only=[n.node for n in approved.nodes], concurrency=concurrency
    )
    admit(fresh, granted=max(granted, 1))
    return await applying.apply(
        state,
        approved,
        store,
        concurrency=concurrency,
        trigger=trigger,
        publish=publish,
        run=recorded or run,
    )


def rollback_plan(
    state: DesiredState, store: StateStore, run_id: int, only: Sequence[str] = ()
) -> Plan:
    """What rolling back run ``run_id`` writes, as a plan the policies can judge: on each
    node it changed (or those in ``only``), the inverse of each change it recorded (its
    creates deleted, its deletes made again, its updates undone)."""
    past = store.get_run(run_id)
    nodes = sorted({t.node for t in store.run_transactions(run_id) if not only or t.node in only})
    recorded: Mapping[str, Any] = (past.plan or {}) if past is not None else {}
    by_node: dict[str, list[PlanItem]] = {n: [] for n in nodes}
    for item in recorded.get("changes", []):
        inverse = _INVERSE.get(str(item.get("action")))
        node = str(item.get("node"))
        if inverse is None or node not in by_node:
            continue
        changes = tuple(
            Change(str(c.get("field")), c.get("desired"), c.get("live"))
            for c in item.get("changes", [])
        )
        by_node[node].append(PlanItem(node, str(item["kind"]), str(item["name"]), inverse, changes))
    return Plan(
        f"rollback of run {run_id}",
        past.revision if past is not None else None,
        tuple(NodePlan(n, _platform(state, n), tuple(by_node[n])) for n in nodes),
    )


def _platform(state: DesiredState, node: str) -> str:
    doc = state.nodes.get(node)
    return str(doc.spec.get("platform", "")) if doc is not None else ""


async def rollback(
    state: DesiredState,
    checked: Checked,
    store: StateStore,
    run_id: int,
    *,
    only: Sequence[str] = (),
    trigger: Trigger = Trigger.CLI,
    lock_timeout: float = 0.0,
    interrupt: applying.Interrupt = applying.NEVER,
) -> applying.ApplyResult:
    """Restore run ``run_id``'s snapshots, once the gate lets ``checked`` (its
    :func:`rollback_plan`) through; a rollback has no approval path of its own."""
    admit(checked)
    return await applying.roll_back_run(
        state,
        store,
        run_id,
        only=only,
        trigger=trigger,
        lock_timeout=lock_timeout,
        interrupt=interrupt,
    )


async def recover(
    state: DesiredState, store: StateStore, *, interrupt: applying.Interrupt = applying.NEVER
) -> list[str]:
    """Roll back the transactions dead runs left open (see ``engine.apply.recover``)."""
    return await applying.recover(state, store, interrupt=interrupt)
