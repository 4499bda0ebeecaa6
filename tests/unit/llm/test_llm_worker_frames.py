"""The worker backend's mapping of frames to chunks, answers and errors, against a small
real asyncio Unix-socket server that speaks the protocol by script (the real worker's
behaviour is tested in tests/integration/llm). What is tested here is only the client's
side: each frame the protocol allows, and each way a connection can end."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from controller.llm.completion import Answer, Budget, Chunk, Completion, Message, Role
from controller.llm.errors import (
    BackendBusy,
    BackendRefused,
    BackendUnavailable,
    DeadlineExceeded,
    GenerationAborted,
    SchemaUnsupported,
)
from controller.llm.worker import SocketLink, WorkerBackend


class ScriptedWorker:
    """Answers each ``generate`` by the script its prompt names; records what it got."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.aborted = asyncio.Event()
        self.writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        while line := await reader.readline():
            frame = json.loads(line)
            self.received.append(frame)
            if frame["op"] == "abort":
                self.aborted.set()
                send(writer, {"id": frame["id"], "event": "result", "result": {}})
                continue
            if frame["op"] == "embed":
                vectors = [[float(len(t)), 1.0] for t in frame["texts"]]
                send(writer, {"id": frame["id"], "event": "result", "result": {"vectors": vectors}})
                continue
            script = frame.get("prompt") or frame["messages"][-1]["content"]
            rid = frame["id"]
            if script == "eof":
                writer.close()
                return
            if script == "hang":
                send(writer, token(rid, "a", 0))
                continue  # never a final frame: the client must abort it
            if script.startswith("error:"):
                code = script.split(":", 1)[1]
                reply = {"id": rid, "event": "error", "code": code, "message": f"scripted {code}"}
                if code == "busy":
                    reply["retry_after"] = 2.5
                send(writer, reply)
                continue
            if script.startswith("abort:"):
                send(writer, token(rid, "a", 0))
                send(
                    writer,
                    {
                        "id": rid,
                        "event": "done",
                        "text": "a",
                        "finish_reason": "abort",
                        "abort_reason": script.split(":", 1)[1],
                        "model": "tiny",
                    },
                )
                continue
            reason = "length" if script == "length" else "stop"
            for index, piece in enumerate(["Hel", "lo"]):
                send(writer, token(rid, piece, index))
            send(
                writer,
                {
                    "id": rid,
                    "event": "done",
                    "text": "Hello",
                    "finish_reason": reason,
                    "model": "tiny",
                    "usage": {"prompt_tokens": 7, "completion_tokens": 2, "cached_tokens": 3},
                    "timings": {"queued_s": 0.01, "ttft_s": 0.02, "total_s": 0.03},
                },
            )
        writer.close()


def token(rid: str, text: str, index: int) -> dict[str, Any]:
    return {"id": rid, "event": "token", "text": text, "index": index}


def send(writer: asyncio.StreamWriter, frame: dict[str, Any]) -> None:
    writer.write(json.dumps(frame).encode() + b"\n")


@pytest.fixture
async def worker(tmp_path: Path) -> AsyncIterator[tuple[ScriptedWorker, WorkerBackend]]:
    scripted = ScriptedWorker()
    path = str(tmp_path / "w.sock")
    server = await asyncio.start_unix_server(scripted.handle, path)
    backend = WorkerBackend("local", "tiny", SocketLink(path), frame_timeout=5, owns_link=True)
    yield scripted, backend
    await backend.close()
    server.close()
    for writer in scripted.writers:
        writer.close()


def ask(text: str, **kwargs: Any) -> Completion:
    return Completion(Role.BRAIN, messages=(Message("user", text),), **kwargs)


async def collect(backend: WorkerBackend, request: Completion) -> list[Chunk | Answer]:
    return [item async for item in backend.stream(request)]


async def test_tokens_become_chunks_and_done_the_answer(worker: Any) -> None:
    scripted, backend = worker
    items = await collect(backend, ask("tokens", session="s1", schema={"type": "object"}))
    assert [c.text for c in items if isinstance(c, Chunk)] == ["Hel", "lo"]
    assert all(c.backend == "local" for c in items if isinstance(c, Chunk))
    answer = items[-1]
    assert isinstance(answer, Answer)
    assert (answer.text, answer.finish_reason, answer.backend, answer.model) == (
        "Hello",
        "stop",
        "local",
        "tiny",
    )
    assert (answer.usage.prompt_tokens, answer.usage.cached_tokens) == (7, 3)
    assert answer.timings.queued_s == 0.01 and answer.timings.total_s > 0
    sent = scripted.received[0]
    assert sent["op"] == "generate" and sent["model"] == "tiny" and sent["session"] == "s1"
    assert sent["schema"] == {"type": "object"} and sent["params"]["max_tokens"] == 256


async def test_length_is_an_answer_that_says_so(worker: Any) -> None:
    _, backend = worker
    answer = (await collect(backend, ask("length")))[-1]
    assert isinstance(answer, Answer) and answer.finish_reason == "length"


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("busy", BackendBusy),
        ("schema_unsupported", SchemaUnsupported),
        ("memory", BackendUnavailable),
        ("internal", BackendUnavailable),
        ("load_failed", BackendUnavailable),
        ("bad_request", BackendRefused),
        ("context_overflow", BackendRefused),
        ("aborted", GenerationAborted),
    ],
)
async def test_error_frames_map_into_the_model_error_tree(
    worker: Any, code: str, kind: type[Exception]
) -> None:
    _, backend = worker
    with pytest.raises(kind) as caught:
        await collect(backend, ask(f"error:{code}"))
    assert type(caught.value) is kind
    assert str(caught.value).startswith("local: scripted")
    if code == "busy":
        assert caught.value.delay == 2.5  # type: ignore[attr-defined]


async def test_eof_fails_the_request_as_unavailable(worker: Any) -> None:
    _, backend = worker
    with pytest.raises(BackendUnavailable, match="closed the connection"):
        await collect(backend, ask("eof"))
    # And the next request connects again.
    assert isinstance((await collect(backend, ask("tokens")))[-1], Answer)


async def test_closing_the_stream_sends_abort_for_its_id(worker: Any) -> None:
    scripted, backend = worker
    stream = backend.stream(ask("hang"))
    first = await anext(stream)
    assert isinstance(first, Chunk)
    await stream.aclose()  # type: ignore[attr-defined]
    await asyncio.wait_for(scripted.aborted.wait(), 5)
    abort = next(f for f in scripted.received if f["op"] == "abort")
    assert abort["target"] == scripted.received[0]["id"]


async def test_a_cancelled_task_sends_abort(worker: Any) -> None:
    scripted, backend = worker
    got_one = asyncio.Event()

    async def consume() -> None:
        async for _ in backend.stream(ask("hang")):
            got_one.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_one.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(scripted.aborted.wait(), 5)


async def test_no_frame_in_time_is_unavailable_and_aborts(tmp_path: Path) -> None:
    scripted = ScriptedWorker()
    path = str(tmp_path / "w.sock")
    server = await asyncio.start_unix_server(scripted.handle, path)
    backend = WorkerBackend("local", "tiny", SocketLink(path), frame_timeout=0.3, owns_link=True)
    try:
        with pytest.raises(BackendUnavailable, match=r"no frame from the worker within 0\.3 s"):
            await collect(backend, ask("hang"))
        await asyncio.wait_for(scripted.aborted.wait(), 5)
    finally:
        await backend.close()
        server.close()


async def test_deadline_goes_to_the_worker(worker: Any) -> None:
    scripted, backend = worker
    await collect(backend, ask("tokens", budget=Budget(max_tokens=9, seconds=4.0)))
    assert scripted.received[0]["deadline"] == 4.0
    assert scripted.received[0]["params"]["max_tokens"] == 9


async def test_embed(worker: Any) -> None:
    _, backend = worker
    assert await backend.embed(["ab", "c"]) == [[2.0, 1.0], [1.0, 1.0]]


async def test_no_socket_is_unavailable(tmp_path: Path) -> None:
    backend = WorkerBackend("local", "tiny", SocketLink(str(tmp_path / "none.sock")))
    with pytest.raises(BackendUnavailable, match="local: cannot connect"):
        await collect(backend, ask("tokens"))


async def test_a_deadline_abort_is_deadline_exceeded_never_an_answer(worker: Any) -> None:
    """The worker stopped at the deadline: the caller's limit, said by a backend that
    is up (``answered``: its circuit counts nothing); never an answer that looks done."""
    _, backend = worker
    with pytest.raises(DeadlineExceeded) as caught:
        await collect(backend, ask("abort:deadline"))
    assert caught.value.answered


async def test_the_worker_giving_up_on_a_slow_reader_is_unavailable(worker: Any) -> None:
    _, backend = worker
    with pytest.raises(BackendUnavailable, match="slow_reader"):
        await collect(backend, ask("abort:slow_reader"))
