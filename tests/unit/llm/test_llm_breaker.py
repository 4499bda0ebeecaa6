"""The circuit breaker's state machine, on a clock the test moves."""

from __future__ import annotations

import pytest

from controller.llm.breaker import Breaker, State
from controller.llm.errors import (
    BackendBusy,
    BackendRefused,
    BackendUnavailable,
    SchemaUnsupported,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


DOWN = BackendUnavailable("b", "down")


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_opens_after_n_consecutive_temporary_failures(clock: Clock) -> None:
    breaker = Breaker(failures=3, reset=10.0, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.failure(DOWN)
    assert breaker.state is State.CLOSED
    breaker.success()  # the run of failures is broken: counting starts over
    for _ in range(2):
        breaker.failure(DOWN)
    assert breaker.state is State.CLOSED and breaker.allow()
    breaker.failure(DOWN)
    assert breaker.state is State.OPEN and not breaker.allow()
    assert breaker.retry_in() == 10.0


def test_half_open_lets_one_probe_through_and_closes_on_success(clock: Clock) -> None:
    breaker = Breaker(failures=1, reset=10.0, clock=clock)
    breaker.failure(DOWN)
    clock.now += 9.9
    assert not breaker.allow()
    clock.now += 0.1
    assert breaker.state is State.HALF_OPEN
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # no second one while it is out
    breaker.success()
    assert breaker.state is State.CLOSED and breaker.allow() and breaker.allow()


def test_a_failed_probe_opens_it_again_for_the_whole_delay(clock: Clock) -> None:
    breaker = Breaker(failures=2, reset=5.0, clock=clock)
    breaker.failure(DOWN)
    breaker.failure(DOWN)
    clock.now += 5.0
    probe = breaker.allow()
    assert probe is not None and probe.probe
    breaker.failure(DOWN, probe)  # one failure is enough in half-open
    assert breaker.state is State.OPEN and not breaker.allow()
    clock.now += 4.9
    assert not breaker.allow()
    clock.now += 0.1
    assert breaker.allow()


def test_a_probe_given_up_by_the_caller_lets_the_next_one_through(clock: Clock) -> None:
    breaker = Breaker(failures=1, reset=1.0, clock=clock)
    breaker.failure(DOWN)
    clock.now += 1.0
    probe = breaker.allow()
    assert probe and not breaker.allow()
    breaker.release(probe)
    assert breaker.allow()


@pytest.mark.parametrize(
    "error",
    [BackendRefused("b", "400"), SchemaUnsupported("b", "no grammar"),
     BackendRefused("b", "401", request_fault=False)],
)  # fmt: skip
def test_permanent_failures_do_not_count(clock: Clock, error: Exception) -> None:
    breaker = Breaker(failures=1, reset=1.0, clock=clock)
    for _ in range(5):
        breaker.failure(error)
    assert breaker.state is State.CLOSED


def test_a_permanent_answer_to_a_probe_shows_the_backend_is_up(clock: Clock) -> None:
    breaker = Breaker(failures=1, reset=1.0, clock=clock)
    breaker.failure(DOWN)
    clock.now += 1.0
    probe = breaker.allow()
    assert probe is not None
    breaker.failure(BackendRefused("b", "400"), probe)
    assert breaker.state is State.CLOSED


def test_retry_after_holds_requests_back_without_counting(clock: Clock) -> None:
    breaker = Breaker(failures=1, reset=30.0, clock=clock)
    breaker.failure(BackendBusy("b", "429", delay=2.0))
    assert breaker.state is State.CLOSED  # asked for a pause: not broken
    assert not breaker.allow() and breaker.retry_in() == 2.0
    clock.now += 2.0
    assert breaker.allow()
    breaker.failure(BackendBusy("b", "busy", delay=None))  # no delay: a plain failure
    assert breaker.state is State.OPEN


def test_unmapped_exceptions_count_as_temporary(clock: Clock) -> None:
    breaker = Breaker(failures=1, reset=1.0, clock=clock)
    breaker.failure(ConnectionResetError())
    assert breaker.state is State.OPEN
