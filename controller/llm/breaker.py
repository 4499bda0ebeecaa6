"""A circuit breaker per backend: stop sending requests to one that keeps failing.

    closed --(``failures`` temporary failures in a row)--> open
    open --(``reset`` seconds later)--> half-open: one request goes through as a probe
    half-open --(the probe succeeds)--> closed
    half-open --(the probe fails)--> open, for ``reset`` again

Only temporary failures count (:func:`controller.errors.retry_decision`): a permanent one
(a refused request, a schema the backend cannot enforce) says nothing about whether the
backend is up. A ``Retry-After`` the backend sent (``BackendBusy.delay``) holds the
circuit open for that long without counting as a failure: the backend asked, it is not
broken. The clock is injectable so that the state machine is tested without sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum

from controller.errors import retry_decision


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Breaker:
    def __init__(
        self, failures: int = 3, reset: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if failures < 1 or reset <= 0:
            raise ValueError("a Breaker needs failures >= 1 and reset > 0")
        self.failures = failures
        self.reset = reset
        self._clock = clock
        self._failed = 0  # consecutive temporary failures while closed
        self._opened: float | None = None  # when it opened (None: not open)
        self._until: float | None = None  # Retry-After: closed to requests until then
        self._probing = False  # a half-open probe is out

    @property
    def state(self) -> State:
        if self._opened is None:
            return State.CLOSED
        if self._clock() - self._opened >= self.reset:
            return State.HALF_OPEN
        return State.OPEN

    def retry_in(self) -> float:
        """Seconds until a request may go through (0: now)."""
        now = self._clock()
        waits = [0.0]
        if self._until is not None:
            waits.append(self._until - now)
        if self._opened is not None:
            waits.append(self._opened + self.reset - now)
        return max(waits)

    def allow(self) -> bool:
        """Whether a request may be sent now; in half-open, True for the one probe only
        (the caller must then report its outcome with :meth:`success` or
        :meth:`failure`, or :meth:`release` it when it ended neither way)."""
        if self._until is not None:
            if self._clock() < self._until:
                return False
            self._until = None
        state = self.state
        if state is State.CLOSED:
            return True
        if state is State.OPEN or self._probing:
            return False
        self._probing = True
        return True

    def success(self) -> None:
        self._failed = 0
        self._opened = None
        self._probing = False

    def failure(self, exc: BaseException) -> None:
        """Count ``exc`` when it is temporary; a permanent one only ends a probe (the
        backend answered: it is up, so the circuit closes)."""
        decision = retry_decision(exc)
        if decision.permanent:
            if self._probing:
                self.success()
            return
        if decision.delay:  # it asked for a pause: honoured, not counted against it
            self._until = max(self._until or 0.0, self._clock() + decision.delay)
            self._probing = False
            return
        if self._probing or self._opened is not None:
            self._open()
            return
        self._failed += 1
        if self._failed >= self.failures:
            self._open()

    def release(self) -> None:
        """The probe ended with no verdict (the caller cancelled it): let another through."""
        self._probing = False

    def _open(self) -> None:
        self._opened = self._clock()
        self._failed = 0
        self._probing = False
