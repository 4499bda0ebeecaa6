"""Plans waiting for a person in ``manual`` mode, and applying exactly the approved one.

A source's pass offers the plan of its manual nodes; an identical offer keeps the pending
approval (and its id), a different one replaces it, and a pass that finds nothing to do
for them withdraws it. ``approve`` applies the stored plan with the engine, which reads
every node again first and refuses a node whose live state no longer matches the plan;
``abort`` drops it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from controller.engine import apply as applying
from controller.events import Event, EventType
from controller.model.state import DesiredState
from controller.pipeline import context, writes
from controller.plan import plan_json
from controller.plan.items import Plan
from controller.reconcile.handle import ControllerStopping, PendingApproval, UnknownApproval
from controller.reconcile.shared import Shared
from controller.store import Trigger

log = logging.getLogger("fazai.reconcile")

Applied = Callable[[str, DesiredState, applying.ApplyResult, Any], None]


@dataclass(frozen=True)
class _Entry:
    approval: PendingApproval
    state: DesiredState
    plan: Plan
    pruning: Any  # the prune.Pruning the plan was made with, for its releases
    fingerprint: str


class Approvals:
    def __init__(self, shared: Shared, applied: Applied) -> None:
        self.shared = shared
        self._applied = applied
        self._entries: dict[str, _Entry] = {}  # by approval id

    def pending(self) -> list[PendingApproval]:
        return sorted((e.approval for e in self._entries.values()), key=lambda a: a.created)

    def _of_source(self, source: str) -> _Entry | None:
        return next((e for e in self._entries.values() if e.approval.source == source), None)

    def offer(
        self,
        source: str,
        state: DesiredState,
        plan: Plan,
        pruning: Any,
        *,
        required: int = 1,
        reasons: tuple[str, ...] = (),
        actor: str = "",
    ) -> PendingApproval:
        """Register ``plan`` (its nodes all manual or held back by a policy, all with
        changes) for approval; the pending approval of the same plan when there is one
        already. ``required``: distinct approvals it needs; ``reasons``: the policies'
        messages asking for them; ``actor``: who triggered the change."""
        document = plan_json.to_dict(plan)
        fingerprint = json.dumps(
            [plan.revision, document["changes"], required, list(reasons), actor], sort_keys=True
        )
        existing = self._of_source(source)
        if existing is not None and existing.fingerprint == fingerprint:
            return existing.approval
        if existing is not None:
            del self._entries[existing.approval.id]
        approval = PendingApproval(
            id=secrets.token_hex(6),
            source=source,
            revision=plan.revision,
            created=datetime.now(UTC),
            nodes=tuple(n.node for n in plan.nodes),
            plan=document,
            required=max(1, required),
            reasons=tuple(reasons),
            actor=actor,
        )
        self._entries[approval.id] = _Entry(approval, state, plan, pruning, fingerprint)
        self.shared.events.publish(
            EventType.APPROVAL_PENDING,
            source=source,
            approval_id=approval.id,
            revision=approval.revision,
            nodes=list(approval.nodes),
            replaces=existing.approval.id if existing is not None else None,
        )
        return approval

    def withdraw(self, source: str) -> None:
        existing = self._of_source(source)
        if existing is not None:
            del self._entries[existing.approval.id]
            log.info(
                "%s: approval %s withdrawn: nothing left to apply", source, existing.approval.id
            )

    def abort(self, approval_id: str) -> None:
        entry = self._entries.pop(approval_id, None)
        if entry is None:
            raise UnknownApproval(approval_id)
        log.info("%s: approval %s aborted", entry.approval.source, approval_id)

    async def approve(self, approval_id: str) -> int:
        """Start applying the approved plan; the run id once the run is recorded (the
        apply goes on in the background, holding its nodes' locks)."""
        if self.shared.stopping:
            raise ControllerStopping("the controller is stopping; approve again after it restarts")
        entry = self._entries.pop(approval_id, None)
        if entry is None:
            raise UnknownApproval(approval_id)
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

        async def work() -> applying.ApplyResult:
            async with self.shared.locks.hold(entry.approval.nodes):
                # Checked against a fresh plan first: a deny now refuses the approval.
                result = await writes.apply_approved(
                    entry.state,
                    entry.plan,
                    self.shared.store,
                    context.approval(entry.approval.actor, entry.approval.source),
                    granted=entry.approval.required,
                    concurrency=self.shared.config.concurrency,
                    trigger=Trigger.API,
                    publish=publish,
                )
            self._applied(entry.approval.source, entry.state, result, entry.pruning)
            return result

        task = asyncio.create_task(work(), name=f"approval-{approval_id}")
        self.shared.applies.add(task)
        task.add_done_callback(self.shared.applies.discard)
        waiting: set[asyncio.Future[Any]] = {task, started}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if started.done():
            return started.result()
        return task.result().run_id  # raises what the apply raised
