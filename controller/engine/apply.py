"""Apply: each node converged as one transaction, or rolled back to its snapshot.

Per node, in this order: observe afresh (the changes must still be the ones the user
approved), snapshot (recorded in the journal before anything is written), write (every
step journaled before it is sent), verify (a fresh read must plan as all noop), commit.
Any failure, or a verify that is not clean, rolls the node back to its snapshot. Nodes run
concurrently and independently; with ``fail_fast`` the first failure stops nodes that have
not started. A controller killed mid-way finds the open transaction at its next start
(:func:`recover`) and rolls it back from the stored snapshot.

Secrets in a snapshot: the fields a provider lists under the snapshot's ``escrow`` (the
Linux provider: sensitive file content, password hashes) are sealed into the store's
escrow, not masked, so the rollbacks that read the snapshot back from the journal
(:func:`recover`, :func:`roll_back_run`) restore them exactly. A secret the escrow cannot
open (its key is missing or another one) is reported by name, and everything else is still
restored. The rollback in the same process uses the snapshot it took, in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from controller import events, providers
from controller.engine import plan as planner
from controller.engine import trail as trails
from controller.engine.nodekey import node_key
from controller.errors import FazaiError, Interrupted, WriterLockedError
from controller.model import kinds
from controller.model.document import Document
from controller.model.state import DesiredState
from controller.plan.diff import WRITES, Action, compare
from controller.plan.items import Plan, PlanItem
from controller.plan.verdicts import RunContext
from controller.providers.base import Change, Intent, NodeTransaction, Observation, PlatformIds
from controller.source.tree import SourceTree
from controller.store import (
    Command,
    EscrowFailure,
    NodeStatus,
    RunStatus,
    StateStore,
    Transaction,
    TransactionStatus,
    Trigger,
    audit,
    overall_status,
)

log = logging.getLogger(__name__)

INTERRUPTED_BEFORE = "interrupted before it started; nothing written"


class Interrupt(Protocol):
    """Set once a signal asked the run to stop (an ``asyncio.Event``)."""

    def is_set(self) -> bool: ...


class _Never:
    def is_set(self) -> bool:
        return False


NEVER: Interrupt = _Never()
_FAILURE_EVENTS = {
    NodeStatus.FAILED: events.EventType.NODE_FAILED,
    NodeStatus.ROLLED_BACK: events.EventType.NODE_ROLLED_BACK,
}


class TransactionalProvider(Protocol):
    platform: str

    async def observe(
        self, node: Document, resources: Sequence[Document], tree: SourceTree
    ) -> Observation: ...

    def transaction(
        self,
        node: Document,
        changes: Sequence[Change],
        resources: Sequence[Document],
        tree: SourceTree,
    ) -> contextlib.AbstractAsyncContextManager[NodeTransaction]:
        """The node's transaction, holding its connection open for its whole life."""
        ...


@dataclass(frozen=True)
class NodeOutcome:
    node: str
    status: NodeStatus
    message: str = ""
    changes: int = 0
    seconds: float = 0.0
    interrupted: bool = False  # skipped or rolled back because a signal asked to stop
    # Documents no handler can make so, as the apply's last read of the node saw them
    # (its verify where that reads them, else the read before the write): "Kind/name".
    unresolved: tuple[str, ...] = ()


@dataclass(frozen=True)
class ApplyResult:
    run_id: int
    nodes: tuple[NodeOutcome, ...]

    @property
    def interrupted(self) -> bool:
        """Whether a signal cut some node short (not one that came after they ended)."""
        return any(n.interrupted for n in self.nodes)

    @property
    def converged(self) -> bool:
        return all(n.status in (NodeStatus.CONVERGED, NodeStatus.SKIPPED) for n in self.nodes)

    @property
    def exit_code(self) -> int:
        return 0 if self.converged else 2


class VerifyMismatch(FazaiError):
    """After writing, a fresh read still differs from the desired state."""


class PlanChanged(FazaiError):
    """The live state moved between the approved plan and the apply."""


# More checks inside a transaction, after its verify: (transaction, journal) -> problems.
AlsoVerify = Callable[[NodeTransaction, "StoreJournal"], Awaitable[list[str]]]


class StoreJournal:
    """The StepJournal of one transaction, backed by the state store."""

    def __init__(
        self,
        store: StateStore,
        txn_id: int,
        publish: events.Publish = events.discard,
        interrupt: Interrupt = NEVER,
        **context: Any,
    ) -> None:
        self.store = store
        # Checked before each batch of steps is intended: the provider stops between
        # batches and the transaction rolls back to its snapshot.
        self._interrupt = interrupt
        self.txn_id = txn_id
        self._seq = 0
        self._publish = publish
        self._context = context  # run_id, node: carried by each change.applied event
        self._steps: dict[int, tuple[str, str, str]] = {}

    def intend(self, kind: str, name: str, action: str, payload: Mapping[str, Any]) -> int:
        (step,) = self.intend_many([Intent(kind, name, action, payload)])
        return step

    def intend_many(self, intents: Sequence[Intent]) -> list[int]:
        if self._interrupt.is_set():
            raise Interrupted("interrupted")
        steps = self.store.intend_many(self.txn_id, self._seq + 1, intents)
        self._seq += len(intents)
        for step, intent in zip(steps, intents, strict=True):
            self._steps[step] = (intent.kind, intent.name, intent.action)
        return steps

    def done(self, step: int) -> None:
        self.done_many([step])

    def done_many(self, steps: Sequence[int]) -> None:
        self.store.mark_done_many(steps)
        # One event per step, however many one commit marked.
        for step in steps:
            kind, name, action = self._steps.pop(step, ("", "", ""))
            self._publish(
                events.EventType.CHANGE_APPLIED,
                **self._context,
                kind=kind,
                name=name,
                action=action,
            )

    def failed(self, step: int, message: str) -> None:
        self.store.mark_failed(step, message)


def _provider(platform: str) -> TransactionalProvider:
    provider: Any = providers.for_platform(platform)
    if not hasattr(provider, "transaction"):
        raise FazaiError(f"apply is not available for {platform} nodes yet")
    typed: TransactionalProvider = provider
    return typed


def _changes(
    resources: Sequence[Document], observation: Observation
) -> tuple[list[Change], list[str]]:
    changes, errors = [], []
    for doc in resources:
        seen = observation.resources[doc]
        action, _ = compare(seen)
        if action is Action.ERROR:
            errors.append(f"{doc.subject}: {seen.error}")
        elif action in WRITES:
            changes.append(Change(doc.kind, doc.name, action.value, doc, seen))
    return changes, errors


def _unresolved(resources: Sequence[Document], *reads: Observation) -> tuple[str, ...]:
    """The documents no handler can make so on this node, each judged by the last of
    ``reads`` that holds it (a verify may read only what was written)."""
    out = []
    for doc in resources:
        seen = next((r.resources[doc] for r in reversed(reads) if doc in r.resources), None)
        if seen is not None and compare(seen)[0] is Action.UNRESOLVED:
            out.append(doc.subject)
    return tuple(out)


def _adopted_in_sync(
    resources: Sequence[Document], observation: Observation
) -> dict[tuple[str, str], str]:
    """The existing objects that documents adopt and that already are as described: an
    apply has nothing to write to them, yet from now on FazAI owns them (by the
    platform's id), so that prune reaches them once their documents go."""
    out = {}
    for doc in resources:
        seen = observation.resources[doc]
        if seen.adopt is not None and compare(seen)[0] is Action.NOOP:
            out[(doc.kind, doc.name)] = seen.adopt
    return out


def record_adoptions(store: StateStore, plan: Plan) -> list[str]:
    """Record as owned the existing objects the plan's in-sync documents adopt (an apply
    with changes records them itself): nothing is written to a node, but from now on
    prune can reach them. What was recorded, for people."""
    done = []
    for node in plan.nodes:
        if node.failed:
            continue
        owned = {(o.kind, o.name): o.platform_id for o in store.owned(node.node)}
        adopted = {
            (i.kind, i.name): i.adopt
            for i in node.items
            if i.adopt is not None
            and i.action is Action.NOOP
            and owned.get((i.kind, i.name)) != i.adopt
        }
        store.record_inventory(node.node, None, adopted, ())
        done += [f"{node.node}: {k}/{n} is owned as {pid}" for (k, n), pid in adopted.items()]
    return done


def _unverified(changes: Sequence[Change], verified: Observation) -> list[str]:
    """What a fresh read shows is still not as desired, for each change written."""
    by_identity = {(d.kind, d.name): seen for d, seen in verified.resources.items()}
    problems = []
    for change in changes:
        seen = by_identity.get((change.kind, change.name))
        if seen is None:
            problems.append(f"{change.kind}/{change.name}: not read back")
            continue
        action, _ = compare(seen)
        if action is not Action.NOOP:
            problems.append(
                f"{change.kind}/{change.name}: {seen.error or seen.unresolved or action.value}"
            )
    return problems


def _same_as_approved(
    node: str,
    resources: Sequence[Document],
    observation: Observation,
    approved: Sequence[PlanItem],
) -> bool:
    """Whether the fresh read makes exactly the changes that were judged (and approved):
    the same items, each with the same field changes on the same live values (a field
    edited on the node since can change a policy's verdict), compared by their trail
    digests."""
    fresh = (planner.item_of(node, doc, observation.resources[doc]) for doc in resources)
    now = sorted(trails.item_digest(i) for i in fresh if i.action in WRITES)
    then = sorted(trails.item_digest(i) for i in approved if i.action in WRITES)
    return now == then


async def apply_node(
    state: DesiredState,
    node: Document,
    approved: Sequence[PlanItem],
    store: StateStore,
    run_id: int,
    publish: events.Publish = events.discard,
    *,
    lock_timeout: float = 0.0,
    interrupt: Interrupt = NEVER,
    also_verify: AlsoVerify | None = None,
) -> NodeOutcome:
    """Converge one node as one transaction, holding the node's writer lock across
    processes from the fresh read to the commit or rollback (waiting up to
    ``lock_timeout`` s for it; a node another process writes is left alone, failed).

    ``also_verify``: more checks after the verify and before the commit (the agent's
    verification of a tool it made); the problems it returns roll the node back."""
    started = time.monotonic()

    def outcome(
        status: NodeStatus, message: str = "", count: int = 0, unresolved: tuple[str, ...] = ()
    ) -> NodeOutcome:
        cut = message == INTERRUPTED_BEFORE
        seconds = time.monotonic() - started
        result = NodeOutcome(node.name, status, message, count, seconds, cut, unresolved)
        store.record_node(run_id, node.name, status, message, result.seconds)
        if status in _FAILURE_EVENTS:
            publish(_FAILURE_EVENTS[status], run_id=run_id, node=node.name, reason=message)
        return result

    try:
        async with store.node_writer(
            node.name,
            lock_timeout,
            key=node_key(node.spec),
            run_id=run_id,
            interrupt=interrupt,
        ):
            if interrupt.is_set():
                return outcome(NodeStatus.SKIPPED, INTERRUPTED_BEFORE)
            still_open = await _close_open(state, store, node.name)
            if still_open:
                return outcome(NodeStatus.FAILED, still_open)
            provider = _provider(node.spec["platform"])
            resources = state.resources_for(node.name)
            observation = await provider.observe(node, resources, state.source)
            changes, errors = _changes(resources, observation)
            if errors:
                return outcome(NodeStatus.FAILED, "; ".join(errors))
            if not _same_as_approved(node.name, resources, observation, approved):
                raise PlanChanged("the node changed since the plan was approved; plan again")
            adopted = _adopted_in_sync(resources, observation)
            if not changes:
                store.record_inventory(node.name, run_id, adopted, ())
                left = _unresolved(resources, observation)
                if left:
                    said = f"nothing to write; unresolved: {', '.join(left)}"
                    return outcome(NodeStatus.CONVERGED, said, unresolved=left)
                return outcome(NodeStatus.CONVERGED, "already in sync")
            if interrupt.is_set():
                return outcome(NodeStatus.SKIPPED, INTERRUPTED_BEFORE)
            async with provider.transaction(node, changes, resources, state.source) as txn:
                result = await _transact(
                    txn, node, resources, changes, store, run_id, outcome, publish, interrupt,
                    approved, observation, also_verify,
                )  # fmt: skip
            if result.status is NodeStatus.CONVERGED:
                store.record_inventory(node.name, run_id, adopted, ())
            return result
    except Interrupted:
        # Only the wait for the node's lock raises it here: nothing was read or written.
        return outcome(NodeStatus.SKIPPED, INTERRUPTED_BEFORE)
    except FazaiError as exc:
        return outcome(NodeStatus.FAILED, str(exc))


async def _close_open(state: DesiredState, store: StateStore, node: str) -> str:
    """Roll back the transactions left open on ``node`` (a rollback that failed earlier,
    in this process or a dead one) before a new one begins; the caller holds the node's
    writer lock, so nobody is running them. What still blocks the node, or ``""``.

    A new transaction on top of an open one would snapshot a half-applied node, and the
    open one's later rollback would put its older snapshot over the new commit."""
    for txn in store.open_on(node):
        line = await _recover_one(state, store, txn)
        current = store.transaction(txn.id)
        if current is not None and current.status is TransactionStatus.OPEN:
            return (
                f"transaction {txn.id} on this node is still open and could not be rolled "
                f"back ({line}); nothing new written, retried next time"
            )
    return ""


async def _transact(
    txn: NodeTransaction,
    node: Document,
    resources: Sequence[Document],
    changes: Sequence[Change],
    store: StateStore,
    run_id: int,
    outcome: Callable[..., NodeOutcome],
    publish: events.Publish = events.discard,
    interrupt: Interrupt = NEVER,
    approved: Sequence[PlanItem] = (),
    read: Observation | None = None,
    also_verify: AlsoVerify | None = None,
) -> NodeOutcome:
    """``read``: the node as read before the write (what the verify does not re-read
    stays as it said)."""
    before: str | None = None
    after: str | None = None

    def trail(result: str, message: str) -> audit.Entry:
        # The node's record in the audit trail, with the digests known when it ends.
        return trails.node_entry(
            run_id, node.name, approved, result, message, before=before, after=after
        )

    txn_id = store.begin_transaction(run_id, node.name)
    try:
        snapshot = await txn.snapshot()
    except FazaiError as exc:
        why = f"no snapshot, nothing written: {exc}"
        store.mark_rolled_back(txn_id, why, audit=trail("failed", why))
        return outcome(NodeStatus.FAILED, f"could not take a snapshot, nothing written: {exc}")
    before = audit.digest_of(snapshot)
    try:
        store.record_snapshot(
            txn_id, "Node", node.name, "transaction", snapshot, escrow=_escrowed(snapshot)
        )
    except FazaiError as exc:
        # Without the snapshot on disk a crash could not be rolled back: write nothing.
        with contextlib.suppress(FazaiError):
            why = f"no snapshot recorded, nothing written: {exc}"
            store.mark_rolled_back(txn_id, why, audit=trail("failed", why))
        return outcome(NodeStatus.FAILED, f"could not record the snapshot, nothing written: {exc}")
    try:
        journal = StoreJournal(store, txn_id, publish, interrupt, run_id=run_id, node=node.name)
        await txn.write(journal)
        verified = await txn.verify()
        after = trails.live_digest(verified.resources)
        problems = _unverified(changes, verified)
        if problems:
            raise VerifyMismatch(f"verify found the node still differs: {'; '.join(problems)}")
        if also_verify is not None:
            problems = await also_verify(txn, journal)
            if problems:
                raise VerifyMismatch(f"verification failed: {'; '.join(problems)}")
        publish(events.EventType.NODE_VERIFIED, run_id=run_id, node=node.name, changes=len(changes))
        await txn.commit()
    except (FazaiError, OSError, TimeoutError) as exc:
        result = await _roll_back(txn, snapshot, store, txn_id, str(exc), outcome, trail)
        if isinstance(exc, Interrupted):
            result = dataclasses.replace(result, interrupted=True)
        return result
    store.commit(txn_id, audit=trail("converged", ""))
    ids = txn.platform_ids() if isinstance(txn, PlatformIds) else {}
    _record_ownership(store, run_id, node.name, changes, ids)
    left = _unresolved(resources, *(r for r in (read, verified) if r is not None))
    return outcome(NodeStatus.CONVERGED, "", len(changes), left)


def _escrowed(snapshot: Mapping[str, Any]) -> tuple[str, ...]:
    """The secret fields the snapshot's rollback needs back exactly (its ``escrow`` list)."""
    fields = snapshot.get("escrow")
    if not isinstance(fields, list | tuple):
        return ()
    return tuple(f for f in fields if isinstance(f, str))


def _stored_snapshot(
    store: StateStore, txn: Transaction
) -> tuple[Mapping[str, Any] | None, tuple[EscrowFailure, ...]]:
    """The transaction's snapshot from the journal with its escrowed secrets opened, and
    the secrets that could not be (left masked)."""
    record = next((s for s in txn.snapshots if s.kind == "Node"), None)
    if record is None or record.before is None:
        return None, ()
    revealed = store.reveal(txn.id, record)
    return revealed.before, revealed.failures


def _secrets_note(failures: Sequence[EscrowFailure]) -> str:
    return "".join(f"; {failure}" for failure in failures)


def _record_ownership(
    store: StateStore,
    run_id: int,
    node: str,
    changes: Sequence[Change],
    platform_ids: Mapping[tuple[str, str], str],
) -> None:
    """What FazAI wrote it owns (and only that may it ever prune); what it deleted it
    owns no more. Each object is recorded by the platform's id where the transaction
    reports one (an OPNsense uuid: prune then reaches that object and no other), else by
    its kind's instance key (a path, a package name), all in one commit."""
    owned: dict[tuple[str, str], str] = {}
    disowned: list[tuple[str, str]] = []
    for change in changes:
        if change.action == Action.DELETE.value:
            disowned.append((change.kind, change.name))
            continue
        kind = kinds.get(change.kind)
        if kind is not None and not kind.claims_object:
            continue  # a goal resolved by its tool: an outcome, nothing to prune later
        spec = change.document.spec if change.document is not None else {}
        key = kind.instance_key(spec) if kind and kind.instance_key else change.name
        owned[(change.kind, change.name)] = platform_ids.get((change.kind, change.name), key)
    store.record_inventory(node, run_id, owned, disowned)


async def _roll_back(
    txn: NodeTransaction,
    snapshot: Mapping[str, Any],
    store: StateStore,
    txn_id: int,
    why: str,
    outcome: Callable[[NodeStatus, str], NodeOutcome],
    trail: Callable[[str, str], audit.Entry],
) -> NodeOutcome:
    try:
        await txn.rollback(snapshot)
    except (TimeoutError, FazaiError, OSError) as exc:
        # The transaction stays open in the journal: the next start tries again.
        failed = f"{why}; ROLLBACK FAILED, will retry: {exc}"
        try:
            store.audit_append(trail("failed", failed))
        except FazaiError as error:
            # The message must reach the user; the open transaction is in the journal,
            # and its recovery is recorded when it happens.
            log.warning("transaction %s: no audit record of its failed rollback: %s", txn_id, error)
        return outcome(NodeStatus.FAILED, failed)
    store.mark_rolled_back(txn_id, why, audit=trail("rolled_back", why))
    return outcome(NodeStatus.ROLLED_BACK, f"{why}; rolled back to the snapshot")


async def apply(
    state: DesiredState,
    plan: Plan,
    store: StateStore,
    *,
    concurrency: int = 8,
    fail_fast: bool = False,
    trigger: Trigger = Trigger.CLI,
    publish: events.Publish = events.discard,
    lock_timeout: float = 0.0,
    interrupt: Interrupt = NEVER,
    run: RunContext | None = None,
) -> ApplyResult:
    """Apply the approved ``plan`` (its nodes only); every node ends converged or at its
    snapshot, and the run is recorded in ``store``. Once ``interrupt`` is set no node
    starts and no further batch of steps is sent: the node in flight finishes or rolls
    back, and the run is recorded ``interrupted``. ``publish`` gets the run's events as
    they happen (run.started, change.applied, node.verified, node.rolled_back,
    node.failed, run.finished). ``run``: who asks (recorded with the run and in the audit
    trail); by default the OS user."""
    from controller.plan import plan_json

    started = time.monotonic()
    actor = trails.context_for(Trigger(trigger).value, run).actor
    # Encoding and redacting a large plan takes a while: off the event loop, so a server
    # sharing it keeps answering.
    run_id = await asyncio.to_thread(
        lambda: store.start_run(
            trigger,
            Command.APPLY,
            state.source.description,
            state.revision,
            plan_json.to_dict(plan),
            actor,
        )
    )
    store.note_run(run_id)
    publish(
        events.EventType.RUN_STARTED,
        run_id=run_id,
        command=Command.APPLY.value,
        revision=state.revision,
        trigger=Trigger(trigger).value,
    )
    limit = asyncio.Semaphore(max(1, concurrency))
    stop = asyncio.Event()

    async def one(items: Sequence[PlanItem], name: str) -> NodeOutcome:
        async with limit:
            why = INTERRUPTED_BEFORE if interrupt.is_set() else "stopped by --fail-fast"
            if stop.is_set() or interrupt.is_set():
                store.record_node(run_id, name, NodeStatus.SKIPPED, why)
                return NodeOutcome(
                    name, NodeStatus.SKIPPED, why, interrupted=why == INTERRUPTED_BEFORE
                )
            result = await apply_node(
                state,
                state.nodes[name],
                items,
                store,
                run_id,
                publish,
                lock_timeout=lock_timeout,
                interrupt=interrupt,
            )
            if fail_fast and result.status not in (NodeStatus.CONVERGED, NodeStatus.SKIPPED):
                stop.set()
            return result

    outcomes = await asyncio.gather(*(one(n.items, n.node) for n in plan.nodes if n.error is None))
    skipped = [NodeOutcome(n.node, NodeStatus.FAILED, n.error or "") for n in plan.nodes if n.error]
    for item in skipped:
        store.record_node(run_id, item.node, item.status, item.message)
    everything = tuple(sorted([*outcomes, *skipped], key=lambda o: o.node))
    status = overall_status(o.status for o in everything)
    if any(o.interrupted for o in everything):
        # Only a signal that cut a node short: one that came once every node had ended
        # changed nothing, and the run is recorded as the nodes are.
        status = RunStatus.INTERRUPTED
    store.finish_run(run_id, status)
    publish(
        events.EventType.RUN_FINISHED,
        run_id=run_id,
        status=status.value,
        seconds=round(time.monotonic() - started, 3),
        command=Command.APPLY.value,
        revision=state.revision,
    )
    return ApplyResult(run_id, everything)


async def recover(
    state: DesiredState, store: StateStore, *, interrupt: Interrupt = NEVER
) -> list[str]:
    """Roll back every transaction a dead controller left open; what was done, per node.

    Only a transaction whose owner is provably gone is touched: its node's writer lock
    must be free (the kernel drops it when its holder dies); one a live process holds is
    left alone, whatever the journal says. A run still ``in_progress`` whose process is
    gone (its run lock is free) is recorded ``interrupted``."""
    report = []
    for txn in store.open_transactions():
        if interrupt.is_set():
            report.append("interrupted: the remaining open transactions are left for later")
            return report
        node = state.nodes.get(txn.node)
        key = node_key(node.spec) if node is not None else None
        if not store.try_node_writer(txn.node, key):
            report.append(
                f"{txn.node}: transaction {txn.id} is in progress in a live process "
                f"({store.node_holder(txn.node, key)}); left alone"
            )
            continue
        try:
            report.append(await _recover_one(state, store, txn))
        finally:
            store.release_node(txn.node, key)
    # Runs killed between nodes (or before their first) have no open transaction: their
    # lock, free since their process died, says they are over.
    report += [
        f"run {run_id} was left in progress by a process that is gone; recorded interrupted"
        for run_id in store.close_abandoned_runs()
    ]
    return report


async def _restore_snapshot(
    state: DesiredState, node: Document, snapshot: Mapping[str, Any]
) -> None:
    """Put ``node`` back to a stored ``snapshot``, in a transaction of its own (recovery
    and ``fazai rollback`` alike)."""
    provider = _provider(node.spec["platform"])
    resources = state.resources_for(node.name)
    async with provider.transaction(node, [], resources, state.source) as undo:
        await undo.rollback(snapshot)


async def _recover_one(state: DesiredState, store: StateStore, txn: Transaction) -> str:
    """Roll back ``txn``; the caller holds its node's writer lock."""
    current = store.transaction(txn.id)
    if current is None or current.status is not TransactionStatus.OPEN:
        return f"{txn.node}: transaction {txn.id} was closed by its owner meanwhile"
    later = store.later_commit(txn.node, txn.id)
    if later is not None:
        # Restoring this snapshot would undo what the later transaction committed (and
        # verified): the node is as that one left it, so this one is closed unrestored.
        why = f"superseded by transaction {later}, committed since; snapshot not restored"
        entry = trails.node_event("node.recovered", txn.run_id, txn.node, "superseded", why)
        store.mark_rolled_back(txn.id, why, audit=entry)
        return (
            f"{txn.node}: open transaction {txn.id} is older than transaction {later}, "
            "committed since: its snapshot was not restored over that; closed"
        )
    node = state.nodes.get(txn.node)
    snapshot, unopened = _stored_snapshot(store, txn)
    if snapshot is None and not current.snapshots and not current.steps:
        # The snapshot is recorded before anything is written: none, nothing written.
        why = "interrupted before its snapshot; nothing written"
        entry = trails.node_event("node.recovered", txn.run_id, txn.node, "closed", why)
        store.mark_rolled_back(txn.id, why, audit=entry)
        return f"{txn.node}: transaction {txn.id} stopped before writing anything; closed"
    if node is None or snapshot is None:
        return f"{txn.node}: open transaction {txn.id} cannot be recovered here"
    note = _secrets_note(unopened)
    # A restore writes outside a journalled transaction of its own: its intent is
    # recorded first (and a trail that refuses the record stops it before any write).
    intent = f"rolling back interrupted transaction {txn.id} to its snapshot"
    store.audit_append(
        trails.node_event("node.recovering", txn.run_id, txn.node, "restoring", intent)
    )
    try:
        await _restore_snapshot(state, node, snapshot)
    except (TimeoutError, FazaiError, OSError) as exc:
        # Still open: the next start tries again (with the escrow key put right, say).
        return f"{txn.node}: rollback of interrupted transaction {txn.id} failed: {exc}{note}"
    why = f"interrupted; rolled back at the next start{note}"
    entry = trails.node_event("node.recovered", txn.run_id, txn.node, "rolled_back", why)
    store.mark_rolled_back(txn.id, why, audit=entry)
    run = store.get_run(txn.run_id)
    if run is not None and run.status is RunStatus.IN_PROGRESS:
        store.record_node(
            txn.run_id, txn.node, NodeStatus.ROLLED_BACK, "interrupted; rolled back later"
        )
        # Only a run whose process is gone: a live one (serve's, on other nodes) records
        # its own end.
        if store.run_abandoned(txn.run_id):
            store.finish_run(txn.run_id, RunStatus.INTERRUPTED)
    return f"{txn.node}: interrupted transaction {txn.id} rolled back to its snapshot{note}"


async def roll_back_run(
    state: DesiredState,
    store: StateStore,
    run_id: int,
    *,
    only: Sequence[str] = (),
    trigger: Trigger = Trigger.CLI,
    lock_timeout: float = 0.0,
    interrupt: Interrupt = NEVER,
    run: RunContext | None = None,
) -> ApplyResult:
    """Restore the snapshots run ``run_id`` took before it wrote, node by node, as a new
    run. Nodes are read from ``state`` (their connection details); the snapshot says what
    to restore."""
    past = store.get_run(run_id)
    if past is None:
        raise FazaiError(f"no run {run_id} in the state store")
    actor = trails.context_for(Trigger(trigger).value, run).actor
    new_run = store.start_run(
        trigger, Command.ROLLBACK, state.source.description, state.revision, actor=actor
    )
    store.note_run(new_run)
    outcomes = []
    for txn in store.run_transactions(run_id):
        if only and txn.node not in only:
            continue
        started = time.monotonic()
        if interrupt.is_set():
            status, message = NodeStatus.SKIPPED, INTERRUPTED_BEFORE
        else:
            status, message = await _restore(
                state, store, txn, run_id, new_run, lock_timeout, interrupt
            )
        seconds = time.monotonic() - started
        restored = trails.node_event(
            "node.restored", new_run, txn.node, status.value, message, restores=run_id
        )
        store.record_node(new_run, txn.node, status, message, seconds, audit=restored)
        cut = message == INTERRUPTED_BEFORE
        outcomes.append(NodeOutcome(txn.node, status, message, 0, seconds, cut))
    final = overall_status(o.status for o in outcomes)
    cut_short = any(o.interrupted for o in outcomes)
    store.finish_run(new_run, RunStatus.INTERRUPTED if cut_short else final)
    return ApplyResult(new_run, tuple(outcomes))


async def _restore(
    state: DesiredState,
    store: StateStore,
    txn: Transaction,
    run_id: int,
    new_run: int,
    lock_timeout: float,
    interrupt: Interrupt,
) -> tuple[NodeStatus, str]:
    """Restore one transaction's snapshot under its node's writer lock. A restore, once
    started, is not stopped half-way by a signal: it is the way back to a known state."""
    node = state.nodes.get(txn.node)
    snapshot, unopened = _stored_snapshot(store, txn)
    if node is None or snapshot is None:
        return NodeStatus.FAILED, "no Node document or no snapshot to restore"
    try:
        async with store.node_writer(
            txn.node,
            lock_timeout,
            key=node_key(node.spec),
            run_id=new_run,
            interrupt=interrupt,
        ):
            # A restore is not a journalled transaction: its intent is recorded first.
            try:
                store.audit_append(
                    trails.node_event(
                        "node.restoring",
                        new_run,
                        txn.node,
                        "restoring",
                        f"restoring the snapshot of run {run_id}",
                        restores=run_id,
                    )
                )
            except FazaiError as exc:
                return NodeStatus.FAILED, f"not restored: the audit trail refused it: {exc}"
            await _restore_snapshot(state, node, snapshot)
        status, message = NodeStatus.CONVERGED, f"restored the snapshot of run {run_id}"
    except Interrupted:
        return NodeStatus.SKIPPED, INTERRUPTED_BEFORE
    except WriterLockedError as exc:
        return NodeStatus.FAILED, f"not restored: {exc}"
    except (FazaiError, OSError, TimeoutError) as exc:
        status, message = NodeStatus.FAILED, f"restore failed: {exc}"
    return status, message + _secrets_note(unopened)
