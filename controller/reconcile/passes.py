"""One reconcile of one source at one commit: plan every node (through the pipeline, so
each node's items carry the policies' verdicts for that node's mode), then act per node
mode.

The plan is a run of its own (``plan``), recorded with its plan JSON and per-node result,
so the run log holds the drift history. A policy that denies an item stops the pass:
nothing is written, on any node, and the pass fails with the policies' messages.
Otherwise, per node mode:

* ``auto``: nodes with changes (and a clean read) are applied by the engine as one
  ``apply`` run; what converged is in sync again. A node with an item a policy holds for
  approval (``requireApproval``) waits for approval instead, as a manual one does.
* ``detect``: drift is published and kept for the API; nothing is written.
* ``manual``: the plan of those nodes waits for approval (see ``approvals``).

Every node with changes gets a ``drift.detected`` event, whatever its mode. The caller
holds the locks of every node of the state.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from controller.engine import prune
from controller.engine.prune import Pruning
from controller.errors import FazaiError, RetryDecision, retry_decision
from controller.events import EventType, Publish, Redacted
from controller.model.state import DesiredState
from controller.pipeline import context, gate, planning, writes
from controller.plan import items as planitems
from controller.plan import plan_json
from controller.plan.diff import Action
from controller.plan.masked import masked_all
from controller.plan.verdicts import RunContext
from controller.reconcile.actors import Actors
from controller.reconcile.approvals import Approvals
from controller.reconcile.config import SourceConfig
from controller.reconcile.handle import Mode, NodeDrift
from controller.reconcile.shared import Shared
from controller.reconcile.storethread import StoreThread
from controller.store import Command, NodeStatus, RunStatus, StateStore, Trigger
from controller.words import count

log = logging.getLogger("fazai.reconcile")


@dataclass(frozen=True)
class PassOutcome:
    plan_run: int
    apply_run: int | None
    problems: tuple[str, ...]  # nodes that could not be read or converged
    drifted: tuple[str, ...]  # nodes left with changes (detect, manual, or failed)
    pending_approval: str | None = None
    # With problems: what they say about retrying, all together (see combine).
    retry: RetryDecision | None = None


def combine(decisions: Sequence[RetryDecision]) -> RetryDecision | None:
    """One decision for a pass whose nodes failed in several ways: temporary when any
    failure is (the pass is retried for that node at its pace), waiting the longest delay
    one of them asked for; permanent only when every one is."""
    if not decisions:
        return None
    temporary = [d for d in decisions if d.temporary]
    if not temporary:
        return RetryDecision(True, None, ", ".join(sorted({d.reason for d in decisions})))
    delays = [d.delay for d in temporary if d.delay is not None]
    reasons = ", ".join(sorted({d.reason for d in temporary}))
    return RetryDecision(False, max(delays) if delays else None, reasons)


def kept_items(plan: planitems.Plan) -> dict[str, tuple[planitems.PlanItem, ...]]:
    """Each node's items other than noop, secrets masked: what the drift table keeps and
    the drift events carry (as JSON, which ``plan_json.item_dict`` makes of them)."""
    return {
        node.node: masked_all(i for i in node.items if i.action is not Action.NOOP)
        for node in plan.nodes
    }


def subset(plan: planitems.Plan, nodes: Sequence[planitems.NodePlan]) -> planitems.Plan:
    return planitems.Plan(plan.source, plan.revision, tuple(nodes), plan.warnings)


def record_applied(
    shared: Shared,
    source: str,
    mode: Callable[[str], Mode],
    result: writes.ApplyResult,
    unresolved: Mapping[str, tuple[planitems.PlanItem, ...]] | None = None,
) -> None:
    """After an apply: converged nodes are in sync but for what no apply writes (of the
    plan's ``unresolved`` items, masked, those the apply's reads still found so); the
    others keep their drift, with why."""
    now = datetime.now(UTC)
    for outcome in result.nodes:
        left = tuple(
            i
            for i in (unresolved or {}).get(outcome.node, ())
            if f"{i.kind}/{i.name}" in outcome.unresolved
        )
        before = shared.drift.get((source, outcome.node))
        revision = before.revision if before else None
        if outcome.status is NodeStatus.CONVERGED:
            shared.drift[(source, outcome.node)] = NodeDrift(
                outcome.node,
                source,
                mode(outcome.node),
                now,
                revision,
                left,
                labels=before.labels if before else {},
            )
        elif before is not None:
            shared.drift[(source, outcome.node)] = NodeDrift(
                outcome.node,
                source,
                before.mode,
                now,
                revision,
                before.items,
                outcome.message,
                before.labels,
            )


async def run_pass(
    shared: Shared,
    approvals: Approvals,
    source: SourceConfig,
    state: DesiredState,
    trigger: Trigger,
    publish: Publish,
    *,
    pruning: Pruning | None = None,
    blocked: Mapping[str, str] | None = None,
    begin_apply: Callable[[], bool] = lambda: True,
    writer: StoreThread,
    actor: str | Actors = "",
    skip: Mapping[str, str] | None = None,
) -> PassOutcome:
    """``blocked``: nodes that must not be written (an interrupted transaction still
    open), with why. ``skip``: nodes not even read (they refused our credentials or host
    key for good, see refusals.py), with why: reported as permanent problems, their drift
    entries kept as they were. ``begin_apply`` is asked right before writing; False (the controller
    is stopping) skips the apply. ``writer``: the source's store thread, which the plan
    run is recorded through, off the event loop. ``actor``: who set the pass going (the
    commit's author, committer and signer, the tokens that asked), recorded with the runs
    and in the audit trail as ``str(actor)``; the policies see the commit's author as
    ``run.actor``, and none of its names may approve what the pass holds for approval."""
    store = shared.store
    blocked = blocked or {}
    skip = skip or {}
    started = time.monotonic()
    shared.begin_pass(source.name, state)
    run_id = await writer.call(
        store.start_run,
        trigger,
        Command.PLAN,
        state.source.description,
        state.revision,
        actor=str(actor),
    )
    run_publish = _with(publish, run_id=run_id)
    run_publish(
        EventType.RUN_STARTED,
        command=Command.PLAN.value,
        revision=state.revision,
        trigger=trigger.value,
        mode=source.mode.value,
    )
    author = actor.author if isinstance(actor, Actors) else actor
    runs = {mode: context.serve(trigger, mode.value, author, source.name) for mode in Mode}
    try:
        read = state
        if skip:
            read = dataclasses.replace(
                state, nodes={n: d for n, d in state.nodes.items() if n not in skip}
            )
        checked = await planning.plan_by(
            read,
            lambda node: runs[source.mode_for(node)],
            runs[source.mode],
            concurrency=shared.config.concurrency,
            publish=run_publish,
        )
        plan = checked.plan
        labels = {name: node.labels for name, node in state.nodes.items()}
        overall = await _record(shared, source, plan, run_id, publish, writer, labels)
    except asyncio.CancelledError:
        await writer.last(store.finish_run, run_id, RunStatus.INTERRUPTED)
        raise
    except FazaiError as exc:
        # Fails closed: a plan the policies could not judge (or that could not be made or
        # recorded) is neither written nor offered, and its run is never left in progress.
        try:
            await writer.call(store.finish_run, run_id, RunStatus.FAILED)
        except FazaiError as again:
            log.error("%s: could not record plan run %s as failed: %s", source.name, run_id, again)
        approvals.withdraw(source.name)
        run_publish(
            EventType.RUN_FINISHED,
            status=RunStatus.FAILED.value,
            seconds=round(time.monotonic() - started, 3),
            command=Command.PLAN.value,
            revision=state.revision,
        )
        return PassOutcome(run_id, None, (str(exc),), (), retry=retry_decision(exc))
    except Exception:
        # A bug: the worker's own guard reports it; the run is not left in progress.
        await writer.call(store.finish_run, run_id, RunStatus.FAILED)
        approvals.withdraw(source.name)
        raise
    run_publish(
        EventType.RUN_FINISHED,
        status=overall.value,
        seconds=round(time.monotonic() - started, 3),
        command=Command.PLAN.value,
        revision=plan.revision,
    )

    failed = [n for n in plan.nodes if n.failed]
    problems = [f"{n.node}: {n.error or 'some resources could not be compared'}" for n in failed]
    # A resource that could not be compared says nothing about retrying: temporary.
    decisions = [n.retry or _TEMPORARY for n in failed]
    for name, why in sorted(skip.items()):
        problems.append(f"{name}: {why}")
        decisions.append(_REFUSED)
    drifted = {n.node for n in plan.nodes if n.changed}
    denials = checked.denials()
    if denials:
        # Deny wins over everything: nothing of this plan is written, nor offered; the
        # plan run says so in the history.
        approvals.withdraw(source.name)
        recorded = RunContext(trigger.value, source.mode.value, str(actor), source.name)
        await writer.call(_record_denied, store, run_id, checked, recorded)
        problems.append(
            f"a policy denies {count(len(denials), 'change')}; nothing written, on any node: "
            + "; ".join(denials)
        )
        # Nothing but a new commit (or a policy change) lifts a deny: not retried fast.
        decisions.append(_DENIED)
        return PassOutcome(
            run_id, None, tuple(problems), tuple(sorted(drifted)), None, combine(decisions)
        )
    by_mode: dict[Mode, list[planitems.NodePlan]] = {m: [] for m in Mode}
    for node in plan.nodes:
        # Only what an apply would write is applied or offered for approval: an
        # unresolved difference alone (a failing Goal) stays drift, for the agent.
        if node.writes and not node.failed:
            if node.node in blocked:
                problems.append(f"{node.node}: {blocked[node.node]}")
                decisions.append(_TEMPORARY)  # the rollback is retried each pass
                continue
            mode = source.mode_for(node.node)
            if mode is Mode.AUTO and gate.needs_approval(node):
                mode = Mode.MANUAL  # a policy holds this node's apply for approval
            by_mode[mode].append(node)

    pending = None
    waiting = by_mode[Mode.MANUAL]
    if waiting:
        pending = approvals.offer(
            source.name,
            state,
            subset(plan, waiting),
            pruning,
            required=max(1, gate.approvals_needed(waiting)),
            reasons=gate.reasons(waiting),
            actor=actor,
            runs={n.node: runs[source.mode_for(n.node)] for n in waiting},
        ).id
    else:
        approvals.withdraw(source.name)

    apply_run = None
    if by_mode[Mode.AUTO] and begin_apply():
        result = await writes.apply(
            state,
            checked.narrowed(by_mode[Mode.AUTO]),
            store,
            concurrency=shared.config.concurrency,
            trigger=trigger,
            publish=publish,
            recorded=RunContext(
                checked.run.trigger,
                source.mode.value,
                str(actor) or checked.run.actor,
                source.name,
            ),
        )
        apply_run = result.run_id
        unresolved = {n.node: masked_all(n.unresolved) for n in by_mode[Mode.AUTO]}
        record_applied(shared, source.name, source.mode_for, result, unresolved)
        converged = [o.node for o in result.nodes if o.status is NodeStatus.CONVERGED]
        drifted -= {o.node for o in result.nodes if o.node in converged and not o.unresolved}
        if pruning is not None:
            await writer.call(prune.release, store, pruning.releases, converged, result.run_id)
        unfinished = [
            f"{o.node}: {o.status.value}: {o.message}"
            for o in result.nodes
            if o.status not in (NodeStatus.CONVERGED, NodeStatus.SKIPPED)
        ]
        problems += unfinished
        # An apply that failed or rolled back is retried at the temporary pace: the plan
        # read just succeeded, so what failed is the write, which a new plan retries.
        decisions += [_TEMPORARY] * len(unfinished)
    return PassOutcome(
        run_id,
        apply_run,
        tuple(problems),
        tuple(sorted(drifted)),
        pending,
        combine(decisions),
    )


_TEMPORARY = RetryDecision(False, None, "unclassified")
_REFUSED = RetryDecision(True, None, "still refused")
_DENIED = RetryDecision(True, None, "denied by policy")


async def _record(
    shared: Shared,
    source: SourceConfig,
    plan: planitems.Plan,
    run_id: int,
    publish: Publish,
    writer: StoreThread,
    labels: Mapping[str, Mapping[str, str]],
) -> RunStatus:
    """Record the plan run (plan JSON, node results, status), keep the drift and publish
    it; returns the run's status. The big work (the plan's JSON, its redaction, the
    commits) runs in threads; the drift table and the events change together on the loop,
    with no await in between."""
    store = shared.store
    document = await asyncio.to_thread(plan_json.to_dict, plan)
    await writer.call(store.record_plan, run_id, document)
    results = []
    for node in plan.nodes:
        changed = len(node.changed)
        if node.error is not None:
            status, message = NodeStatus.FAILED, node.error
        elif node.failed:
            status, message = NodeStatus.FAILED, "some resources could not be compared"
        elif changed:
            status, message = NodeStatus.SKIPPED, f"{count(changed, 'change')} found"
        else:
            status, message = NodeStatus.CONVERGED, "in sync"
        results.append((node.node, status, message, node.seconds))
    await writer.call(_record_nodes, store, run_id, results)
    # The drift table (read by reports, notifications and the API) keeps each node's items
    # typed, secrets masked; the drift events carry the same items as JSON. Both are made
    # here, in a thread: masking walks every field value of a big plan.
    kept, shown = await asyncio.to_thread(_kept_and_shown, plan)

    now = datetime.now(UTC)
    # Every node of the state: one skipped (not read) keeps its entry as it was.
    for key in [k for k in shared.drift if k[0] == source.name and k[1] not in labels]:
        del shared.drift[key]  # a node no longer in this source's documents
    for node in plan.nodes:
        mode = source.mode_for(node.node)
        shared.drift[(source.name, node.node)] = NodeDrift(
            node.node,
            source.name,
            mode,
            now,
            plan.revision,
            kept[node.node],
            node.error,
            dict(labels.get(node.node, {})),
        )
        if node.node in shown:
            publish(
                EventType.DRIFT_DETECTED,
                node=node.node,
                revision=plan.revision,
                mode=mode.value,
                changes=len(node.changed),
                items=shown[node.node],
                run_id=run_id,
            )
    failed = [n for n in plan.nodes if n.failed]
    overall = (
        RunStatus.SUCCEEDED
        if not failed
        else RunStatus.FAILED
        if len(failed) == len(plan.nodes)
        else RunStatus.PARTIAL
    )
    await writer.call(store.finish_run, run_id, overall)
    return overall


def _kept_and_shown(
    plan: planitems.Plan,
) -> tuple[dict[str, tuple[planitems.PlanItem, ...]], dict[str, Redacted]]:
    """The drift table's items of every node, and the drift events' items (JSON) of the
    nodes with changes. The JSON of masked items needs no second walk (plan/masked.py)."""
    kept = kept_items(plan)
    shown = {
        node.node: Redacted([plan_json.item_dict(i) for i in kept[node.node]])
        for node in plan.nodes
        if node.changed
    }
    return kept, shown


def _record_denied(
    store: StateStore, run_id: int, checked: gate.Checked, recorded: RunContext
) -> None:
    writes.record_denied(store, checked, source=recorded.source, run_id=run_id, recorded=recorded)
    by_node: dict[str, list[str]] = {}
    for item, line in zip(checked.denied, checked.denials(), strict=True):
        by_node.setdefault(item.node, []).append(line)
    for node, lines in by_node.items():
        store.record_node(run_id, node, NodeStatus.FAILED, "denied by policy: " + "; ".join(lines))
    store.finish_run(run_id, RunStatus.FAILED)


def _record_nodes(
    store: StateStore, run_id: int, results: Sequence[tuple[str, NodeStatus, str, float]]
) -> None:
    for node, status, message, seconds in results:
        store.record_node(run_id, node, status, message, seconds)


def _with(publish: Publish, **context: Any) -> Publish:
    def inner(type: EventType, **data: Any) -> Any:
        return publish(type, **{**context, **data})

    return inner
