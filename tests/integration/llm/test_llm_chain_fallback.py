"""The fallback chain against real HTTP servers on loopback that misbehave in each way a
remote endpoint does: 500, 429 with Retry-After, a hang, a stream cut halfway, an answer
that breaks the schema, a refused request; and the circuit breaker over them."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from openaikit import Behaviour, FakeServer, free_port, serving
from prometheus_client import CollectorRegistry

from controller.events import EventBus, EventType
from controller.llm.breaker import State
from controller.llm.completion import Answer, Budget, Chunk, Completion, Message, Role
from controller.llm.errors import (
    AnswerTruncated,
    BackendRefused,
    GenerationAborted,
    NoBackendLeft,
    SchemaUnsupported,
)
from controller.llm.metrics import ModelMetrics
from controller.llm.runtime import ModelRuntime
from controller.llm.settings import (
    BackendSettings,
    CircuitSettings,
    EndpointSettings,
    ModelsSettings,
    SecretRef,
)

KEY = "sk-test-4b1d0c9e8f7a6b5c4d3e2f1a"
CHAT = Completion(Role.BRAIN, messages=(Message("user", "plan: restart nginx on web-1"),))
SCHEMA = {
    "type": "object",
    "properties": {"action": {"enum": ["restart", "reboot"]}},
    "required": ["action"],
}


@pytest.fixture
def servers() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


def start(stack: ExitStack, behaviour: Behaviour, **options: object) -> FakeServer:
    return stack.enter_context(serving(FakeServer(behaviour, **options)))  # type: ignore[arg-type]


def endpoint(name: str, url: str, role: Role = Role.BRAIN, **options: object) -> BackendSettings:
    settings = EndpointSettings(url=url, model=f"{name}-model", **options)  # type: ignore[arg-type]
    return BackendSettings(name, role, endpoint=settings)


def runtime(
    *backends: BackendSettings,
    bus: EventBus | None = None,
    metrics: ModelMetrics | None = None,
    **circuit: float,
) -> ModelRuntime:
    settings = ModelsSettings(backends=backends, circuit=CircuitSettings(**circuit))  # type: ignore[arg-type]
    return ModelRuntime(settings, events=bus, metrics=metrics)


async def collect(rt: ModelRuntime, request: Completion = CHAT) -> list[Chunk | Answer]:
    return [item async for item in rt.stream(request)]


async def test_a_good_endpoint_streams_and_the_answer_says_who_served_it(
    servers: ExitStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = start(servers, "ok")
    monkeypatch.setenv("GOOD_KEY", KEY)
    rt = runtime(endpoint("good", good.url, api_key=SecretRef(env="GOOD_KEY")))
    items = await collect(rt)
    chunks, answer = [c for c in items if isinstance(c, Chunk)], items[-1]
    assert len(chunks) == len(items) - 1
    assert [(c.text, c.index, c.backend, c.restart) for c in chunks] == [
        ("Hello", 0, "good", False), (", ", 1, "good", False),
        ("world", 2, "good", False), ("!", 3, "good", False),
    ]  # fmt: skip
    assert isinstance(answer, Answer)
    assert (answer.text, answer.finish_reason, answer.backend, answer.model) == (
        "Hello, world!", "stop", "good", "good-model",
    )  # fmt: skip
    assert answer.fallbacks == ()
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (7, 4)
    assert 0 < answer.timings.ttft_s <= answer.timings.total_s
    sent = good.received[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.body["messages"] == [{"role": "user", "content": "plan: restart nginx on web-1"}]
    assert sent.body["stream"] is True and sent.body["max_tokens"] == 256
    assert "top_k" not in sent.body  # the default is not sent: OpenAI's API refuses it
    # A raw prompt goes to /completions.
    await collect(rt, Completion(Role.BRAIN, prompt="Plan:"))
    assert good.received[1].path == "/v1/completions"
    assert good.received[1].body["prompt"] == "Plan:"
    await rt.close()


async def test_500_falls_over_to_the_next_without_quoting_the_servers_body(
    servers: ExitStack,
) -> None:
    broken, good = start(servers, "500"), start(servers, "ok")
    bus = EventBus()
    registry = CollectorRegistry()
    rt = runtime(
        endpoint("broken", broken.url),
        endpoint("good", good.url),
        bus=bus,
        metrics=ModelMetrics(registry),
    )
    assert rt.chain(Role.BRAIN) == ("broken", "good")
    answer = (await collect(rt))[-1]
    assert isinstance(answer, Answer)
    assert (answer.backend, answer.fallbacks, answer.text) == ("good", ("broken",), "Hello, world!")
    fallback = next(e for e in bus.history() if e.type is EventType.MODEL_FALLBACK)
    assert fallback.data["backend"] == "broken"
    assert fallback.data["error"] == "BackendUnavailable"
    assert fallback.data["message"] == "broken: answered HTTP 500"  # not the echoed prompt
    assert "nginx" not in json.dumps([e.to_dict() for e in bus.history()])
    done = next(e for e in bus.history() if e.type is EventType.MODEL_ANSWER)
    assert done.data["fallbacks"] == ["broken"] and done.data["usage"]["completion"] == 4
    sample = registry.get_sample_value
    assert (
        sample(
            "fazai_model_fallbacks_total",
            {"role": "brain", "backend": "broken", "kind": "BackendUnavailable"},
        )
        == 1
    )
    assert (
        sample(
            "fazai_model_errors_total",
            {"backend": "broken", "model": "broken-model", "kind": "BackendUnavailable"},
        )
        == 1
    )
    good_labels = {"backend": "good", "model": "good-model"}
    assert sample("fazai_model_tokens_total", {**good_labels, "kind": "completion"}) == 4
    assert sample("fazai_model_time_to_first_token_seconds_count", good_labels) == 1
    await rt.close()


async def test_429_retry_after_is_honoured_by_the_circuit(servers: ExitStack) -> None:
    busy, good = start(servers, "429", retry_after="30"), start(servers, "ok")
    rt = runtime(endpoint("busy", busy.url), endpoint("good", good.url))
    for _ in range(3):
        answer = (await collect(rt))[-1]
        assert isinstance(answer, Answer) and answer.backend == "good"
    # Retry-After 30 s is longer than the endpoint waits itself: it was asked once, then
    # skipped while its pause lasts.
    assert busy.hits == 1 and good.hits == 3
    await rt.close()


async def test_a_short_retry_after_is_waited_for_and_retried_on_the_same_endpoint(
    servers: ExitStack,
) -> None:
    busy = start(servers, "429", retry_after="0.2")
    rt = runtime(endpoint("busy", busy.url, max_retries=1))
    started = time.monotonic()
    with pytest.raises(NoBackendLeft) as caught:
        await collect(rt)
    assert busy.hits == 2 and time.monotonic() - started >= 0.2
    assert caught.value.retryable and caught.value.delay == pytest.approx(0.2)
    await rt.close()


async def test_a_hanging_endpoint_is_left_when_its_token_timeout_fires(servers: ExitStack) -> None:
    hung, good = start(servers, "hang"), start(servers, "ok")
    rt = runtime(endpoint("hung", hung.url, token_timeout=0.5), endpoint("good", good.url))
    started = time.monotonic()
    answer = (await collect(rt))[-1]
    spent = time.monotonic() - started
    assert isinstance(answer, Answer) and answer.fallbacks == ("hung",)
    # At least the timeout, and nowhere near the hour the server hangs for: no tighter
    # upper bound, which a loaded 2-core machine could overrun.
    assert 0.5 <= spent < 10
    await rt.close()


async def test_a_stream_cut_halfway_restarts_on_the_next_backend_and_says_so(
    servers: ExitStack,
) -> None:
    cut = start(servers, "drop", pieces=("Part", "ial", " text", " never"), drop_after=2)
    good = start(servers, "ok")
    bus = EventBus()
    rt = runtime(endpoint("cut", cut.url), endpoint("good", good.url), bus=bus)
    async with bus.subscribe() as live:  # token events are ephemeral: live only
        items = await collect(rt)
        seen = [live.get_nowait() for _ in range(live.qsize())]
    chunks = [i for i in items if isinstance(i, Chunk)]
    assert [(c.text, c.index, c.backend, c.restart) for c in chunks] == [
        ("Part", 0, "cut", False), ("ial", 1, "cut", False),
        ("Hello", 0, "good", True), (", ", 1, "good", False),
        ("world", 2, "good", False), ("!", 3, "good", False),
    ]  # fmt: skip
    # What a caller keeps when it discards the text before a restart:
    kept = ""
    for chunk in chunks:
        kept = chunk.text if chunk.restart else kept + chunk.text
    answer = items[-1]
    assert isinstance(answer, Answer)
    assert kept == answer.text == "Hello, world!" and answer.fallbacks == ("cut",)
    fallback = next(e for e in bus.history() if e.type is EventType.MODEL_FALLBACK)
    assert (fallback.data["backend"], fallback.data["chunks"]) == ("cut", 2)
    tokens = [e.data for e in seen if e.type is EventType.MODEL_TOKEN]
    assert not [e for e in bus.history() if e.type is EventType.MODEL_TOKEN]
    assert [(t["backend"], t["index"], t["restart"]) for t in tokens][1:3] == [
        ("cut", 1, False), ("good", 0, True),
    ]  # fmt: skip
    await rt.close()


async def test_schema_is_asked_for_in_openai_shape_and_a_breaking_answer_is_refused(
    servers: ExitStack,
) -> None:
    liar = start(servers, "badjson")
    honest = start(servers, "ok", pieces=('{"action"', ': "restart"}'))
    rt = runtime(
        endpoint("liar", liar.url), endpoint("honest", honest.url, response_format="json_object")
    )
    request = Completion(Role.BRAIN, messages=CHAT.messages, schema=SCHEMA)
    items = await collect(rt, request)
    answer = items[-1]
    assert isinstance(answer, Answer)
    assert json.loads(answer.text) == {"action": "restart"} and answer.fallbacks == ("liar",)
    assert liar.received[0].body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True},
    }
    assert honest.received[0].body["response_format"] == {"type": "json_object", "schema": SCHEMA}
    # The liar's partial text came out before its answer was checked: the caller is told.
    assert [c.restart for c in items if isinstance(c, Chunk)].count(True) == 1
    await rt.close()


async def test_when_every_backend_breaks_the_schema_the_failure_is_permanent(
    servers: ExitStack,
) -> None:
    liar = start(servers, "badjson")
    rt = runtime(endpoint("liar", liar.url))
    with pytest.raises(NoBackendLeft) as caught:
        await collect(rt, Completion(Role.BRAIN, prompt="x", schema=SCHEMA))
    assert not caught.value.retryable
    assert [type(a) for a in caught.value.attempts] == [SchemaUnsupported]
    await rt.close()


async def test_a_refused_request_stops_the_chain_a_refused_key_does_not(
    servers: ExitStack,
) -> None:
    refuses, unauthorized, good = start(servers, "400"), start(servers, "401"), start(servers, "ok")
    rt = runtime(endpoint("refuses", refuses.url), endpoint("good", good.url))
    with pytest.raises(BackendRefused) as caught:
        await collect(rt)
    assert caught.value.request_fault and good.hits == 0
    assert str(caught.value) == "refuses: answered HTTP 400 (invalid_value)"
    await rt.close()
    # A wrong key, or a prompt longer than this model's context: the next may serve.
    small = start(servers, "overflow")
    rt = runtime(
        endpoint("unauthorized", unauthorized.url),
        endpoint("small", small.url),
        endpoint("good", good.url),
    )
    answer = (await collect(rt))[-1]
    assert isinstance(answer, Answer) and answer.fallbacks == ("unauthorized", "small")
    await rt.close()


async def test_the_circuit_opens_skips_the_backend_then_probes_it(servers: ExitStack) -> None:
    broken, good = start(servers, "500"), start(servers, "ok")
    # The open period is long against three loopback answers (a loaded 2-core machine
    # must not outrun it); the wait for half-open is the breaker's own retry_in().
    rt = runtime(
        endpoint("broken", broken.url, max_retries=0), endpoint("good", good.url),
        failures=2, reset=3.0,
    )  # fmt: skip
    for _ in range(2):
        await collect(rt)
    breaker = rt._chains[Role.BRAIN].links[0].breaker
    assert breaker.state is State.OPEN
    for _ in range(3):
        answer = (await collect(rt))[-1]
        assert isinstance(answer, Answer) and answer.fallbacks == ()  # skipped, not tried
    assert breaker.state is State.OPEN  # still in the open period: the skips were its
    assert broken.hits == 2 and good.hits == 2 + 3
    await asyncio.sleep(breaker.retry_in())  # the breaker's own delay
    assert breaker.state is State.HALF_OPEN
    answer = (await collect(rt))[-1]  # half-open: one probe, which fails
    assert isinstance(answer, Answer) and answer.fallbacks == ("broken",) and broken.hits == 3
    await collect(rt)
    assert broken.hits == 3  # open again
    await rt.close()


async def test_the_budget_deadline_spans_the_chain(servers: ExitStack) -> None:
    hung, good = start(servers, "hang"), start(servers, "ok")
    rt = runtime(endpoint("hung", hung.url, token_timeout=30), endpoint("good", good.url))
    started = time.monotonic()
    with pytest.raises(GenerationAborted):
        await collect(rt, Completion(Role.BRAIN, prompt="x", budget=Budget(seconds=0.4)))
    assert time.monotonic() - started < 5.0 and good.hits == 0
    await rt.close()


async def test_complete_raises_on_a_truncated_answer(servers: ExitStack) -> None:
    long = start(servers, "length")
    rt = runtime(endpoint("long", long.url))
    with pytest.raises(AnswerTruncated) as caught:
        await rt.complete(CHAT)
    assert caught.value.text == "Hello, world!"
    items = await collect(rt)  # streamed, the Answer says length: the gateway passes it on
    assert isinstance(items[-1], Answer) and items[-1].finish_reason == "length"
    await rt.close()


async def test_a_dead_backend_fails_over_within_a_second(servers: ExitStack) -> None:
    good = start(servers, "ok")
    dead = f"http://127.0.0.1:{free_port()}/v1"
    rt = runtime(endpoint("dead", dead), endpoint("good", good.url))
    started = time.monotonic()
    answer = await rt.complete(CHAT)
    assert answer.backend == "good" and answer.fallbacks == ("dead",)
    assert time.monotonic() - started < 1.0
    await rt.close()


async def test_embeddings_come_back_in_input_order_and_fall_over(servers: ExitStack) -> None:
    broken, good = start(servers, "500"), start(servers, "ok")
    rt = runtime(
        endpoint("broken", broken.url, Role.EMBEDDER, max_retries=0),
        endpoint("good", good.url, Role.EMBEDDER),
    )
    vectors = await rt.embed(["a", "bbb"])
    assert vectors == [[1.0, 0.0, 1.0], [3.0, 1.0, 1.0]]
    assert good.received[0].body == {"model": "good-model", "input": ["a", "bbb"]}
    assert await rt.embed([]) == []
    await rt.close()


async def test_the_key_never_shows(
    servers: ExitStack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    unauthorized, broken = start(servers, "401"), start(servers, "500")
    monkeypatch.setenv("THE_KEY", KEY)
    key = SecretRef(env="THE_KEY")
    bus = EventBus()
    rt = runtime(
        endpoint("unauthorized", unauthorized.url, api_key=key),
        endpoint("broken", broken.url, api_key=key, max_retries=0),
        bus=bus,
    )
    with pytest.raises(NoBackendLeft) as caught:
        await collect(rt)
    assert unauthorized.received[0].headers["authorization"] == f"Bearer {KEY}"
    error = caught.value
    shown = [str(error), repr(error), *map(str, error.attempts), *map(repr, error.attempts)]
    cause: BaseException | None = error
    while cause is not None:
        shown += [str(cause), repr(cause)]
        cause = cause.__cause__ or cause.__context__
    shown += [repr(rt.settings), str(rt.settings), repr(rt._backends["broken"])]
    shown += [json.dumps([e.to_dict() for e in bus.history()]), caplog.text]
    assert all(KEY not in text for text in shown)
    # An unset reference is refused by name, and the chain goes on.
    monkeypatch.delenv("THE_KEY")
    with pytest.raises(NoBackendLeft) as caught:
        await collect(rt)
    assert "environment variable THE_KEY is not set" in str(caught.value.attempts[0])
    await rt.close()


async def test_a_stream_line_without_end_is_cut_at_a_bound(servers: ExitStack) -> None:
    endless, good = start(servers, "endless"), start(servers, "ok")
    bus = EventBus()
    rt = runtime(endpoint("endless", endless.url), endpoint("good", good.url), bus=bus)
    answer = (await collect(rt))[-1]
    assert isinstance(answer, Answer) and answer.fallbacks == ("endless",)
    fallback = next(e for e in bus.history() if e.type is EventType.MODEL_FALLBACK)
    assert fallback.data["message"] == "endless: sent a stream line over 1048576 bytes"
    await rt.close()
