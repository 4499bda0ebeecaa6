"""EndpointBackend against hostile servers speaking raw HTTP/1.1 on loopback (an asyncio
server in a thread: the exact bytes and their timing are the test's): keep-alives, floods,
odd finish reasons and shapes, poisoned embeddings, a bad key, a server ignoring
max_tokens or renaming its model (regression tests of review r3's findings)."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress

import pytest
from prometheus_client import CollectorRegistry

from controller.llm.completion import Answer, Budget, Chunk, Completion, Message, Role
from controller.llm.endpoint import EndpointBackend
from controller.llm.errors import (
    BackendRefused,
    BackendUnavailable,
    DeadlineExceeded,
    ModelError,
    NoBackendLeft,
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

CHAT = Completion(Role.BRAIN, messages=(Message("user", "hi"),))
Body = Callable[[asyncio.StreamWriter], Awaitable[None]]


class Raw:
    def __init__(self) -> None:
        self.url = ""
        self.closed_by_client = threading.Event()
        self.requests: list[bytes] = []


@contextmanager
def raw_server(
    body: Body, status: str = "200 OK", ctype: str = "text/event-stream"
) -> Iterator[Raw]:
    raw = Raw()
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        raw.requests.append(head + await reader.readexactly(length))
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nConnection: close\r\n\r\n".encode()
        )
        try:
            await body(writer)
            await writer.drain()
        except (ConnectionError, BrokenPipeError):
            raw.closed_by_client.set()
        finally:
            writer.close()

    stopping = asyncio.Event()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        raw.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
        ready.set()
        await stopping.wait()
        server.close()
        handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)

    def run() -> None:
        with suppress(RuntimeError, asyncio.CancelledError):
            loop.run_until_complete(main())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(5)
    try:
        yield raw
    finally:
        loop.call_soon_threadsafe(stopping.set)
        thread.join(5)


def event(text: str | None, finish: object = None, **extra: object) -> bytes:
    delta = {} if text is None else {"content": text}
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return b"data: " + json.dumps({"choices": [choice], **extra}).encode() + b"\n\n"


def backend(url: str, **options: object) -> EndpointBackend:
    return EndpointBackend("hostile", EndpointSettings(url=url, model="m", **options))  # type: ignore[arg-type]


async def drain(b: EndpointBackend, request: Completion = CHAT) -> list[Chunk | Answer]:
    return [item async for item in b.stream(request)]


async def test_keepalive_comments_do_not_defeat_the_token_timeout() -> None:
    """tokenTimeout is "how long to wait for the next piece of the answer": a server that
    sends only SSE comments forever never gives a piece, and with no budget the request
    must still end."""

    async def pings(writer: asyncio.StreamWriter) -> None:
        for _ in range(200):
            writer.write(b": ping\n\n")
            await writer.drain()
            await asyncio.sleep(0.1)

    with raw_server(pings) as raw:
        b = backend(raw.url, token_timeout=0.5)
        started = time.monotonic()
        try:
            await asyncio.wait_for(drain(b), 5.0)
        except ModelError:
            pass
        except TimeoutError:
            pytest.fail("still streaming after 5 s with tokenTimeout 0.5 s and no piece")
        finally:
            await b.close()
        assert time.monotonic() - started < 2.0


async def test_a_flood_of_blank_lines_does_not_stall_the_event_loop() -> None:
    """A hostile endpoint sending newlines at wire speed: the parser's split-per-line
    copies the rest of the buffer for every line (quadratic per read)."""

    async def flood(writer: asyncio.StreamWriter) -> None:
        for _ in range(64):  # 4 MiB of b"\n"
            writer.write(b"\n" * 65536)
            await writer.drain()
        writer.write(event("ok") + event(None, "stop") + b"data: [DONE]\n\n")

    gaps: list[float] = []

    async def ticker() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    with raw_server(flood) as raw:
        b = backend(raw.url)
        tick = asyncio.create_task(ticker())
        started = time.monotonic()
        items = await drain(b)
        spent = time.monotonic() - started
        tick.cancel()
        await b.close()
    assert isinstance(items[-1], Answer) and items[-1].text == "ok"
    assert max(gaps) < 0.25 and spent < 2.0, (max(gaps), spent)


@pytest.mark.parametrize("finish", ["content_filter", "error", "abort", "NaN"])
async def test_an_unknown_finish_reason_is_not_passed_as_a_valid_answer(finish: str) -> None:
    """Only "stop" means the model ended its answer; content_filter / abort / error
    (vLLM, OpenAI, Azure) mean it was cut. Here they all become finish_reason="stop"."""
    end = (
        b'data: {"choices":[{"index":0,"delta":{},"finish_reason":NaN}]}\n\n'
        if finish == "NaN"
        else event(None, finish)
    )

    async def cut(writer: asyncio.StreamWriter) -> None:
        writer.write(event("half an ans") + end + b"data: [DONE]\n\n")

    with raw_server(cut) as raw:
        settings = ModelsSettings(
            backends=(
                BackendSettings("hostile", Role.BRAIN, endpoint=EndpointSettings(raw.url, "m")),
            )
        )
        rt = ModelRuntime(settings)
        try:
            answer = await rt.complete(CHAT)
        except ModelError:
            return  # refused: fine
        finally:
            await rt.close()
    pytest.fail(f"finish_reason {finish!r} passed as a valid answer: {answer.finish_reason!r}")


async def test_negative_usage_counts_do_not_turn_a_good_answer_into_a_failure() -> None:
    async def negative(writer: asyncio.StreamWriter) -> None:
        usage = {"prompt_tokens": -5, "completion_tokens": 1}
        writer.write(event("fine") + event(None, "stop", usage=usage) + b"data: [DONE]\n\n")

    with raw_server(negative) as raw:
        settings = ModelsSettings(
            backends=(
                BackendSettings("hostile", Role.BRAIN, endpoint=EndpointSettings(raw.url, "m")),
            )
        )
        rt = ModelRuntime(settings, metrics=ModelMetrics(CollectorRegistry()))
        try:
            answer = await rt.complete(CHAT)
        finally:
            await rt.close()
    assert answer.text == "fine"


async def test_embeddings_refuse_nan_inf_and_booleans() -> None:
    async def poisoned(writer: asyncio.StreamWriter) -> None:
        body = b'{"data":[{"index":0,"embedding":["nan", true, 1e400, "-inf"]}]}'
        writer.write(body)

    with raw_server(poisoned, ctype="application/json") as raw:
        b = backend(raw.url)
        try:
            vectors = await b.embed(["t"])
        except ModelError:
            return
        finally:
            await b.close()
    assert all(math.isfinite(x) for x in vectors[0]), vectors


@pytest.mark.parametrize("how", ["endpoint-aclose", "runtime-aclose", "task-cancel"])
async def test_closing_the_stream_closes_the_http_connection(how: str) -> None:
    async def endless(writer: asyncio.StreamWriter) -> None:
        for index in range(10_000):
            writer.write(event(f"t{index} "))
            await writer.drain()
            await asyncio.sleep(0.02)

    with raw_server(endless) as raw:
        settings = ModelsSettings(
            backends=(
                BackendSettings("hostile", Role.BRAIN, endpoint=EndpointSettings(raw.url, "m")),
            )
        )
        rt = ModelRuntime(settings)
        b = rt._backends["hostile"]
        if how == "task-cancel":
            first = asyncio.Event()

            async def consume() -> None:
                async for _ in rt.stream(CHAT):
                    first.set()

            task = asyncio.create_task(consume())
            await first.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        else:
            stream = b.stream(CHAT) if how == "endpoint-aclose" else rt.stream(CHAT)
            assert isinstance(await anext(stream), Chunk)
            await stream.aclose()  # type: ignore[attr-defined]
        closed = await asyncio.to_thread(raw.closed_by_client.wait, 2.0)
        await rt.close()
    assert closed, "the server kept streaming to a closed request"


async def test_data_after_done_is_ignored() -> None:
    async def trailing(writer: asyncio.StreamWriter) -> None:
        writer.write(event("a") + event(None, "stop") + b"data: [DONE]\n\n" + event("LEAK"))

    with raw_server(trailing) as raw:
        b = backend(raw.url)
        items = await drain(b)
        await b.close()
    assert isinstance(items[-1], Answer) and items[-1].text == "a"


async def test_choices_that_are_not_objects_map_into_the_model_error_tree() -> None:
    async def odd(writer: asyncio.StreamWriter) -> None:
        writer.write(b'data: {"choices": "abc"}\n\n' + event(None, "stop"))

    with raw_server(odd) as raw:
        b = backend(raw.url)
        with pytest.raises(ModelError):
            await drain(b)
        await b.close()


async def test_a_non_ascii_key_is_refused_by_name_and_not_carried_in_the_cause_chain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = "sk-secret-\u00e9-0123456789"  # a pasted typographic character
    monkeypatch.setenv("R3_KEY", key)

    async def never(writer: asyncio.StreamWriter) -> None:
        writer.write(event(None, "stop"))

    with raw_server(never) as raw:
        settings = ModelsSettings(
            backends=(
                BackendSettings(
                    "hostile",
                    Role.BRAIN,
                    endpoint=EndpointSettings(raw.url, "m", api_key=SecretRef(env="R3_KEY")),
                ),
            )
        )
        rt = ModelRuntime(settings)
        with pytest.raises(NoBackendLeft) as caught:
            await rt.complete(CHAT)
        await rt.close()
    shown = []
    cause: BaseException | None = caught.value
    while cause is not None:
        shown += [str(cause), repr(cause), repr(vars(cause)), repr(getattr(cause, "object", ""))]
        cause = cause.__cause__ or cause.__context__
    # UnicodeEncodeError.object is the whole header value, "Bearer <key>", and the chain
    # chains it as the cause of BackendUnavailable; it is also logged with log.exception.
    assert all("sk-secret" not in s for s in shown), [s for s in shown if "sk-secret" in s]
    assert "apiKeyRef" in str(caught.value.attempts[0])


async def test_a_server_ignoring_max_tokens_is_stopped_client_side() -> None:
    """A server that streams past max_tokens (ignores it, or a proxy that drops it):
    ``pieces`` grows without bound and the endless answer is passed on as "stop"."""

    async def chatty(writer: asyncio.StreamWriter) -> None:
        for index in range(5000):
            writer.write(event(f"w{index} "))
        writer.write(event(None, "stop") + b"data: [DONE]\n\n")
        await writer.drain()

    with raw_server(chatty) as raw:
        b = backend(raw.url)
        request = Completion(Role.BRAIN, messages=CHAT.messages, budget=Budget(max_tokens=16))
        try:
            items = await drain(b, request)
        except ModelError:
            return
        finally:
            await b.close()
    chunks = [i for i in items if isinstance(i, Chunk)]
    answer = items[-1]
    assert isinstance(answer, Answer)
    assert len(chunks) <= 64 and answer.finish_reason == "length", (
        len(chunks),
        answer.finish_reason,
    )


async def test_the_model_name_a_server_reports_does_not_grow_metric_labels() -> None:
    """Answer.model comes from the server's events and becomes a Prometheus label: a
    server naming a new model in each answer adds series without bound."""
    counter = iter(range(10**6))

    async def renamer(writer: asyncio.StreamWriter) -> None:
        name = f"model-{next(counter)}"
        writer.write(event("x", model=name) + event(None, "stop", model=name) + b"data: [DONE]\n\n")

    registry = CollectorRegistry()
    with raw_server(renamer) as raw:
        settings = ModelsSettings(
            backends=(
                BackendSettings("hostile", Role.BRAIN, endpoint=EndpointSettings(raw.url, "m")),
            )
        )
        rt = ModelRuntime(settings, metrics=ModelMetrics(registry))
        for _ in range(20):
            await rt.complete(CHAT)
        await rt.close()
    models = {
        s.labels.get("model")
        for metric in registry.collect()
        for s in metric.samples
        if "model" in s.labels
    }
    assert len(models) <= 2, sorted(map(str, models))[:5]


async def test_a_big_embeddings_answer_is_read_without_quadratic_copies() -> None:
    """``data += part`` per read copies everything before it each time: reading 4x the
    bytes takes ~16x the time. Measured as a growth rate (32 MiB against 8 MiB, each
    under MAX_BODY), not against a wall-clock bound a loaded machine could overrun."""

    def big(mib: int) -> Body:
        async def answer(writer: asyncio.StreamWriter) -> None:
            block = b" " * 65536
            writer.write(b'{"data": [{"index": 0, "embedding": [1.0]}]')
            for _ in range(mib * 16):  # white space: valid JSON
                writer.write(block)
                await writer.drain()
            writer.write(b"}")

        return answer

    spent = {}
    for mib in (8, 32):
        with raw_server(big(mib), ctype="application/json") as raw:
            b = backend(raw.url)
            started = time.monotonic()
            vectors = await b.embed(["t"])
            spent[mib] = time.monotonic() - started
            await b.close()
        assert vectors == [[1.0]]
    assert spent[32] < 8 * spent[8] + 1.0, spent


async def test_a_redirect_is_refused_as_the_backend_s_configuration() -> None:
    async def nothing(writer: asyncio.StreamWriter) -> None:
        pass

    with raw_server(nothing, status="307 Temporary Redirect") as raw:
        b = backend(raw.url)
        with pytest.raises(BackendRefused) as caught:
            await drain(b)
        await b.close()
    assert not caught.value.retryable and not caught.value.request_fault


async def test_an_error_key_of_null_is_no_error() -> None:
    async def fine(writer: asyncio.StreamWriter) -> None:
        writer.write(event("ok", error=None) + event(None, "stop") + b"data: [DONE]\n\n")

    with raw_server(fine) as raw:
        b = backend(raw.url)
        items = await drain(b)
        await b.close()
    assert isinstance(items[-1], Answer) and items[-1].text == "ok"


@pytest.mark.parametrize(
    "data",
    [
        b'[{"index":0,"embedding":[1.0]},{"index":0,"embedding":[2.0]}]',  # one index twice
        b'[{"index":0,"embedding":[1.0]},{"index":2,"embedding":[2.0]}]',  # out of range
        b'[{"index":true,"embedding":[1.0]},{"index":1,"embedding":[2.0]}]',  # a bool
        b'[{"index":0,"embedding":[1.0]},{"index":1,"embedding":[2.0, 3.0]}]',  # two sizes
        b'[{"index":0,"embedding":[]},{"index":1,"embedding":[]}]',  # no dimension
        b'[{"index":0,"embedding":[1.0]},{"index":1,"embedding":[NaN]}]',
    ],
)
async def test_embeddings_in_a_broken_shape_are_refused(data: bytes) -> None:
    async def answer(writer: asyncio.StreamWriter) -> None:
        writer.write(b'{"data":' + data + b"}")

    with raw_server(answer, ctype="application/json") as raw:
        b = backend(raw.url)
        with pytest.raises(BackendUnavailable):
            await b.embed(["t", "u"])
        await b.close()


async def test_embeddings_end_within_connect_and_token_timeout_however_slowly_sent() -> None:
    async def trickle(writer: asyncio.StreamWriter) -> None:
        writer.write(b'{"data": [{"index": 0, "embedding": [1.0]}]')
        for _ in range(600):  # a space every 0.05 s: each read is in time, never the whole
            writer.write(b" ")
            await writer.drain()
            await asyncio.sleep(0.05)
        writer.write(b"}")

    with raw_server(trickle, ctype="application/json") as raw:
        b = backend(raw.url, connect_timeout=0.2, token_timeout=0.5)
        with pytest.raises(BackendUnavailable, match="connectTimeout \\+ tokenTimeout"):
            await asyncio.wait_for(b.embed(["t"]), 10.0)
        await b.close()


async def test_the_environment_s_proxy_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy from the environment would get the request and its key."""
    dead = "http://127.0.0.1:9"
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, dead)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    async def fine(writer: asyncio.StreamWriter) -> None:
        writer.write(event("ok") + event(None, "stop") + b"data: [DONE]\n\n")

    with raw_server(fine) as raw:
        b = backend(raw.url)
        items = await drain(b)
        await b.close()
    assert isinstance(items[-1], Answer) and items[-1].text == "ok"


async def test_a_hung_endpoint_with_budgets_shorter_than_its_timeout_is_left() -> None:
    """tokenTimeout 30 s, budgets of 0.2 s: the deadline fires while waiting on it,
    which its circuit counts; after ``failures`` such requests the next backend serves."""

    async def hang(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(3600)

    async def fine(writer: asyncio.StreamWriter) -> None:
        writer.write(event("ok") + event(None, "stop") + b"data: [DONE]\n\n")

    with raw_server(hang) as hung, raw_server(fine) as good:
        settings = ModelsSettings(
            backends=(
                BackendSettings(
                    "hung", Role.BRAIN, endpoint=EndpointSettings(hung.url, "m", token_timeout=30)
                ),
                BackendSettings("good", Role.BRAIN, endpoint=EndpointSettings(good.url, "m")),
            ),
            circuit=CircuitSettings(failures=2, reset=60.0),
        )
        rt = ModelRuntime(settings)
        ask = Completion(Role.BRAIN, messages=CHAT.messages, budget=Budget(seconds=0.2))
        for _ in range(2):
            with pytest.raises(DeadlineExceeded):
                await rt.complete(ask)
        answer = await rt.complete(ask)
        await rt.close()
    assert answer.backend == "good" and len(hung.requests) == 2
