"""What every source worker of one controller shares: the bus, the store, the node locks,
the drift table, the pending approvals and whether the controller is stopping."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from controller.events import EventBus, EventType, Publish
from controller.model.state import DesiredState
from controller.reconcile.config import ControllerConfig
from controller.reconcile.handle import NodeDrift
from controller.reconcile.locks import NodeLocks
from controller.store import StateStore

if TYPE_CHECKING:
    from controller.events import Event


@dataclass
class Shared:
    config: ControllerConfig
    events: EventBus
    store: StateStore
    locks: NodeLocks = field(default_factory=NodeLocks)
    drift: dict[tuple[str, str], NodeDrift] = field(default_factory=dict)  # (source, node)
    # Transactions found open when the controller started: a killed controller's, to be
    # rolled back before their nodes are touched again.
    interrupted: set[int] = field(default_factory=set)
    # Applies in flight (source passes and approvals): shutdown waits for them.
    applies: set[asyncio.Task[Any]] = field(default_factory=set)
    stopping: bool = False
    # (source, node) -> the node's labels at the last pass that left it in sync (read
    # with no changes, or converged): what approvers' node selectors are judged by, with
    # the labels of the plan itself (see PendingApproval.settled).
    settled: dict[tuple[str, str], Mapping[str, str]] = field(default_factory=dict)
    # source -> how many passes have started for it, and the desired state the last one
    # planned (its policies are the source's latest): an approval applies only if no pass
    # started since its plan was offered, and is judged by the latest policies.
    generations: dict[str, int] = field(default_factory=dict)
    latest: dict[str, DesiredState] = field(default_factory=dict)

    def begin_pass(self, source: str, state: DesiredState) -> int:
        """A pass of ``source`` starts planning ``state`` (the caller holds its nodes'
        locks): offers made before it are no longer the latest."""
        self.generations[source] = self.generations.get(source, 0) + 1
        self.latest[source] = state
        return self.generations[source]

    def settle(self, source: str) -> None:
        """After a pass or an apply of ``source``: its nodes now in sync settle their
        labels; nodes gone from its documents are forgotten."""
        for key in [k for k in self.settled if k[0] == source and k not in self.drift]:
            del self.settled[key]
        for key, drift in self.drift.items():
            if key[0] == source and drift.error is None and drift.drifted == 0:
                self.settled[key] = dict(drift.labels)

    def publisher(self, **context: Any) -> Publish:
        """A Publish adding ``context`` (source, run_id, trigger...) to every event; the
        caller's own keys win."""

        def publish(type: EventType, **data: Any) -> Event:
            return self.events.publish(type, **{**context, **data})

        return publish
