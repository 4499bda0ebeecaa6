"""Time for schedules: the real clock, and a manual one tests move by hand."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Protocol

MAX_NAP = 60.0  # the real clock re-reads the time at least this often (suspend, NTP steps)


class Clock(Protocol):
    def now(self) -> datetime:
        """An aware datetime."""

    async def sleep_until(self, moment: datetime, stop: asyncio.Event) -> bool:
        """Return True at ``moment``, False as soon as ``stop`` is set."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, moment: datetime, stop: asyncio.Event) -> bool:
        # Short naps against the wall clock rather than one long monotonic sleep: after a
        # laptop resumes or the clock is stepped, the schedule fires at the right time.
        while not stop.is_set():
            left = (moment - self.now()).total_seconds()
            if left <= 0:
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), min(left, MAX_NAP))
        return False


class ManualClock:
    """A clock that moves only when told: ``advance``/``set`` wake every sleeper whose
    moment has come. For tests of schedules that must not wait for real time."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self._now = start
        self._moved = asyncio.Event()
        self.sleepers = 0  # coroutines in sleep_until right now

    def now(self) -> datetime:
        return self._now

    async def set(self, moment: datetime) -> None:
        self._now = moment
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()
        await asyncio.sleep(0)

    async def advance(self, delta: timedelta) -> None:
        await self.set(self._now + delta)

    async def sleeping(self, count: int = 1, timeout: float = 10.0) -> None:
        """Wait (real time) until ``count`` coroutines sleep on this clock."""
        async with asyncio.timeout(timeout):
            while self.sleepers < count:
                await asyncio.sleep(0.005)

    async def sleep_until(self, moment: datetime, stop: asyncio.Event) -> bool:
        self.sleepers += 1
        try:
            while self._now < moment and not stop.is_set():
                moved = asyncio.ensure_future(self._moved.wait())
                stopped = asyncio.ensure_future(stop.wait())
                try:
                    await asyncio.wait({moved, stopped}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    moved.cancel()
                    stopped.cancel()
            return not stop.is_set()
        finally:
            self.sleepers -= 1
