"""A circuit breaker per backend: stop sending requests to one that keeps failing.

    closed --(``failures`` temporary failures in a row)--> open
    open --(``reset`` seconds later)--> half-open: one request goes through as a probe
    half-open --(the probe succeeds)--> closed
    half-open --(the probe fails)--> open, for ``reset`` again

:meth:`Breaker.allow` hands out an :class:`Admission` (None: refused), and the request's
outcome is reported with it (:meth:`~Breaker.success`, :meth:`~Breaker.failure`,
:meth:`~Breaker.release`). Only the probe's own admission ends the probe: a request let
through while the circuit was still closed may finish (fail, succeed, be cancelled) while
a probe is out, and must not free a second probe.

Only temporary failures count (:func:`controller.errors.retry_decision`): a permanent one
(a refused request, a schema the backend cannot enforce) says nothing about whether the
backend is up. A :class:`~controller.llm.errors.DeadlineExceeded` (the budget's deadline
fired while this backend was being waited on) counts as a temporary failure, so that a
hung backend is left once ``failures`` requests in a row spent their budget on it, even
when every budget is shorter than its own ``tokenTimeout``; a probe that runs into it is
released, not judged (its budget was too short to say the backend is up or down). One
the backend answered itself (``DeadlineExceeded.answered``: the worker stopped at the
deadline and said so) is no failure: the backend is up, as after a permanent error. A
``Retry-After`` the backend sent (``BackendBusy.delay``) holds the circuit open for that
long, at most :data:`MAX_HOLD`, without counting as a failure: the backend asked, it is
not broken, but neither it nor a proxy in front of it may switch itself off for good.
The clock is injectable so that the state machine is tested without sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum

from controller.errors import retry_decision
from controller.llm.errors import DeadlineExceeded

MAX_HOLD = 300.0  # seconds: the longest Retry-After the circuit honours


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Admission:
    """One request let through by :meth:`Breaker.allow`; ``probe``: the half-open probe.
    Compared by identity: only the probe's own admission ends the probe."""

    __slots__ = ("probe",)

    def __init__(self, probe: bool) -> None:
        self.probe = probe

    def __repr__(self) -> str:
        return f"Admission(probe={self.probe})"


class Breaker:
    def __init__(
        self, failures: int = 3, reset: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if failures < 1 or not reset > 0:
            raise ValueError("a Breaker needs failures >= 1 and reset > 0")
        self.failures = failures
        self.reset = reset
        self._clock = clock
        self._failed = 0  # consecutive temporary failures while closed
        self._opened: float | None = None  # when it opened (None: not open)
        self._until: float | None = None  # Retry-After: closed to requests until then
        self._probe: Admission | None = None  # the half-open probe that is out

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

    def allow(self) -> Admission | None:
        """An admission when a request may be sent now, else None; in half-open, one for
        the one probe only. The caller reports its outcome with it: :meth:`success`,
        :meth:`failure`, or :meth:`release` when it ended neither way."""
        if self._until is not None:
            if self._clock() < self._until:
                return None
            self._until = None
        state = self.state
        if state is State.CLOSED:
            return Admission(probe=False)
        if state is State.OPEN or self._probe is not None:
            return None
        self._probe = Admission(probe=True)
        return self._probe

    def success(self, admission: Admission | None = None) -> None:
        """The backend answered: the circuit closes (a request admitted earlier that
        succeeds says the backend is up as much as a probe would)."""
        self._failed = 0
        self._opened = None
        self._end(admission)

    def failure(self, exc: BaseException, admission: Admission | None = None) -> None:
        """Count ``exc`` when it is temporary; a permanent one only ends a probe (the
        backend answered: it is up, so the circuit closes)."""
        probe = admission is not None and admission is self._probe
        if isinstance(exc, DeadlineExceeded) and exc.answered:
            if probe:  # it answered: it is up
                self.success(admission)
            return
        if isinstance(exc, DeadlineExceeded):
            if probe:  # no verdict: the next request probes again
                self._end(admission)
                return
        else:
            decision = retry_decision(exc)
            if decision.permanent:
                if probe:
                    self.success(admission)
                return
            if decision.delay:  # it asked for a pause: honoured (capped), not counted
                hold = self._clock() + min(decision.delay, MAX_HOLD)
                self._until = max(self._until or 0.0, hold)
                self._end(admission)
                return
        self._end(admission)
        if probe or self._opened is not None:
            self._open()
            return
        self._failed += 1
        if self._failed >= self.failures:
            self._open()

    def release(self, admission: Admission | None = None) -> None:
        """The request ended with no verdict (its caller cancelled it): when it was the
        probe, let another through."""
        self._end(admission)

    def _end(self, admission: Admission | None) -> None:
        if admission is not None and admission is self._probe:
            self._probe = None

    def _open(self) -> None:
        self._opened = self._clock()
        self._failed = 0
