"""The chain's bookkeeping with scripted in-process backends (the Backend protocol, not
a stand-in for a third-party part): a backend that breaks its contract, an answer with no
chunk after a switch, a caller that stops reading, the deadline handed down, and the
per-error decisions of the module's table."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import pytest

from controller.events import EventBus, EventType
from controller.llm import chain as chains
from controller.llm.breaker import Breaker, State
from controller.llm.chain import Chain, Link
from controller.llm.completion import Answer, Budget, Chunk, Completion, Role
from controller.llm.errors import (
    AnswerTruncated,
    BackendBusy,
    BackendRefused,
    BackendUnavailable,
    GenerationAborted,
    ModelError,
    NoBackendLeft,
    SchemaUnsupported,
)

ASK = Completion(Role.BRAIN, prompt="plan")


@dataclass
class Scripted:
    """Yields ``pieces``, then raises ``fail`` if set, else answers."""

    name: str
    pieces: tuple[str, ...] = ()
    fail: BaseException | None = None
    calls: list[Completion] = field(default_factory=list)
    closed: int = 0

    async def stream(self, request: Completion) -> AsyncIterator[Chunk | Answer]:
        self.calls.append(request)
        try:
            for index, piece in enumerate(self.pieces):
                yield Chunk(piece, index, self.name)
            if self.fail is not None:
                raise self.fail
            yield Answer("".join(self.pieces), "stop", self.name, f"{self.name}-model")
        finally:
            self.closed += 1

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if self.fail is not None:
            raise self.fail
        return [[1.0] for _ in texts]

    async def close(self) -> None:
        pass


def make(*backends: Scripted, bus: EventBus | None = None) -> Chain:
    return Chain(
        Role.BRAIN, [Link(b, Breaker(2, 60.0), f"{b.name}-model") for b in backends], events=bus
    )


async def items(chain: Chain, request: Completion = ASK) -> list[Chunk | Answer]:
    return [item async for item in chain.stream(request)]


async def test_a_backend_breaking_its_contract_counts_as_down() -> None:
    buggy = Scripted("buggy", ("a",), fail=KeyError("bug"))
    good = Scripted("good", ("b",))
    chain = make(buggy, good)
    out = await items(chain)
    assert isinstance(out[-1], Answer) and out[-1].fallbacks == ("buggy",)
    assert out[1] == Chunk("b", 0, "good", restart=True)
    assert chain.links[0].breaker.state is State.CLOSED  # one failure of two
    await items(chain)
    assert chain.links[0].breaker.state is State.OPEN


async def test_an_answer_without_chunks_after_a_switch_still_tells_the_caller() -> None:
    chain = make(
        Scripted("cut", ("partial",), fail=BackendUnavailable("cut", "gone")), Scripted("empty")
    )
    out = await items(chain)
    assert out[:2] == [Chunk("partial", 0, "cut"), Chunk("", 0, "empty", restart=True)]
    assert isinstance(out[2], Answer) and out[2].text == ""


async def test_a_caller_that_stops_reading_closes_the_backend_and_frees_the_probe() -> None:
    slow = Scripted("slow", ("a", "b", "c"))
    now = [0.0]
    breaker = Breaker(2, 60.0, clock=lambda: now[0])
    chain = Chain(Role.BRAIN, [Link(slow, breaker, "slow-model")])
    breaker.failure(BackendUnavailable("slow", "x"))
    breaker.failure(BackendUnavailable("slow", "x"))
    now[0] = 60.0  # the delay is over: half-open
    stream = chain.stream(ASK)
    assert await anext(stream) == Chunk("a", 0, "slow")
    await stream.aclose()  # type: ignore[attr-defined]
    assert slow.closed == 1
    assert breaker.state is State.HALF_OPEN and breaker.allow()  # the next probe may go


async def test_each_backend_gets_what_is_left_of_the_deadline() -> None:
    first = Scripted("first", fail=BackendUnavailable("first", "down"))
    second = Scripted("second", ("ok",))
    await items(make(first, second), Completion(Role.BRAIN, prompt="p", budget=Budget(seconds=5)))
    assert first.calls[0].budget.seconds is not None and first.calls[0].budget.seconds <= 5
    assert second.calls[0].budget.seconds is not None
    assert second.calls[0].budget.seconds <= first.calls[0].budget.seconds


@pytest.mark.parametrize(
    ("error", "falls"),
    [
        (BackendUnavailable("a", "down"), True),
        (BackendBusy("a", "busy", delay=1.0), True),
        (SchemaUnsupported("a", "no grammar"), True),
        (BackendRefused("a", "401", request_fault=False), True),
        (BackendRefused("a", "400"), False),
        (GenerationAborted("a", "deadline"), False),
        (AnswerTruncated("a", "max_tokens"), False),
    ],
)
async def test_which_errors_fall_through(error: ModelError, falls: bool) -> None:
    bus = EventBus()
    second = Scripted("b", ("ok",))
    chain = make(Scripted("a", fail=error), second, bus=bus)
    assert chains.stops_chain(error) is not falls
    if falls:
        out = await items(chain)
        assert isinstance(out[-1], Answer) and out[-1].fallbacks == ("a",)
        assert [e.type for e in bus.history()].count(EventType.MODEL_FALLBACK) == 1
    else:
        with pytest.raises(type(error)):
            await items(chain)
        assert second.calls == []
        assert EventType.MODEL_FALLBACK not in [e.type for e in bus.history()]


async def test_no_backend_left_is_permanent_only_when_every_failure_was() -> None:
    lying = Scripted("a", fail=SchemaUnsupported("a", "no grammar"))
    with pytest.raises(NoBackendLeft) as caught:
        await items(make(lying))
    assert not caught.value.retryable
    down = Scripted("b", fail=BackendBusy("b", "busy", delay=3.0))
    with pytest.raises(NoBackendLeft) as caught:
        await items(make(lying, down))
    assert caught.value.retryable and caught.value.delay == 3.0
    with pytest.raises(NoBackendLeft) as caught:
        await items(make())
    assert caught.value.retryable and "no backend is configured" in str(caught.value)


async def test_token_and_answer_events_carry_no_prompt_and_no_masked_counts() -> None:
    bus = EventBus()
    secret_prompt = "the root password is hunter2"
    async with bus.subscribe() as live:
        await items(
            make(Scripted("a", ("x", "y")), bus=bus), Completion(Role.BRAIN, prompt=secret_prompt)
        )
        seen = [live.get_nowait() for _ in range(live.qsize())]
    kinds = [e.type for e in seen]
    assert kinds == [EventType.MODEL_TOKEN, EventType.MODEL_TOKEN, EventType.MODEL_ANSWER]
    # Tokens are ephemeral: a live subscriber gets them, the replay history keeps none.
    assert [e.type for e in bus.history()] == [EventType.MODEL_ANSWER]
    assert "hunter2" not in repr([e.to_dict() for e in seen])
    answer = bus.history()[-1].data
    assert answer["usage"] == {"prompt": 0, "completion": 0, "cached": 0}  # not "***"
    assert answer["backend"] == "a" and answer["model"] == "a-model"


async def test_embeddings_fall_over_too() -> None:
    chain = make(Scripted("a", fail=BackendUnavailable("a", "down")), Scripted("b"))
    assert await chain.embed(["t", "u"]) == [[1.0], [1.0]]


async def test_an_open_circuit_tells_when_to_come_back() -> None:
    down = Scripted("a", fail=BackendUnavailable("a", "down"))
    chain = make(down)
    for _ in range(2):
        with pytest.raises(NoBackendLeft):
            await items(chain)
    with pytest.raises(NoBackendLeft) as caught:
        await items(chain)
    assert len(down.calls) == 2  # skipped
    assert caught.value.delay is not None and 59 < caught.value.delay <= 60
    assert "circuit open" in str(caught.value)
