"""The per-source "wanted" slot: every notification asks for one reconcile, and requests
that arrive before it starts are merged into it.

A notification (webhook, watch, poll, drift timer, API) puts a :class:`Request`; the
source's worker takes one, runs it, and takes the next. While a reconcile runs, any number
of later notifications collapse into a single follow-up, which reads the branch's head
when it starts, so it reconciles the newest commit. Before starting, the worker lets a
burst settle: it waits until ``settle`` seconds pass with no new request, but never more
than ``settle_max`` after the first, so a burst of pushes becomes one reconcile of the
newest commit while a lone commit still starts within a fraction of a second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from controller.store import Trigger


@dataclass(frozen=True)
class Request:
    reason: str  # what asked: start, webhook, watch, poll, drift, api, retry
    trigger: Trigger  # recorded with the runs
    revision: str | None = None  # the commit a webhook named, if any (a hint)
    # Plan even if the head is the revision last reconciled (drift checks, API, retries);
    # without it a request for an already reconciled head is dropped.
    force: bool = False
    count: int = 1  # notifications merged into this request
    queued_at: float = 0.0  # monotonic time of the first of them
    # The API tokens that asked (see reconcile.actors): merged requests keep every one,
    # so none of them can approve what the one pass plans.
    actors: frozenset[str] = frozenset()

    def merge(self, later: Request) -> Request:
        return replace(
            later,
            force=self.force or later.force,
            count=self.count + later.count,
            queued_at=self.queued_at,
            actors=self.actors | later.actors,
        )


class Wanted:
    def __init__(
        self,
        settle: float = 0.1,
        settle_max: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settle = max(0.0, settle)
        self.settle_max = max(self.settle, settle_max if settle_max is not None else 5 * settle)
        self._clock = clock
        self._request: Request | None = None
        self._last = 0.0
        self._event = asyncio.Event()

    @property
    def pending(self) -> Request | None:
        return self._request

    def put(self, request: Request) -> bool:
        """Ask for a reconcile; False when the request merged into one already waiting."""
        now = self._clock()
        self._last = now
        if self._request is None:
            self._request = replace(request, queued_at=now)
            self._event.set()
            return True
        self._request = self._request.merge(request)
        return False

    async def take(self) -> Request:
        """The next request, once its burst has settled."""
        while True:
            await self._event.wait()
            request = self._request
            if request is None:  # pragma: no cover - set only with a request
                self._event.clear()
                continue
            now = self._clock()
            quiet_at = self._last + self.settle
            cap_at = request.queued_at + self.settle_max
            wake = min(quiet_at, cap_at)
            if now < wake:
                await asyncio.sleep(wake - now)
                continue
            taken, self._request = self._request, None
            self._event.clear()
            assert taken is not None
            return taken
