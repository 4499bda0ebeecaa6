"""The chain with llama-cpp-python's own OpenAI-compatible server as the remote: a real
model streaming, schemas in both request shapes, a backend SIGKILLed before and during a
stream (the next one answers from the start, within a second), and a circuit that opens
on a dead server and closes again through its half-open probe once the server is back."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from llamakit import LlamaServer, running
from openaikit import FakeServer, free_port, serving

from controller.events import EventBus, EventType
from controller.llm.breaker import State
from controller.llm.completion import Answer, Budget, Chunk, Completion, Message, Role
from controller.llm.errors import NoBackendLeft
from controller.llm.runtime import ModelRuntime
from controller.llm.settings import (
    BackendSettings,
    CircuitSettings,
    EndpointSettings,
    ModelsSettings,
)

SCHEMA = {
    "type": "object",
    "properties": {"action": {"enum": ["restart", "reboot", "none"]}},
    "required": ["action"],
    "additionalProperties": False,
}
ASK = Completion(
    Role.BRAIN,
    messages=(Message("user", "nginx is down on web-1. Which action fixes it?"),),
    budget=Budget(max_tokens=24),
)
SHORT = Completion(Role.BRAIN, messages=ASK.messages, schema=SCHEMA, budget=Budget(max_tokens=32))
STORY = Completion(
    Role.BRAIN,
    messages=(Message("user", "Write a long story about a firewall."),),
    budget=Budget(max_tokens=200),
)


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with running(free_port(), log) as server:
        yield server


def endpoint(name: str, url: str, **options: object) -> BackendSettings:
    settings = EndpointSettings(url=url, model="smollm2", **options)  # type: ignore[arg-type]
    return BackendSettings(name, Role.BRAIN, endpoint=settings)


def runtime(
    *backends: BackendSettings, bus: EventBus | None = None, **circuit: float
) -> ModelRuntime:
    settings = ModelsSettings(backends=backends, circuit=CircuitSettings(**circuit))  # type: ignore[arg-type]
    return ModelRuntime(settings, events=bus)


async def test_a_real_model_streams_through_the_chain(remote: LlamaServer) -> None:
    rt = runtime(endpoint("remote", remote.url))
    items = [item async for item in rt.stream(ASK)]
    answer = items[-1]
    assert isinstance(answer, Answer) and answer.backend == "remote"
    chunks = [c for c in items if isinstance(c, Chunk)]
    assert len(chunks) >= 2 and "".join(c.text for c in chunks) == answer.text
    assert [c.index for c in chunks] == list(range(len(chunks)))
    # llama-cpp-python's server sends no usage in a stream: the pieces are counted.
    assert answer.usage.completion_tokens == len(chunks)
    assert 0 < answer.timings.ttft_s < answer.timings.total_s
    await rt.close()


async def test_schema_json_schema_shape_fails_over_to_the_json_object_shape(
    remote: LlamaServer,
) -> None:
    # llama-cpp-python's server answers OpenAI's json_schema form with a 500: the chain
    # passes to the same server asked in the form it knows.
    bus = EventBus()
    rt = runtime(
        endpoint("openai-shape", remote.url, max_retries=0),
        endpoint("llama-shape", remote.url, response_format="json_object"),
        bus=bus,
    )
    request = Completion(Role.BRAIN, messages=ASK.messages, schema=SCHEMA)
    answer = await rt.complete(request)
    assert answer.backend == "llama-shape" and answer.fallbacks == ("openai-shape",)
    assert json.loads(answer.text)["action"] in ("restart", "reboot", "none")
    fallback = next(e for e in bus.history() if e.type is EventType.MODEL_FALLBACK)
    assert fallback.data["message"] == "openai-shape: answered HTTP 500"
    await rt.close()


async def test_a_killed_backend_before_the_request_fails_over_within_a_second(
    remote: LlamaServer, tmp_path: Path
) -> None:
    with running(free_port(), tmp_path / "victim.log") as victim:
        bus = EventBus()
        rt = runtime(
            endpoint("victim", victim.url, response_format="json_object"),
            endpoint("remote", remote.url, response_format="json_object"),
            bus=bus,
        )
        assert (await rt.complete(SHORT)).backend == "victim"
        victim.kill()
        started = time.time()
        answer = await rt.complete(SHORT)
        assert answer.backend == "remote" and answer.fallbacks == ("victim",)
        fallback = next(e for e in bus.history() if e.type is EventType.MODEL_FALLBACK)
        switched = fallback.time.timestamp() - started
        assert switched < 1.0, f"the next backend was asked after {switched:.3f}s"
        await rt.close()


async def test_a_backend_killed_mid_stream_restarts_on_the_next_and_the_caller_is_told(
    remote: LlamaServer, tmp_path: Path
) -> None:
    bus = EventBus()
    with running(free_port(), tmp_path / "victim.log") as victim:
        rt = runtime(endpoint("victim", victim.url), endpoint("remote", remote.url), bus=bus)
        seen: list[Chunk] = []
        killed_at = 0.0
        answer = None
        async for item in rt.stream(STORY):
            if isinstance(item, Answer):
                answer = item
                continue
            seen.append(item)
            if item.backend == "victim" and len(seen) == 3:
                victim.kill()
                killed_at = time.time()
        assert answer is not None and answer.backend == "remote"
        assert answer.fallbacks == ("victim",)
        restart = next(i for i, c in enumerate(seen) if c.restart)
        assert restart >= 3 and all(c.backend == "victim" for c in seen[:restart])
        assert seen[restart].index == 0 and seen[restart].backend == "remote"
        assert "".join(c.text for c in seen[restart:]) == answer.text
        fallback = next(e for e in bus.history() if e.type is EventType.MODEL_FALLBACK)
        assert fallback.data["backend"] == "victim" and fallback.data["chunks"] >= 3
        # From the kill to the chain asking the next backend (its own prompt evaluation
        # comes on top: see bench/model_failover.py for both figures).
        switched = fallback.time.timestamp() - killed_at
        assert switched < 1.0, f"the next backend was asked after {switched:.3f}s"
        await rt.close()


async def test_a_circuit_opened_on_a_dead_server_closes_through_its_probe(tmp_path: Path) -> None:
    # The second backend is a fast loopback server, so the requests made while the
    # circuit is open take milliseconds, well inside its one second.
    port = free_port()
    quick = FakeServer("ok", pieces=('{"action": "none"}',))
    with serving(quick):
        rt = runtime(
            endpoint(
                "flaky", f"http://127.0.0.1:{port}/v1", max_retries=0, response_format="json_object"
            ),
            endpoint("quick", quick.url),
            failures=2,
            reset=1.0,
        )
        await _circuit_round(rt, port, tmp_path)


async def _circuit_round(rt: ModelRuntime, port: int, tmp_path: Path) -> None:
    breaker = rt._chains[Role.BRAIN].links[0].breaker
    for _ in range(2):
        assert (await rt.complete(SHORT)).fallbacks == ("flaky",)
    assert breaker.state is State.OPEN
    assert (await rt.complete(SHORT)).fallbacks == ()  # skipped while open
    with running(port, tmp_path / "flaky.log"):
        await asyncio.sleep(max(0.0, breaker.retry_in()))
        assert breaker.state is State.HALF_OPEN
        answer = await rt.complete(SHORT)  # the probe, and the server is back
        assert answer.backend == "flaky" and breaker.state is State.CLOSED
    await rt.close()


async def test_every_backend_down_names_each(tmp_path: Path) -> None:
    rt = runtime(
        endpoint("a", f"http://127.0.0.1:{free_port()}/v1", max_retries=0),
        endpoint("b", f"http://127.0.0.1:{free_port()}/v1", max_retries=0),
    )
    with pytest.raises(NoBackendLeft) as caught:
        await rt.complete(ASK)
    assert [a.backend for a in caught.value.attempts] == ["a", "b"]
    assert caught.value.retryable and "a: cannot connect; b: cannot connect" in str(caught.value)
    await rt.close()
