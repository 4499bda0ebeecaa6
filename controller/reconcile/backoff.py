"""When a failing source is tried again: from what its failure says about retrying.

A temporary failure (a timeout, a refused connection, 5xx) backs off exponentially with
jitter; one that named its wait (``Retry-After``) waits at least that, and never less than
the exponential backoff would (a ``Retry-After: 0`` or a date in the past must not turn the
retries into a fast loop); a permanent one (refused credentials, a host key that does not
verify) waits the ceiling at once, since a faster retry cannot help (a new commit still
reconciles at once: the triggers ask for it).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from controller.errors import RetryDecision
from controller.settings.durations import MAX_SECONDS


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
        # A timer (and the retry_at datetime shown with it) holds no more than this; the
        # settings refuse longer ones, a value built in code is clamped.
        self.maximum = min(maximum, MAX_SECONDS)
        self.initial = min(initial, self.maximum)
        self.failures = 0
        self._rand = rand

    def next(self) -> float:
        ceiling = min(self.maximum, self.initial * 2.0 ** min(self.failures, 62))
        self.failures += 1
        return ceiling * (0.5 + 0.5 * self._rand())

    def after(self, decision: RetryDecision) -> float:
        """The wait after a failure classified as ``decision``: the ceiling for a
        permanent one; for a temporary one, :meth:`next`, or the other side's ``delay``
        when it asks for longer (a floor, as notify/delivery.py reads it: never sooner
        than the backoff, so ``Retry-After: 0`` cannot make a fast loop), never over the
        ceiling (the longest a source may go unchecked)."""
        if decision.permanent:
            self.failures += 1
            return self.maximum
        wait = self.next()
        if decision.delay is not None:
            return min(self.maximum, max(wait, decision.delay))
        return wait

    def reset(self) -> None:
        self.failures = 0
