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

from controller import events
from controller.engine import apply as applying
from controller.engine import trail
from controller.model.state import DesiredState
from controller.pipeline import planning, policy
from controller.pipeline.errors import (
    ApprovalRequired,
    PolicyDenied,
    PolicyError,
    RollbackSuperseded,
)
from controller.pipeline.gate import Checked
from controller.plan import plan_json
from controller.plan.diff import Action, Change
from controller.plan.items import NodePlan, Plan, PlanItem
from controller.plan.verdicts import RunContext
from controller.store import StateStore, Trigger
from controller.words import count

# What callers above the pipeline need of the engine's apply, so that none of them imports
# it (the "gate" contract of pyproject.toml): only these functions reach a write.
ApplyResult = applying.ApplyResult
NodeOutcome = applying.NodeOutcome
PlanChanged = applying.PlanChanged
Interrupt = applying.Interrupt
NEVER = applying.NEVER
record_adoptions = applying.record_adoptions

_INVERSE = {
    Action.CREATE: Action.DELETE,
    Action.DELETE: Action.CREATE,
    Action.UPDATE: Action.UPDATE,
}


def admit(checked: Checked, *, granted: int = 0) -> None:
    """Refuse ``checked`` unless its plan may be written with ``granted`` approvals, and
    one that did not come out of the policy stage as it is (PolicyError)."""
    if not policy.vouches(checked):
        raise PolicyError(
            "the plan did not pass the policy stage (or was changed after it); nothing is written"
        )
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
        run=recorded or _recorded(checked.run),
    )


async def apply_trial(
    state: DesiredState,
    checked: Checked,
    store: StateStore,
    run_id: int,
    *,
    granted: int = 0,
    also_verify: applying.AlsoVerify,
    interrupt: applying.Interrupt = applying.NEVER,
) -> applying.NodeOutcome:
    """Write the one node of ``checked`` as the agent's trial of a tool: behind the gate
    like every write (``granted``: the approvals a person gave), in one transaction whose
    verify also runs ``also_verify`` before the commit (its problems roll it back). The
    caller's run ``run_id`` records it."""
    admit(checked, granted=granted)
    (node,) = checked.plan.nodes
    return await applying.apply_node(
        state,
        state.nodes[node.node],
        node.items,
        store,
        run_id,
        interrupt=interrupt,
        also_verify=also_verify,
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
    run_for: Mapping[str, RunContext] | None = None,
    policies: DesiredState | None = None,
) -> applying.ApplyResult:
    """Apply a plan people approved (``granted``: how many approvals it got;
    ``recorded``: who the run and the audit trail name, its approvers included;
    ``run_for``: per node, the run its offer was judged for, else ``run``; ``policies``:
    the state whose policies judge it now, the source's latest, else ``state``).

    The policies are checked again against a fresh plan of its nodes first: the live
    state may have moved since the plan was offered, and a deny (or a call for more
    approvals than were given) now refuses the approval, before a run starts. The engine
    then applies the approved plan, and refuses a node whose changes are no longer the
    approved ones."""
    fresh = await planning.plan(
        state,
        run,
        only=[n.node for n in approved.nodes],
        concurrency=concurrency,
        run_for=run_for,
        policies=policies,
    )
    try:
        admit(fresh, granted=max(granted, 1))
    except PolicyDenied:
        record_denied(store, fresh, source=run.source, recorded=recorded)
        raise
    # The engine writes the plan just judged, where its changes are the approved ones, and
    # checks its own read, under the node's lock, against it. A node whose changes moved
    # since the offer gets the approved plan: the engine's read differs from it, so the node
    # is refused (PlanChanged, recorded in the run) and nothing is written to it.
    moved = set(changed_nodes(approved, fresh.plan))
    now = {n.node: n for n in fresh.plan.nodes}
    nodes = tuple(
        n if n.node in moved or n.node not in now else now[n.node] for n in approved.nodes
    )
    return await applying.apply(
        state,
        Plan(approved.source, approved.revision, nodes, approved.warnings),
        store,
        concurrency=concurrency,
        trigger=trigger,
        publish=publish,
        run=recorded or run,
    )


def record_denied(
    store: StateStore,
    checked: Checked,
    *,
    source: str = "",
    run_id: int | None = None,
    recorded: RunContext | None = None,
) -> None:
    """The policy stage refused ``checked``: the audit trail says who asked for what and
    which rules said no (``policy.denied``), nothing having been written. ``run_id``: the
    plan run that found it; ``recorded``: who the trail names (as :func:`apply`)."""
    trail.record_denied(
        store,
        recorded or _recorded(checked.run),
        checked.denied,
        source=source or checked.run.source,
        revision=checked.plan.revision,
        run_id=run_id,
    )


def _recorded(run: RunContext) -> RunContext:
    """Who the runs and the audit trail name for a run the policies saw as ``run``: for
    the CLI, the OS user as the trail writes it (the effective uid, and who ran sudo);
    the policies match the plain login name."""
    if run.trigger != Trigger.CLI.value:
        return run
    return RunContext(run.trigger, run.mode, trail.os_actor(), run.source)


def changed_nodes(approved: Plan, fresh: Plan) -> list[str]:
    """The nodes read in ``fresh`` whose changes differ from ``approved``'s (other items,
    other field changes, other live values: compared by the items' trail digests)."""

    def digests(node: NodePlan | None) -> list[str]:
        items = node.writes if node is not None else ()
        return sorted(trail.item_digest(i) for i in items)

    now = {n.node: n for n in fresh.nodes}
    # A node the fresh read could not read (or compare) is not "moved": the engine fails
    # it, recorded in the run, and writes nothing to it.
    return [
        n.node
        for n in approved.nodes
        if not (n.node in now and now[n.node].failed) and digests(n) != digests(now.get(n.node))
    ]


def later_runs(store: StateStore, run_id: int, only: Sequence[str] = ()) -> dict[str, list[int]]:
    """Per node run ``run_id`` changed (or those in ``only``), the runs that committed a
    transaction on it since: restoring ``run_id``'s snapshot there undoes theirs too."""
    later: dict[str, list[int]] = {}
    for txn in store.run_transactions(run_id):
        if only and txn.node not in only:
            continue
        runs: list[int] = []
        after = txn.id
        while (next_id := store.later_commit(txn.node, after)) is not None:
            committed = store.transaction(next_id)
            if committed is not None and committed.run_id not in (run_id, *runs):
                runs.append(committed.run_id)
            after = next_id
        if runs:
            later[txn.node] = runs
    return later


def rollback_plan(
    state: DesiredState,
    store: StateStore,
    run_id: int,
    only: Sequence[str] = (),
    *,
    force: bool = False,
) -> Plan:
    """What rolling back run ``run_id`` writes, as a plan the policies can judge: on each
    node it changed (or those in ``only``), the inverse of each change it recorded (its
    creates deleted, its deletes made again, its updates undone).

    The restore puts back the node's whole snapshot, so on a node a later run committed
    on it undoes that run too: such a rollback is refused (RollbackSuperseded) unless
    ``force``, and then the inverses of the later runs' changes are judged as well."""
    later = later_runs(store, run_id, only)
    if later and not force:
        shown = "; ".join(
            f"{node}: run{'s' if len(runs) > 1 else ''} {', '.join(map(str, runs))}"
            for node, runs in sorted(later.items())
        )
        raise RollbackSuperseded(
            f"run {run_id} is not the last to change its nodes ({shown}): restoring its "
            "snapshot would undo those runs too; nothing restored. Roll back the later runs "
            "first, or pass --force to restore it anyway (their changes are judged too)"
        )
    past = store.get_run(run_id)
    nodes = sorted({t.node for t in store.run_transactions(run_id) if not only or t.node in only})
    by_node: dict[str, list[PlanItem]] = {n: [] for n in nodes}
    for undone in (run_id, *sorted({r for runs in later.values() for r in runs})):
        recorded = store.get_run(undone)
        if recorded is None or not recorded.plan:
            continue
        for node in plan_json.from_dict(recorded.plan, f"the plan of run {undone}").nodes:
            if node.node not in by_node or (undone != run_id and undone not in later[node.node]):
                continue
            by_node[node.node] += [_inverse(i) for i in node.changed if i.action in _INVERSE]
    return Plan(
        f"rollback of run {run_id}",
        past.revision if past is not None else None,
        tuple(NodePlan(n, _platform(state, n), tuple(by_node[n])) for n in nodes),
    )


def _inverse(item: PlanItem) -> PlanItem:
    changes = tuple(Change(c.field, c.desired, c.live) for c in item.changes)
    return PlanItem(item.node, item.kind, item.name, _INVERSE[item.action], changes)


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
    force: bool = False,
    trigger: Trigger = Trigger.CLI,
    lock_timeout: float = 0.0,
    interrupt: applying.Interrupt = applying.NEVER,
) -> applying.ApplyResult:
    """Restore run ``run_id``'s snapshots, once the gate lets ``checked`` (its
    :func:`rollback_plan`, made with the same ``force``) through; a rollback has no
    approval path of its own. Without ``force``, refused (RollbackSuperseded) where a later
    run committed on one of its nodes: the caller holds the store's writer lock, so none
    commits between this check and the restore."""
    admit(checked)
    if not force:
        rollback_plan(state, store, run_id, only)  # raises where a later run would be undone
    return await applying.roll_back_run(
        state,
        store,
        run_id,
        only=only,
        trigger=trigger,
        lock_timeout=lock_timeout,
        interrupt=interrupt,
        run=_recorded(checked.run),
    )


async def recover(
    state: DesiredState, store: StateStore, *, interrupt: applying.Interrupt = applying.NEVER
) -> list[str]:
    """Roll back the transactions dead runs left open (see ``engine.apply.recover``)."""
    return await applying.recover(state, store, interrupt=interrupt)
