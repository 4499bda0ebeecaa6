"""The gateway with the real ``openai`` client, over the real worker serving the embedded
SmolLM2 (and MiniLM for embeddings): chat and completions, whole and streamed, both
``response_format`` shapes, embeddings, models, sessions, tokens, busy, and a client that
goes away mid-stream."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jsonschema
import openai
import pytest
import pytest_asyncio
from gatewaykit import (
    TOKEN,
    Running,
    gateway,
    models_of,
    smollm2_settings,
)

from controller.llm import worker
from controller.llm.runtime import ModelRuntime
from controller.llm.settings import ModelsSettings
from tests.answerkit import forced_words

pytestmark = pytest.mark.asyncio(loop_scope="module")

ASK = [{"role": "user", "content": "Name one colour."}]
OTHER = "a-second-gateway-token-0123456789"
ACTION = {
    "type": "object",
    "properties": {
        "action": {"enum": ["read", "write", "stop"]},
        "reason": {"type": "string", "maxLength": 40},
    },
    "required": ["action", "reason"],
    "additionalProperties": False,
}
# Thirty forced items: near a hundred tokens whatever the model prefers.
LONG = forced_words(30)


class Stack:
    def __init__(
        self,
        settings: ModelsSettings,
        runtime: ModelRuntime,
        running: Running,
        local: worker.WorkerBackend,
    ) -> None:
        self.settings = settings
        self.runtime = runtime
        self.running = running
        self.local = local

    def client(self, key: str = TOKEN) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=self.running.url, api_key=key, max_retries=0, timeout=120
        )


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    settings = smollm2_settings(tmp_path_factory.mktemp("gateway"), queue=2, slots=2)
    backends = {b.name: worker.local_backend(settings, b) for b in settings.backends}
    runtime = ModelRuntime(settings, backends)
    try:
        async with gateway(
            runtime, models_of(settings), token_env="FAZAI_TEST_GATEWAY", more_tokens=(OTHER,)
        ) as running:
            yield Stack(settings, runtime, running, backends["smollm2"])
    finally:
        await runtime.close()


async def test_models_lists_roles_and_backends(stack: Stack) -> None:
    listed = await stack.client().models.list()
    names = {m.id for m in listed.data}
    assert {"brain", "smollm2"} <= names


async def test_chat_whole_and_streamed_agree(stack: Stack) -> None:
    client = stack.client()
    whole = await client.chat.completions.create(model="brain", messages=ASK, max_tokens=12)
    text = whole.choices[0].message.content
    assert text and whole.choices[0].finish_reason in ("stop", "length")
    assert whole.usage is not None and whole.usage.completion_tokens > 0
    pieces = []
    finish = None
    stream = await client.chat.completions.create(
        model="smollm2", messages=ASK, max_tokens=12, stream=True
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    assert len(pieces) > 1  # streamed, not one block
    assert "".join(pieces) == text  # temperature 0: the same answer
    assert finish == whole.choices[0].finish_reason


async def test_completions(stack: Stack) -> None:
    done = await stack.client().completions.create(
        model="brain", prompt="The capital of France is", max_tokens=8
    )
    assert done.choices[0].text.strip()


async def test_json_object(stack: Stack) -> None:
    done = await stack.client().chat.completions.create(
        model="brain",
        messages=[{"role": "user", "content": "Give a JSON object describing a cat."}],
        response_format={"type": "json_object"},
        max_tokens=96,
    )
    choice = done.choices[0]
    if choice.finish_reason == "stop":
        assert isinstance(json.loads(choice.message.content or ""), dict)
    else:  # cut by max_tokens: said so, never passed off as complete
        assert choice.finish_reason == "length"


async def test_json_schema(stack: Stack) -> None:
    done = await stack.client().chat.completions.create(
        model="brain",
        messages=[{"role": "user", "content": "Choose the next action as JSON."}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "action", "schema": ACTION},
        },
        max_tokens=96,
    )
    assert done.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(done.choices[0].message.content or ""), ACTION)


async def test_a_schema_that_cannot_be_enforced_is_400(stack: Stack) -> None:
    odd = {"type": "object", "patternProperties": {"^x": {"type": "string"}}, "minProperties": 2}
    with pytest.raises(openai.BadRequestError) as caught:
        await stack.client().chat.completions.create(
            model="brain",
            messages=ASK,
            response_format={"type": "json_schema", "json_schema": {"name": "o", "schema": odd}},
            max_tokens=8,
        )
    assert caught.value.code == "schema_unsupported"


async def test_no_token_is_401(stack: Stack) -> None:
    with pytest.raises(openai.AuthenticationError):
        await stack.client("wrong-token-wrong-token").models.list()
    async with httpx.AsyncClient(timeout=10) as http:
        bare = await http.get(f"{stack.running.url}/models")
    assert bare.status_code == 401
    assert bare.json()["error"]["code"] == "invalid_api_key"


async def test_a_session_reuses_the_prompt(stack: Stack) -> None:
    client = stack.client()
    history = [
        {"role": "system", "content": "You are a terse assistant for firewall operators. " * 8},
        {"role": "user", "content": "Say hi."},
    ]
    first = await client.chat.completions.create(
        model="brain", messages=history, max_tokens=6, extra_headers={"X-Session-Id": "agent-run-1"}
    )
    history += [
        {"role": "assistant", "content": first.choices[0].message.content or ""},
        {"role": "user", "content": "Again."},
    ]
    second = await client.chat.completions.create(
        model="brain", messages=history, max_tokens=6, extra_headers={"X-Session-Id": "agent-run-1"}
    )
    assert second.usage is not None and second.usage.prompt_tokens_details is not None
    assert second.usage.prompt_tokens_details.cached_tokens > 0


async def test_another_token_never_reads_a_session_of_the_same_name(stack: Stack) -> None:
    """The worker's KV state of token A's session is not B's to extend, whatever name B
    gives: B's request evaluates its whole prompt, A's own reuses it (the state was there
    to be read)."""
    history = [
        {"role": "system", "content": "You watch the edge routers of a small campus. " * 8},
        {"role": "user", "content": "Say ok."},
    ]
    session = {"X-Session-Id": "shared-name"}
    first = await stack.client().chat.completions.create(
        model="brain", messages=history, max_tokens=4, extra_headers=session
    )
    history += [
        {"role": "assistant", "content": first.choices[0].message.content or ""},
        {"role": "user", "content": "Again."},
    ]
    theirs = await stack.client(OTHER).chat.completions.create(
        model="brain", messages=history, max_tokens=4, extra_headers=session
    )
    assert theirs.usage is not None and theirs.usage.prompt_tokens_details is not None
    assert theirs.usage.prompt_tokens_details.cached_tokens == 0
    mine = await stack.client().chat.completions.create(
        model="brain", messages=history, max_tokens=4, extra_headers=session
    )
    assert mine.usage is not None and mine.usage.prompt_tokens_details is not None
    assert mine.usage.prompt_tokens_details.cached_tokens > 0


async def running_generations(stack: Stack) -> int:
    stats = await stack.local.stats()
    detail: dict[str, Any] = stats.get("queue_detail", {})
    return int(detail.get("running", 0))


async def test_a_client_that_goes_away_aborts_its_generation(stack: Stack) -> None:
    async with httpx.AsyncClient(timeout=60, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        body = {
            "model": "brain",
            "messages": [{"role": "user", "content": "Count from one to five hundred."}],
            "max_tokens": 900,
            "stream": True,
        }
        async with http.stream("POST", f"{stack.running.url}/chat/completions", json=body) as got:
            assert got.status_code == 200
            async for line in got.aiter_lines():
                if line.startswith("data: "):
                    break  # one token came: go away
    deadline = time.monotonic() + 5
    while await running_generations(stack) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # polling the worker's own count: no event crosses processes
    assert await running_generations(stack) == 0


async def test_two_sessions_at_once_neither_waits_for_the_other(stack: Stack) -> None:
    """Two slots over the one model: each session's first token comes before the other
    session's answer is done (llama_cpp.server's one lock makes the second wait). Both
    answers are held to a long shape by a schema, so neither can end early by chance and
    hide a wait (a short free-text answer did, on a slower machine)."""
    client = stack.client()
    long_answer = {
        "type": "json_schema",
        "json_schema": {"name": "words", "schema": LONG, "strict": True},
    }

    async def timed(question: str, session: str) -> tuple[float, float, str]:
        stream = await client.chat.completions.create(
            model="brain",
            messages=[{"role": "user", "content": question}],
            max_tokens=400,
            stream=True,
            extra_headers={"X-Session-Id": session},
            response_format=long_answer,  # type: ignore[arg-type]
        )
        first = 0.0
        finish = ""
        async for chunk in stream:
            if not first and chunk.choices and chunk.choices[0].delta.content:
                first = time.monotonic()
            if chunk.choices and chunk.choices[0].finish_reason:
                finish = chunk.choices[0].finish_reason
        return first, time.monotonic(), finish

    (first_a, done_a, finish_a), (first_b, done_b, finish_b) = await asyncio.gather(
        timed("Name thirty words.", "session-a"),
        timed("List thirty words, one for each thing you see.", "session-b"),
    )
    assert (finish_a, finish_b) == ("stop", "stop")  # the whole long shape was made
    assert first_a and first_b
    assert first_b < done_a and first_a < done_b


async def test_busy_is_429_with_retry_after(stack: Stack) -> None:
    # Last in the module: the chain then honours the worker's Retry-After by sending it
    # nothing for that long (the circuit's pause), which later tests would run into.
    # The worker queues 2: two long generations fill it, the third is refused.
    client = stack.client()
    long = [{"role": "user", "content": "Count from one to five hundred."}]
    first = [
        asyncio.create_task(
            client.chat.completions.create(model="brain", messages=long, max_tokens=400)
        )
        for _ in range(2)
    ]
    try:
        deadline = time.monotonic() + 30
        while (await stack.local.stats()).get("queue_detail", {}).get("pending", 0) < 2:
            assert time.monotonic() < deadline, "the two generations never reached the worker"
            await asyncio.sleep(0.02)  # the worker's own count: no event crosses processes
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(model="brain", messages=ASK, max_tokens=4)
        assert caught.value.response.headers.get("retry-after")
    finally:
        for task in first:
            task.cancel()
        await asyncio.gather(*first, return_exceptions=True)
