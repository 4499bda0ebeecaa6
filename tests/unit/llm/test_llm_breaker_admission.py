"""The breaker's half-open probe under concurrent requests (only the probe's own
admission ends it), what the deadline does to a circuit, and the cap on a Retry-After's
hold (regression tests of review r3's findings)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from controller.llm.breaker import Breaker, State
from controller.llm.chain import Chain, Link
from controller.llm.completion import Answer, Budget, Chunk, Completion, Role
from controller.llm.errors import (
    BackendBusy,
    BackendUnavailable,
    DeadlineExceeded,
    GenerationAborted,
    NoBackendLeft,
)

DOWN = BackendUnavailable("b", "down")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_release_by_a_request_that_was_not_the_probe_lets_a_second_probe_through() -> None:
    clock = Clock()
    breaker = Breaker(failures=1, reset=10.0, clock=clock)
    assert breaker.allow()  # request A, admitted while closed (a long stream)
    breaker.failure(DOWN)  # request B fails: open
    clock.now += 10.0
    assert breaker.allow()  # request C: the one half-open probe, still in flight
    breaker.release()  # A's caller disconnects: A was never the probe
    # Only one probe may be out while half-open; C still is.
    assert not breaker.allow(), "a second concurrent probe was let through"


def test_a_straggler_failing_during_a_probe_does_not_free_a_second_probe() -> None:
    clock = Clock()
    breaker = Breaker(failures=1, reset=10.0, clock=clock)
    assert breaker.allow()  # A admitted while closed
    breaker.failure(DOWN)  # opened by another
    clock.now += 10.0
    assert breaker.allow()  # probe P in flight
    breaker.failure(DOWN)  # A, the straggler, fails now: reopens and clears _probing
    clock.now += 10.0
    assert not breaker.allow(), "P is still out, yet another probe goes"


def test_a_retry_after_of_a_year_holds_the_circuit_for_a_year() -> None:
    clock = Clock()
    breaker = Breaker(failures=3, reset=30.0, clock=clock)
    breaker.failure(BackendBusy("b", "429", delay=365 * 86400.0))
    # A backend (or a proxy in front of it) can switch itself off until the controller
    # restarts: the pause should be capped (e.g. at the circuit's reset or a few minutes).
    assert breaker.retry_in() <= 3600, breaker.retry_in()


class Hangs:
    """Like EndpointBackend against a hung server with tokenTimeout > the budget: the
    endpoint's own deadline fires first and raises DeadlineExceeded (the deadline fired
    while waiting on this backend; tests/integration/llm/test_llm_endpoint_hostile.py
    checks the real endpoint raises it)."""

    name = "hung"

    def __init__(self) -> None:
        self.calls = 0

    async def stream(self, request: Completion) -> AsyncIterator[Chunk | Answer]:
        self.calls += 1
        assert request.budget.seconds is not None
        await asyncio.sleep(request.budget.seconds)
        raise DeadlineExceeded(self.name, "the budget's deadline passed")
        yield  # pragma: no cover

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        raise NotImplementedError

    async def close(self) -> None:
        pass


async def test_a_probe_that_runs_into_the_deadline_does_not_close_the_circuit() -> None:
    clock = Clock()
    breaker = Breaker(failures=1, reset=10.0, clock=clock)
    hung = Hangs()
    chain = Chain(Role.BRAIN, [Link(hung, breaker, "m")])
    breaker.failure(DOWN)
    clock.now += 10.0  # half-open
    ask = Completion(Role.BRAIN, prompt="p", budget=Budget(seconds=0.01))
    try:
        async for _ in chain.stream(ask):
            pass
    except GenerationAborted:
        pass
    # The probe got no answer at all: the backend is not known to be up.
    assert breaker.state is not State.CLOSED, "a hung probe closed the circuit"


async def test_a_hung_backend_is_never_skipped_when_budgets_are_shorter_than_its_timeout() -> None:
    breaker = Breaker(failures=2, reset=60.0)
    hung = Hangs()
    chain = Chain(Role.BRAIN, [Link(hung, breaker, "m")])
    ask = Completion(Role.BRAIN, prompt="p", budget=Budget(seconds=0.01))
    for _ in range(5):
        try:
            async for _ in chain.stream(ask):
                pass
        except (GenerationAborted, NoBackendLeft):  # NoBackendLeft: its circuit is open
            pass
    # Five requests in a row spent their whole budget on it: it should count as down.
    assert hung.calls <= 2 and breaker.state is State.OPEN, (hung.calls, breaker.state)


class Gated:
    """Streams one chunk, then waits for ``go`` before failing or answering."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0
        self.go = asyncio.Event()
        self.fail = False

    async def stream(self, request: Completion) -> AsyncIterator[Chunk | Answer]:
        self.calls += 1
        yield Chunk("x", 0, self.name)
        await self.go.wait()
        if self.fail:
            raise BackendUnavailable(self.name, "down")
        yield Answer("x", "stop", self.name, "m")

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        raise NotImplementedError

    async def close(self) -> None:
        pass


async def test_through_the_chain_a_disconnecting_caller_frees_someone_elses_probe() -> None:
    clock = Clock()
    breaker = Breaker(failures=1, reset=10.0, clock=clock)
    backend = Gated("b")
    chain = Chain(Role.BRAIN, [Link(backend, breaker, "m")])
    ask = Completion(Role.BRAIN, prompt="p")
    a = chain.stream(ask)
    await anext(a)  # A admitted while closed, streaming
    breaker.failure(DOWN)  # another request failed: open
    clock.now += 10.0
    probe = chain.stream(ask)
    await anext(probe)  # the half-open probe, streaming
    await a.aclose()  # type: ignore[attr-defined]  # A's client went away
    third = chain.stream(ask)
    try:
        await anext(third)
        second_probe = True
    except Exception:
        second_probe = False
    await third.aclose()  # type: ignore[attr-defined]
    await probe.aclose()  # type: ignore[attr-defined]
    assert not second_probe and backend.calls == 2, backend.calls


def test_a_deadline_the_backend_answered_itself_is_no_failure() -> None:
    """The worker stopped at the deadline and said so: it is up, the budget was short.
    However many in a row, the circuit stays closed; a probe that ends so closes it."""
    clock = Clock()
    breaker = Breaker(failures=2, reset=10.0, clock=clock)
    said = DeadlineExceeded("b", "the worker stopped at the deadline", answered=True)
    for _ in range(5):
        breaker.failure(said, breaker.allow())
    assert breaker.state is State.CLOSED
    breaker.failure(DOWN, breaker.allow())
    breaker.failure(DOWN, breaker.allow())
    assert breaker.state is State.OPEN
    clock.now += 10.0
    probe = breaker.allow()
    assert probe is not None and probe.probe
    breaker.failure(said, probe)
    assert breaker.state is State.CLOSED
    # Unanswered (the backend hung until the deadline), it still counts.
    hung = DeadlineExceeded("b", "the budget's deadline passed")
    breaker.failure(hung, breaker.allow())
    breaker.failure(hung, breaker.allow())
    assert breaker.state is State.OPEN
