"""When a failing source is tried again: from what its failure says about retrying.

A temporary failure (a timeout, a refused connection, 5xx) backs off exponentially with
jitter; one that named its wait (``Retry-After``) waits that; a permanent one (refused
credentials, a host key that does not verify) waits the ceiling at once, since a faster
retry cannot help (a new commit still reconciles at once: the triggers ask for it).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from controller.errors import RetryDecision


class Backoff:
    """``next()`` gives the wait before the next try: ``initial * 2**n``, capped at
    ``maximum``, then scaled by a random factor in [0.5, 1] so that many sources failing
    at once (a shared git server down) do not retry in lockstep. ``after(decision)``
    follows a failure's own advice. ``reset()`` after a success."""

    def __init__(
        self,
        initial: float,
        maximum: float,
        *,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError("backoff needs 0 < initial <= maximum")
        self.initial = initial
        self.maximum = maximum
        self.failures = 0
        self._rand = rand

    def next(self) -> float:
        ceiling = min(self.maximum, self.initial * 2.0 ** min(self.failures, 62))
        self.failures += 1
        return ceiling * (0.5 + 0.5 * self._rand())

    def after(self, decision: RetryDecision) -> float:
        """The wait after a failure classified as ``decision``: the ceiling for a
        permanent one; the other side's ``delay`` (not under ``initial``, not over the
        ceiling: the ceiling is the longest a source may go unchecked) for a temporary
        one that named it; else :meth:`next`."""
        if decision.permanent:
            self.failures += 1
            return self.maximum
        if decision.delay is not None:
            self.failures += 1
            return min(self.maximum, max(self.initial, decision.delay))
        return self.next()

    def reset(self) -> None:
        self.failures = 0
