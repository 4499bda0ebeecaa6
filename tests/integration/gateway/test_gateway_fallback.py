"""The gateway over a chain of real OpenAI-compatible servers that misbehave (the chain
tests' servers, tests/integration/llm/openaikit.py): a backend that fails before its
first token is invisible to the client; one that drops the stream after tokens were
sent ends the client's stream with an error event rather than splicing two answers;
a whole (unstreamed) answer comes from the backend that finished, saying who."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import openai
import pytest
from gatewaykit import TOKEN, gateway

from controller.gateway.app import Model
from controller.llm.completion import Role
from controller.llm.runtime import ModelRuntime
from controller.llm.settings import BackendSettings, EndpointSettings, ModelsSettings
from tests.integration.llm.openaikit import Behaviour, FakeServer, serving

ASK = [{"role": "user", "content": "hi"}]


@pytest.fixture
def servers() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


def runtime(stack: ExitStack, *behaviours: Behaviour) -> ModelRuntime:
    backends = []
    for index, behaviour in enumerate(behaviours):
        server = stack.enter_context(serving(FakeServer(behaviour)))
        backends.append(
            BackendSettings(
                f"b{index}", Role.BRAIN, endpoint=EndpointSettings(server.url, "m", max_retries=0)
            )
        )
    return ModelRuntime(ModelsSettings(backends=tuple(backends)))


MODELS = [Model("brain", Role.BRAIN)]


def client(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url, api_key=TOKEN, max_retries=0, timeout=30)


async def test_a_failure_before_the_first_token_is_not_seen(servers: ExitStack) -> None:
    rt = runtime(servers, "500", "ok")
    try:
        async with gateway(rt, MODELS, token_env="FAZAI_TEST_FALLBACK") as running:
            stream = await client(running.url).chat.completions.create(
                model="brain",
                messages=ASK,
                stream=True,  # type: ignore[arg-type]
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    finally:
        await rt.close()
    assert text == "Hello, world!"


async def test_a_stream_dropped_after_tokens_ends_with_an_error(servers: ExitStack) -> None:
    rt = runtime(servers, "drop", "ok")
    got: list[str] = []
    try:
        async with gateway(rt, MODELS, token_env="FAZAI_TEST_FALLBACK") as running:
            stream = await client(running.url).chat.completions.create(
                model="brain",
                messages=ASK,
                stream=True,  # type: ignore[arg-type]
            )
            with pytest.raises(openai.APIError, match="after tokens were sent"):
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        got.append(chunk.choices[0].delta.content)
            # Unstreamed, the same chain gives the whole answer of the backend that finished.
            whole = await client(running.url).chat.completions.create(
                model="brain",
                messages=ASK,  # type: ignore[arg-type]
            )
    finally:
        await rt.close()
    assert got == ["Hello", ", "]  # what the dropped backend sent, and nothing spliced on
    assert whole.choices[0].message.content == "Hello, world!"
    assert whole.model_extra is not None
    assert whole.model_extra["fazai"]["backend"] == "b1"
    assert whole.model_extra["fazai"]["fallbacks"] == ["b0"]
