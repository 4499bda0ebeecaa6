"""Whose fault a failure is: the chain's own code (events, metrics) failing is not the
backend's, and an aborted answer is never returned as a finished one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest

from controller.llm.breaker import Breaker, State
from controller.llm.chain import Chain, Link
from controller.llm.completion import Answer, Chunk, Completion, FinishReason, Role
from controller.llm.errors import GenerationAborted
from controller.llm.metrics import ModelMetrics
from controller.llm.runtime import ModelRuntime
from controller.llm.settings import BackendSettings, EndpointSettings, ModelsSettings

ASK = Completion(Role.BRAIN, prompt="p")


class Answers:
    def __init__(self, name: str, finish: FinishReason = "stop") -> None:
        self.name = name
        self.finish = finish
        self.calls = 0

    async def stream(self, request: Completion) -> AsyncIterator[Chunk | Answer]:
        self.calls += 1
        yield Chunk("x", 0, self.name)
        yield Answer("x", self.finish, self.name, "m")

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [[1.0] for _ in texts]

    async def close(self) -> None:
        pass


class BrokenMetrics(ModelMetrics):
    def __init__(self) -> None:
        pass

    def answer(self, role: str, model: str, answer: Answer) -> None:
        raise ValueError("our own bug")


async def test_our_metrics_failing_is_not_blamed_on_the_backend() -> None:
    first, second = Answers("a"), Answers("b")
    breaker = Breaker(failures=1, reset=60.0)
    chain = Chain(
        Role.BRAIN,
        [Link(first, breaker, "a-model"), Link(second, Breaker(1, 60.0), "b-model")],
        metrics=BrokenMetrics(),
    )
    with pytest.raises(ValueError, match="our own bug"):
        async for _ in chain.stream(ASK):
            pass
    # Neither counted down nor passed over: the bug goes to the caller.
    assert breaker.state is State.CLOSED and second.calls == 0


def runtime(backend: Answers) -> ModelRuntime:
    settings = ModelsSettings(
        backends=(
            BackendSettings(
                backend.name, Role.BRAIN, endpoint=EndpointSettings("http://127.0.0.1:9/v1", "m")
            ),
        )
    )
    return ModelRuntime(settings, {backend.name: backend})


async def test_complete_raises_on_an_aborted_answer() -> None:
    rt = runtime(Answers("a", finish="abort"))
    with pytest.raises(GenerationAborted):
        await rt.complete(ASK)
    assert (await runtime(Answers("a")).complete(ASK)).text == "x"
