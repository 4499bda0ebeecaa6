"""The gateway's own contract over real HTTP (uvicorn on loopback, httpx and the openai
client), with a scripted runtime where the point is what the gateway does with what a
runtime does (waits before its first token, fails with a worker's internal text, breaks
mid-stream): the request validation, sessions scoped to the bearer token, a client gone
before the first token, internal errors kept from clients. The same paths over the real
worker are in test_gateway_openai."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import httpx
import openai
import pytest
import pytest_asyncio
from gatewaykit import TOKEN, Running, gateway

from controller.gateway.app import Model
from controller.llm.completion import Answer, Chunk, Completion, Role, Usage
from controller.llm.errors import AnswerTruncated, BackendUnavailable

pytestmark = pytest.mark.asyncio(loop_scope="module")

OTHER = "another-gateway-token-fedcba9876543210"
ASK = [{"role": "user", "content": "hi"}]
MODELS = [Model("brain", Role.BRAIN)]

Script = Callable[[Completion], AsyncIterator[Chunk | Answer]]


async def hello(request: Completion) -> AsyncIterator[Chunk | Answer]:
    yield Chunk("hel", 0, "local")
    yield Chunk("lo", 1, "local")
    yield Answer("hello", "stop", "local", "tiny", Usage(3, 2, 0))


class Scripted:
    """A runtime that plays ``script`` and records what it was asked, and whether the
    stream was closed before it finished (what makes the worker's backend abort)."""

    def __init__(self) -> None:
        self.script: Script = hello
        self.asked: list[Completion] = []
        self.waiting = asyncio.Event()  # a stream waits before its first item
        self.closed_early = asyncio.Event()

    async def stream(self, request: Completion) -> AsyncIterator[Chunk | Answer]:
        self.asked.append(request)
        finished = False
        try:
            async for item in self.script(request):
                yield item
            finished = True
        finally:
            if not finished:
                self.closed_early.set()

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [[0.0] for _ in texts]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def served() -> AsyncIterator[tuple[Scripted, Running]]:
    runtime = Scripted()
    async with gateway(
        runtime, MODELS, token_env="FAZAI_TEST_CONTRACT", more_tokens=(OTHER,)
    ) as running:
        yield runtime, running


@pytest.fixture
def runtime(served: tuple[Scripted, Running]) -> Scripted:
    scripted = served[0]
    scripted.script = hello
    scripted.asked.clear()
    scripted.waiting.clear()
    scripted.closed_early.clear()
    return scripted


def http(key: str = TOKEN) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {key}"})


async def test_a_client_gone_before_the_first_token_aborts_the_generation(
    served: tuple[Scripted, Running], runtime: Scripted
) -> None:
    """The first item is awaited before the response starts (it decides the status):
    a client that goes away then must stop the generation as well."""

    async def slow(request: Completion) -> AsyncIterator[Chunk | Answer]:
        runtime.waiting.set()
        await asyncio.Event().wait()  # a prompt that takes forever
        yield Chunk("never", 0, "local")

    runtime.script = slow
    body = {"model": "brain", "messages": ASK, "stream": True}
    async with http() as client:
        sent = asyncio.create_task(client.post(f"{served[1].url}/chat/completions", json=body))
        await asyncio.wait_for(runtime.waiting.wait(), 30)
        sent.cancel()  # the client goes away, its connection closed
        with pytest.raises(asyncio.CancelledError):
            await sent
    await asyncio.wait_for(runtime.closed_early.wait(), 10)


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"n": True}, "n"),
        ({"n": 1.0}, "n"),
        ({"stream": True, "stream_options": {"include_usage": "false"}}, "stream_options"),
        ({"stream": True, "stream_options": {"include_usage": 1}}, "stream_options"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": "x" * 257}, "stop"),
    ],
)
async def test_what_the_gateway_cannot_honour_is_400(
    served: tuple[Scripted, Running], runtime: Scripted, extra: dict[str, Any], param: str
) -> None:
    async with http() as client:
        got = await client.post(
            f"{served[1].url}/chat/completions", json={"messages": ASK, **extra}
        )
    assert got.status_code == 400, got.text
    error = got.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"].startswith(param) and error["message"]
    assert not runtime.asked


async def test_what_it_honours_still_passes(
    served: tuple[Scripted, Running], runtime: Scripted
) -> None:
    async with http() as client:
        got = await client.post(
            f"{served[1].url}/chat/completions",
            json={"messages": ASK, "n": 1, "stop": ["a", "b", "c", "x" * 256]},
        )
    assert got.status_code == 200, got.text
    assert runtime.asked[0].sampling.stop == ("a", "b", "c", "x" * 256)


def nested(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "array", "items": schema}
    return schema


@pytest.mark.parametrize(
    "schema",
    [
        nested(200),
        {
            "type": "object",
            "properties": {f"p{i}": {"type": "string", "maxLength": 9} for i in range(6000)},
        },
    ],
    ids=["deep", "huge"],
)
async def test_a_schema_too_big_to_enforce_is_400_schema_unsupported(
    served: tuple[Scripted, Running], runtime: Scripted, schema: dict[str, Any]
) -> None:
    client = openai.AsyncOpenAI(base_url=served[1].url, api_key=TOKEN, max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="brain",
            messages=ASK,  # type: ignore[arg-type]
            response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
        )
    assert caught.value.code == "schema_unsupported"
    assert not runtime.asked


async def test_sessions_are_scoped_to_the_bearer_token(
    served: tuple[Scripted, Running], runtime: Scripted
) -> None:
    url = f"{served[1].url}/chat/completions"
    body = {"messages": ASK, "user": "alice"}
    for key in (TOKEN, OTHER, TOKEN):
        async with http(key) as client:
            got = await client.post(url, json=body, headers={"X-Session-Id": "run-1"})
            assert got.status_code == 200, got.text
    mine, theirs, again = (r.session for r in runtime.asked)
    assert mine and theirs and again
    assert mine.endswith(":run-1") and theirs.endswith(":run-1")
    assert mine != theirs  # the same name, two tokens: two sessions
    assert mine == again  # the same token: its own session again
    assert TOKEN not in mine and OTHER not in theirs
    # OpenAI's user field names an end user, not a session: none is kept for it.
    async with http() as client:
        got = await client.post(url, json=body)
    assert got.status_code == 200
    assert runtime.asked[-1].session is None


async def test_internal_errors_are_not_passed_to_clients(
    served: tuple[Scripted, Running], runtime: Scripted, caplog: pytest.LogCaptureFixture
) -> None:
    detail = "generate failed: KeyError at /opt/fazai/engine.py:88 (internal)"

    async def broken(request: Completion) -> AsyncIterator[Chunk | Answer]:
        raise BackendUnavailable("local", detail)
        yield Chunk("", 0, "local")  # an async generator

    runtime.script = broken
    caplog.set_level(logging.WARNING, "fazai.gateway")
    async with http() as client:
        whole = await client.post(f"{served[1].url}/chat/completions", json={"messages": ASK})
    assert whole.status_code == 503
    assert whole.json()["error"]["code"] == "unavailable"
    assert "engine.py" not in whole.text and "KeyError" not in whole.text
    assert whole.json()["error"]["message"]
    assert detail in caplog.text  # the operator still reads it


async def test_a_failure_mid_stream_is_logged_and_told(
    served: tuple[Scripted, Running], runtime: Scripted, caplog: pytest.LogCaptureFixture
) -> None:
    async def breaks(request: Completion) -> AsyncIterator[Chunk | Answer]:
        yield Chunk("hel", 0, "local")
        raise RuntimeError("a bug below the gateway")

    runtime.script = breaks
    caplog.set_level(logging.ERROR, "fazai.gateway")
    events = []
    async with (
        http() as client,
        client.stream(
            "POST",
            f"{served[1].url}/chat/completions",
            json={"messages": ASK, "stream": True},
        ) as got,
    ):
        assert got.status_code == 200
        async for line in got.aiter_lines():
            if line.startswith("data: "):
                events.append(line[6:])
    assert json.loads(events[0])["choices"][0]["delta"]["content"] == "hel"
    last = json.loads(events[-1])
    assert last["error"]["type"] == "server_error"
    assert "a bug below" not in events[-1]
    assert "a bug below the gateway" in caplog.text


async def test_a_truncated_answer_keeps_its_usage_and_model(
    served: tuple[Scripted, Running], runtime: Scripted
) -> None:
    async def cut(request: Completion) -> AsyncIterator[Chunk | Answer]:
        yield Chunk("half", 0, "local")
        raise AnswerTruncated(
            "local", "max_tokens (4) ended it", "half", model="tiny-q4", usage=Usage(7, 4, 2)
        )

    runtime.script = cut
    async with http() as client:
        got = await client.post(f"{served[1].url}/chat/completions", json={"messages": ASK})
    assert got.status_code == 200, got.text
    answer = got.json()
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] == 4 and answer["usage"]["prompt_tokens"] == 7
    assert answer["usage"]["prompt_tokens_details"]["cached_tokens"] == 2
    assert answer["fazai"]["model"] == "tiny-q4"


async def test_an_aborted_answer_is_never_passed_on_as_finished(
    served: tuple[Scripted, Running], runtime: Scripted
) -> None:
    async def aborted(request: Completion) -> AsyncIterator[Chunk | Answer]:
        yield Chunk("hal", 0, "local")
        yield Answer("hal", "abort", "local", "tiny")

    runtime.script = aborted
    url = f"{served[1].url}/chat/completions"
    async with http() as client:
        whole = await client.post(url, json={"messages": ASK})
        assert whole.status_code == 504 and whole.json()["error"]["code"] == "aborted"
        async with client.stream("POST", url, json={"messages": ASK, "stream": True}) as got:
            lines = [line async for line in got.aiter_lines() if line.startswith("data: ")]
    assert json.loads(lines[-1][6:])["error"]["code"] == "aborted"
    assert not any('"finish_reason":"stop"' in line for line in lines)
