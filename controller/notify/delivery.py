"""Delivering notices to one target: a queue, a rate limit and retries with backoff.

Each target has its own worker task, so a target that is down (timeouts, 5xx) delays only
its own messages; the notifier's event loop never waits for a send. The queue is bounded:
when a target has been unreachable for long enough to fill it, its oldest notices are
dropped, with a log line saying how many.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from controller.notify.notice import Notice
from controller.notify.senders import DeliveryError, Sender
from controller.notify.settings import Target

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


class TokenBucket:
    """``messages`` per ``per`` seconds, bursts up to ``messages``."""

    def __init__(
        self,
        messages: int,
        per: float,
        *,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = float(messages)
        self.rate = messages / per  # tokens per second
        self._tokens = self.capacity
        self._clock = clock
        self._sleep = sleep
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def acquire(self) -> float:
        """Take a token, waiting for one; returns the seconds waited."""
        waited = 0.0
        self._refill()
        while self._tokens < 1:
            wait = (1 - self._tokens) / self.rate
            await self._sleep(wait)
            waited += wait
            self._refill()
        self._tokens -= 1
        return waited


@dataclass
class Stats:
    sent: int = 0
    failed: int = 0  # gave up: permanent failure or attempts exhausted
    retried: int = 0
    dropped: int = 0  # pushed out of a full queue
    rate_limited: int = 0  # had to wait for the rate limit


class Delivery:
    def __init__(
        self,
        target: Target,
        sender: Sender,
        *,
        queue_size: int = 200,
        sleep: Sleep = asyncio.sleep,
        overrun: float = 5.0,
    ) -> None:
        """``overrun``: how long past the target's timeout a send may take before it is
        cut (senders enforce the timeout themselves; this is the safety net)."""
        self.target = target
        self._overrun = overrun
        self.sender = sender
        self.stats = Stats()
        self._sleep = sleep
        self._queue: deque[Notice] = deque()
        self._size = queue_size
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        limit = target.rate_limit
        self._bucket = TokenBucket(limit.messages, limit.per, sleep=sleep)

    def offer(self, notice: Notice) -> bool:
        """Queue ``notice`` if this target wants its kind; never waits."""
        if notice.kind not in self.target.events:
            return False
        if len(self._queue) >= self._size:
            self._queue.popleft()
            self.stats.dropped += 1
            log.warning(
                "notification target %s: queue full (%d); dropped the oldest notice",
                self.target.name,
                self._size,
            )
        self._queue.append(notice)
        self._idle.clear()
        self._ready.set()
        return True

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def idle(self) -> None:
        """Wait until every queued notice has been sent or given up on."""
        await self._idle.wait()

    async def run(self) -> None:
        """Send queued notices until cancelled."""
        try:
            while True:
                if not self._queue:
                    self._idle.set()
                    self._ready.clear()
                    await self._ready.wait()
                    continue
                notice = self._queue.popleft()
                if await self._bucket.acquire() > 0:
                    self.stats.rate_limited += 1
                await self._deliver(notice)
        finally:
            await self.sender.close()

    async def _deliver(self, notice: Notice) -> None:
        retry = self.target.retry
        name = self.target.name
        for attempt in range(1, retry.attempts + 1):
            try:
                async with asyncio.timeout(self.target.timeout + self._overrun):
                    await self.sender.send(notice)
                self.stats.sent += 1
                log.info("notification target %s: sent %s", name, notice.title)
                return
            except TimeoutError:
                error = DeliveryError(name, "the send did not finish in time", retryable=True)
            except DeliveryError as exc:
                error = exc
            except Exception as exc:
                # A bug in a sender: give up on this notice, keep the worker. The type only:
                # a third-party message could hold the target's URL.
                error = DeliveryError(name, f"unexpected {type(exc).__name__}", retryable=False)
            if not error.retryable or attempt == retry.attempts:
                self.stats.failed += 1
                tried = f" after {attempt} attempt(s)" if error.retryable else ""
                log.error(
                    "notification target %s: gave up on %r%s: %s",
                    name,
                    notice.title,
                    tried,
                    error.message,
                )
                return
            delay = max(retry.delay(attempt), min(error.retry_after or 0.0, retry.max_backoff))
            self.stats.retried += 1
            log.warning(
                "notification target %s: attempt %d failed (%s); retrying in %.1fs",
                name,
                attempt,
                error.message,
                delay,
            )
            await self._sleep(delay)
