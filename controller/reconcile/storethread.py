"""A source's store calls, off the event loop, in the order they were made.

Every store write is an fsync'd SQLite commit, and a plan's is also the redaction and
JSON encoding of every planned object: with a plan of a thousand objects that is a
second of CPU and disk during which ``/healthz``, the SSE stream and every other source
would stand still if it ran on the loop. The store is thread-safe (one lock serializes
its connection), so its calls can run in a thread.

One thread per source rather than ``asyncio.to_thread``: a source's calls then happen in
the order it made them even when its task is cancelled half-way, so the ``interrupted``
mark of a cancelled run (:meth:`StoreThread.last`) lands after, never before, a write
still in flight for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class StoreThread:
    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"fazai-store-{name}")

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` on the store thread, after the calls queued before it.

        Cancelled before it started, it never runs; once started, it completes (a
        transaction is never cut in half)."""
        return await asyncio.wrap_future(self._executor.submit(fn, *args, **kwargs))

    async def last(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> None:
        """``fn`` queued behind everything already queued, for a cancelled task's cleanup:
        waited for, but a second cancellation does not unqueue it."""
        future = asyncio.wrap_future(self._executor.submit(fn, *args, **kwargs))
        await asyncio.shield(future)

    def close(self) -> None:
        """Waits for the calls still queued (so none outlives the store), then ends."""
        self._executor.shutdown(wait=True)
