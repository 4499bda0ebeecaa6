"""One lock per node, so that two reconciles never touch the same node at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable


class NodeLocks:
    """Locks by node name, shared by every source, approval and drift check of one
    controller. :meth:`hold` takes several at once, always in name order, so two holders
    of overlapping sets cannot deadlock."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, node: str) -> asyncio.Lock:
        return self._locks.setdefault(node, asyncio.Lock())

    def locked(self, node: str) -> bool:
        return node in self._locks and self._locks[node].locked()

    @contextlib.asynccontextmanager
    async def hold(self, nodes: Iterable[str]) -> AsyncIterator[None]:
        taken: list[asyncio.Lock] = []
        try:
            for name in sorted(set(nodes)):
                lock = self._lock(name)
                await lock.acquire()
                taken.append(lock)
            yield
        finally:
            for lock in reversed(taken):
                lock.release()
