"""Plans waiting for people, and applying exactly the approved one.

A source's pass offers the plan of its manual nodes (or of the items a policy holds for
approval); an identical offer keeps the pending approval (its id and the approvals it
has), a different one replaces it, and a pass that finds nothing to do for them withdraws
it. ``approve`` records who approved; once ``required`` distinct names have, it applies
the stored plan with the engine, which reads every node again first and refuses a node
whose live state no longer matches the plan; ``abort`` drops it.

The names that set the change going (``actors``: see ``reconcile.actors``) cannot
approve it. Who triggered a pass is no part of the plan: the same plan offered again by
another trigger keeps its id and its approvals, and adds that trigger's actors (an
approval already given by one of them stops counting). Recording and the decision to
apply happen with no ``await`` in between, so of two approvals arriving at once exactly
one completes the count and applies, once. Pending approvals, and the approvals they have
collected, live in memory: a restart forgets them, and the next pass offers the plan
again, to be approved again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from controller.engine import trail
from controller.engine.prune import Pruning
from controller.events import Event, EventType
from controller.model.state import DesiredState
from controller.pipeline import context, writes
from controller.pipeline.errors import PolicyRefused
from controller.plan import plan_json
from controller.plan.items import Plan
from controller.plan.verdicts import RunContext
from controller.reconcile import actors as actorship
from controller.reconcile.handle import (
    ApprovalRefused,
    ApprovalSuperseded,
    ControllerStopping,
    PendingApproval,
    UnknownApproval,
)
from controller.reconcile.shared import Shared
from controller.store import Trigger

log = logging.getLogger("fazai.reconcile")

Applied = Callable[[str, DesiredState, writes.ApplyResult, "Pruning | None"], None]


@dataclass(frozen=True)
class _Entry:
    approval: PendingApproval
    state: DesiredState
    plan: Plan
    pruning: Pruning | None  # the prune the plan was made with, for its releases
    fingerprint: str  # the plan and its demands; not who triggered it
    generation: int  # the source's pass that offered it last (Shared.generations)
    # The identities each approver so far gave, to check them again when actors join.
    identities: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Per node, the run its policies judged it for at the offer (trigger, mode, actor):
    # the approval's re-check judges it for the same.
    runs: Mapping[str, RunContext] = field(default_factory=dict)
    applying: bool = False  # the count is complete and its apply waits for the locks


def is_actor(actors: str | Sequence[str], name: str, identities: Sequence[str] = ()) -> bool:
    """Whether approver ``name`` is one of ``actors`` (see :func:`actors.is_actor`)."""
    return actorship.is_actor(actorship.normalize(actors), name, identities)


class Approvals:
    def __init__(self, shared: Shared, applied: Applied) -> None:
        self.shared = shared
        self._applied = applied
        self._entries: dict[str, _Entry] = {}  # by approval id

    def _still_latest(self, approval_id: str, by: str, offered: PendingApproval) -> _Entry:
        """The entry of ``approval_id`` once its apply holds the locks, taken out of the
        pending ones, if it is still the source's latest offer with its approvals all
        standing; else ApprovalSuperseded (recorded in the audit trail), nothing written."""
        entry = self._entries.get(approval_id)
        reason = ""
        if entry is None:
            reason = "a pass replaced or withdrew the plan, or it was aborted"
        elif entry.generation != self.shared.generations.get(entry.approval.source, 0):
            reason = "a pass started since the plan was offered"
            del self._entries[approval_id]  # the next pass offers it again
        elif entry.approval.missing:
            reason = "approvals stopped counting (their names triggered a later pass)"
            self._entries[approval_id] = replace(entry, applying=False)
        else:
            del self._entries[approval_id]
            return entry
        shown = entry.approval if entry is not None else offered
        trail.approval_event(self.shared.store, shown, "refused", actor=by, reason=reason)
        raise ApprovalSuperseded(
            f"approval {approval_id} is no longer the latest offer ({reason}); nothing is "
            "written: see the pending approvals"
        )

    def pending(self) -> list[PendingApproval]:
        return sorted((e.approval for e in self._entries.values()), key=lambda a: a.created)

    def _of_source(self, source: str) -> _Entry | None:
        return next((e for e in self._entries.values() if e.approval.source == source), None)

    def offer(
        self,
        source: str,
        state: DesiredState,
        plan: Plan,
        pruning: Pruning | None,
        *,
        required: int = 1,
        reasons: tuple[str, ...] = (),
        actor: str | actorship.Actors | Iterable[str] = (),
        runs: Mapping[str, RunContext] | None = None,
    ) -> PendingApproval:
        """Register ``plan`` (its nodes all manual or held back by a policy, all with
        changes) for approval by ``required`` distinct approvers other than its actors
        (``actor``: one name, several, or the pass's Actors); ``reasons``: the policies'
        messages asking for it. The pending approval of the same plan (same changes, same
        demands) when there is one already, with these actors added to its own."""
        document = plan_json.to_dict(plan)
        names = actorship.normalize(actor)
        fingerprint = json.dumps(
            [plan.revision, document["changes"], required, list(reasons)], sort_keys=True
        )
        existing = self._of_source(source)
        generation = self.shared.generations.get(source, 0)
        if existing is not None and existing.fingerprint == fingerprint:
            existing = replace(existing, generation=generation, runs=dict(runs or {}))
            self._entries[existing.approval.id] = existing
            return self._join(existing, names)
        if existing is not None:
            del self._entries[existing.approval.id]
        approval = PendingApproval(
            id=secrets.token_hex(6),
            source=source,
            revision=plan.revision,
            created=datetime.now(UTC),
            nodes=tuple(n.node for n in plan.nodes),
            plan=document,
            required=max(required, 1),
            reasons=tuple(reasons),
            actors=names,
            labels={
                n.node: dict(state.nodes[n.node].labels) if n.node in state.nodes else {}
                for n in plan.nodes
            },
            settled={n.node: self.shared.settled.get((source, n.node)) for n in plan.nodes},
        )
        self._entries[approval.id] = _Entry(
            approval, state, plan, pruning, fingerprint, generation, runs=dict(runs or {})
        )
        self.shared.events.publish(
            EventType.APPROVAL_PENDING,
            source=source,
            approval_id=approval.id,
            revision=approval.revision,
            nodes=list(approval.nodes),
            replaces=existing.approval.id if existing is not None else None,
        )
        return approval

    def _join(self, entry: _Entry, names: tuple[str, ...]) -> PendingApproval:
        """The same plan offered again: its actors are those of every offer, and an
        approval given by one of them (before it triggered this pass) no longer counts."""
        pending = entry.approval
        union = tuple(dict.fromkeys((*pending.actors, *names)))
        if union == pending.actors:
            return pending
        kept = tuple(
            n
            for n in pending.approved_by
            if not actorship.is_actor(union, n, entry.identities.get(n, ()))
        )
        for dropped in (n for n in pending.approved_by if n not in kept):
            log.warning(
                "%s: approval %s: %s's approval no longer counts: it triggered the plan since",
                pending.source, pending.id, dropped,
            )  # fmt: skip
        updated = replace(pending, actors=union, approved_by=kept)
        self._entries[pending.id] = replace(entry, approval=updated)
        return updated

    def withdraw(self, source: str) -> None:
        existing = self._of_source(source)
        if existing is not None:
            del self._entries[existing.approval.id]
            log.info(
                "%s: approval %s withdrawn: nothing left to apply", source, existing.approval.id
            )

    def abort(self, approval_id: str, by: str = "") -> None:
        entry = self._entries.pop(approval_id, None)
        if entry is None:
            raise UnknownApproval(approval_id)
        trail.approval_event(self.shared.store, entry.approval, "aborted", actor=by or "?")
        log.info("%s: approval %s aborted by %s", entry.approval.source, approval_id, by or "?")

    async def approve(
        self, approval_id: str, by: str, identities: Sequence[str] = ()
    ) -> int | None:
        """Record ``by``'s approval (``identities``: the emails and names that token
        commits under); None while fewer than ``required`` distinct names have approved
        (a name approving twice counts once). The approval that completes the count
        starts applying the plan and returns its run id once the run is recorded (the
        apply goes on in the background, holding its nodes' locks)."""
        if self.shared.stopping:
            raise ControllerStopping("the controller is stopping; approve again after it restarts")
        entry = self._entries.get(approval_id)
        if entry is None:
            raise UnknownApproval(approval_id)
        pending = entry.approval
        if entry.applying:
            raise ApprovalSuperseded(f"approval {approval_id} is already being applied")
        if not by:
            # Counting a nameless approval would let it stand in for a person.
            raise ApprovalRefused(f"approval {approval_id}: an approval needs the approver's name")
        if actorship.is_actor(pending.actors, by, identities):
            trail.approval_event(
                self.shared.store, pending, "refused", actor=by, reason="the actor who triggered it"
            )
            raise ApprovalRefused(
                f"approval {approval_id}: {by!r} triggered this change (asked for its pass, or "
                "authored or committed its commit) and cannot approve it; another approver must"
            )
        names = pending.approved_by if by in pending.approved_by else (*pending.approved_by, by)
        trail.approval_event(self.shared.store, pending, "approved", actor=by)
        known = {**entry.identities, by: tuple(identities)}
        if len(names) < pending.required:
            updated = replace(pending, approved_by=names)
            self._entries[approval_id] = replace(entry, approval=updated, identities=known)
            log.info(
                "%s: approval %s approved by %s (%d of %d)",
                pending.source,
                approval_id,
                by,
                len(names),
                pending.required,
            )
            return None
        # No await since the get: nobody else completes the count. The entry stays until
        # the apply holds its nodes' locks: a pass running now may still replace it.
        self._entries[approval_id] = replace(
            entry, approval=replace(pending, approved_by=names), identities=known, applying=True
        )
        approvers = ", ".join(names)
        log.info("%s: approval %s approved by %s", pending.source, approval_id, approvers)
        loop = asyncio.get_running_loop()
        started: asyncio.Future[int] = loop.create_future()
        base = self.shared.publisher(
            source=entry.approval.source, trigger=Trigger.API.value, approval_id=approval_id
        )

        def publish(type: EventType, **data: Any) -> Event:
            event = base(type, **data)
            if type is EventType.RUN_STARTED and not started.done():
                started.set_result(int(data["run_id"]))
            return event

        async def work() -> writes.ApplyResult:
            async with self.shared.locks.hold(entry.approval.nodes):
                current = self._still_latest(approval_id, by, pending)
                offered = current.approval
                triggered = ", ".join(offered.actors)
                approvers = ", ".join(offered.approved_by)
                # Checked against a fresh plan first, by the source's latest policies, for
                # the runs the offer judged: a deny now refuses the approval.
                try:
                    result = await writes.apply_approved(
                        current.state,
                        current.plan,
                        self.shared.store,
                        context.approval(triggered or None, offered.source),
                        run_for=current.runs,
                        policies=self.shared.latest.get(offered.source, current.state),
                        granted=offered.required,
                        concurrency=self.shared.config.concurrency,
                        trigger=Trigger.API,
                        publish=publish,
                        recorded=RunContext(
                            Trigger.API.value,
                            "approved",
                            f"{triggered or 'unknown'}, approved by {approvers}",
                            offered.source,
                        ),
                    )
                except (PolicyRefused, writes.PlanChanged) as exc:
                    trail.approval_event(
                        self.shared.store, offered, "refused", actor=by, reason=str(exc)
                    )
                    raise
            self._applied(offered.source, current.state, result, current.pruning)
            return result

        task = asyncio.create_task(work(), name=f"approval-{approval_id}")
        self.shared.applies.add(task)
        task.add_done_callback(self.shared.applies.discard)
        waiting: set[asyncio.Future[Any]] = {task, started}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if started.done():
            return started.result()
        return task.result().run_id  # raises what the apply raised
