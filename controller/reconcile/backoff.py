"""Exponential backoff with jitter and a cap, for a source that keeps failing."""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """``next()`` gives the wait before the next try: ``initial * 2**n``, capped at
    ``maximum``, then scaled by a random factor in [0.5, 1] so that many sources failing
    at once (a shared git server down) do not retry in lockstep. ``reset()`` after a
    success."""

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

    def reset(self) -> None:
        self.failures = 0
