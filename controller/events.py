"""Live events: what the controller is doing, as it does it.

The reconcile loop and the engine publish; the HTTP API's server-sent-events stream,
``fazai watch``, the Prometheus metrics and the notifiers subscribe. Publishing never
blocks and never fails: a subscriber that cannot keep up loses its oldest events (its
queue counts them: :attr:`Subscription.lost`), it never slows an apply down.

Event data is plain JSON-able values and is redacted of secrets before it is kept. A big
value (a plan's items) is redacted in a thread first (:func:`redact_in_thread`) and
published wrapped in :class:`Redacted`, so that the event loop, which publishes, is not
held up walking it; publishing itself stays on the loop (the queues are not thread-safe).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from controller.store.redact import MASK, is_secret_key, redact


class EventType(StrEnum):
    """Every kind of event, with the data keys it carries (besides ``source``)."""

    RECONCILE_QUEUED = "reconcile.queued"  # reason, revision?, coalesced
    RUN_STARTED = "run.started"  # run_id, command, revision, trigger, mode (plan runs)
    NODE_READ = "node.read"  # run_id, node, changes (count), error, seconds, permanent
    DRIFT_DETECTED = "drift.detected"  # run_id, node, revision, mode, changes, items (plan JSON)
    APPROVAL_PENDING = "approval.pending"  # approval_id, revision, nodes, replaces
    CHANGE_APPLIED = "change.applied"  # run_id, node, kind, name, action
    NODE_VERIFIED = "node.verified"  # run_id, node, changes (count)
    NODE_ROLLED_BACK = "node.rolled_back"  # run_id, node, reason
    NODE_FAILED = "node.failed"  # run_id, node, reason
    RUN_FINISHED = "run.finished"  # run_id, status, seconds, command, revision
    SOURCE_ERROR = "source.error"  # message, retry_in (seconds), permanent
    SIGNATURE_REFUSED = "signature.refused"  # revision, reason
    AGENT_TOKEN = "agent.token"  # session, text
    AGENT_ACTION = "agent.action"  # session, goal, node, index, action (normalized JSON)
    AGENT_OBSERVATION = "agent.observation"  # session, goal, node, index, text (masked)
    AGENT_FINISHED = "agent.finished"  # session, goal, node, outcome, path, reason, spent
    # The model runtime (controller.llm.chain); ``request`` ties one completion's events.
    # No prompt text in any: a token event carries a piece of the answer only.
    MODEL_TOKEN = "model.token"  # request, role, session, backend, index, text, restart
    MODEL_FALLBACK = "model.fallback"  # request, role, backend, error, message, chunks
    # request, role, backend, model, finish_reason, fallbacks, usage {prompt, completion,
    # cached}, ttft_s, total_s, per_second (no key names "token": the bus would mask it)
    MODEL_ANSWER = "model.answer"


@dataclass(frozen=True)
class Event:
    id: int
    type: EventType
    time: datetime
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type.value,
            "time": self.time.isoformat(),
            "data": dict(self.data),
        }


@dataclass(frozen=True)
class Redacted:
    """An event value that has already been through :func:`redact` (make one with
    :func:`redact_in_thread`, or from the JSON of masked plan items, plan/masked.py):
    :meth:`EventBus.publish` keeps it as it is."""

    value: Any


async def redact_in_thread(value: Any) -> Redacted:
    """``value`` redacted in a worker thread: for values big enough that walking them
    would stall the event loop."""
    return Redacted(await asyncio.to_thread(redact, value))


def _redacted(data: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(value, Redacted):
            out.update(redact({key: value}))
        elif is_secret_key(key) and value.value is not None:
            out[key] = MASK  # as redact() would: the name alone makes it a secret
        else:
            out[key] = value.value
    return out


class Subscription(asyncio.Queue[Event]):
    """A subscriber's queue. ``lost``: the events it will never get, because it read too
    slowly (its oldest were dropped) or because it resumed after events the bus no longer
    keeps. Ids alone cannot tell a reader that: a filtered stream has gaps of its own."""

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize)
        self.lost = 0


Publish = Callable[..., Event]
"""``publish(EventType.X, key=value, ...)``: the seam the engine takes, so it does not
depend on the bus."""


def first_id() -> int:
    """The first event id of a process: the time in microseconds since the epoch.

    Ids must keep increasing across restarts of ``fazai serve``: a client resuming with
    the ``Last-Event-ID`` of the previous process must get the new process's events, not
    wait until a counter restarted at 1 passes its id. A process would have to publish
    more than one event per microsecond of its life for the next one to start below its
    last id. The value (about 1.8e15) stays under 2**53, exact in JavaScript's numbers."""
    return time.time_ns() // 1000


class EventBus:
    """In-process publish/subscribe with a short history for late or reconnecting
    subscribers (SSE ``Last-Event-ID``).

    Ids increase by one per event from ``start`` (default :func:`first_id`), so they are
    unique and increasing across restarts too, and a gap tells a subscriber it missed
    some. An ``after`` id above any this bus has given cannot be one of its own (the
    clock of an earlier process was ahead): such a subscriber gets everything kept."""

    def __init__(
        self, history: int = 1000, queue_size: int = 1000, start: int | None = None
    ) -> None:
        self.start = first_id() if start is None else start
        self._ids = itertools.count(self.start)
        self._last = self.start - 1  # the newest id given
        self._history: deque[Event] = deque(maxlen=history)
        self._subscribers: set[Subscription] = set()
        self._queue_size = queue_size

    def publish(self, type: EventType, *, ephemeral: bool = False, **data: Any) -> Event:
        """Keep and deliver an event; on the loop's thread only. ``data`` is redacted
        here, except values wrapped in :class:`Redacted` (already redacted).

        ``ephemeral``: deliver it to the live subscribers but keep it out of the replay
        history, for events that come in floods and are worth nothing later (a model's
        tokens: one answer makes hundreds), so that they cannot push the run and
        approval events a reconnecting subscriber needs out of the bounded history. It
        still takes an id; a subscriber resuming after it counts it in ``lost`` (it will
        never get it). No event carries a data key named ``ephemeral``."""
        event = Event(next(self._ids), EventType(type), datetime.now(UTC), _redacted(data))
        self._last = event.id
        if not ephemeral:
            self._history.append(event)
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()  # the slow subscriber loses its oldest event
                queue.lost += 1
            queue.put_nowait(event)
        return event

    def history(self, after: int = 0) -> list[Event]:
        if after > self._last:
            after = 0  # not an id of this bus: see the class's docstring
        return [e for e in self._history if e.id > after]

    @asynccontextmanager
    async def subscribe(self, after: int | None = None) -> AsyncIterator[Subscription]:
        """A queue receiving every event published from now on; with ``after``, first
        the kept events newer than that id (``lost`` counts those of this bus after it
        that are no longer kept)."""
        queue = Subscription(self._queue_size)
        if after is not None:
            kept = self.history(after)
            replayed = kept[-self._queue_size :]
            queue.lost = len(kept) - len(replayed)  # more than a queue holds
            if self.start - 1 <= after < self._last:  # an id of this bus: count the rest
                first = kept[0].id if kept else self._last + 1
                queue.lost += first - after - 1  # published after it, no longer kept
            for event in replayed:
                queue.put_nowait(event)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)


def discard(type: EventType, **data: Any) -> Event:
    """A ``Publish`` that keeps nothing: for CLI runs with no one listening."""
    return Event(0, EventType(type), datetime.now(UTC), {})
