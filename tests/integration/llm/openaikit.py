"""Real OpenAI-compatible HTTP servers on loopback for the chain's tests: starlette apps
served by uvicorn in a thread, each answering one way (well, 500, 429 with Retry-After,
hanging, dropping the stream halfway, answering JSON that breaks the schema), and
recording what they were sent."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

Behaviour = Literal[
    "ok", "500", "429", "hang", "drop", "badjson", "length", "401", "400", "overflow", "endless"
]


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeServer:
    behaviour: Behaviour
    pieces: tuple[str, ...] = ("Hello", ", ", "world", "!")
    drop_after: int = 2  # "drop": pieces sent before the connection is cut
    retry_after: str = "1"
    gap: float = 0.0  # seconds between two pieces
    received: list[Recorded] = field(default_factory=list)
    url: str = ""
    port: int = 0

    @property
    def hits(self) -> int:
        return len(self.received)


def _event(model: str, chat: bool, text: str | None, finish: str | None) -> bytes:
    if chat:
        choice: dict[str, Any] = {"index": 0, "delta": {} if text is None else {"content": text}}
    else:
        choice = {"index": 0, "text": text or ""}
    choice["finish_reason"] = finish
    return b"data: " + json.dumps({"model": model, "choices": [choice]}).encode() + b"\n\n"


def app(server: FakeServer) -> Starlette:
    async def completions(request: Request) -> Response:
        body = await request.json()
        server.received.append(Recorded(request.url.path, dict(request.headers), body))
        chat = request.url.path.endswith("chat/completions")
        model = str(body.get("model", "m"))
        kind = server.behaviour
        if kind == "500":
            # A server echoing the prompt in its error: it must not reach a message.
            return JSONResponse({"error": {"message": json.dumps(body)}}, status_code=500)
        if kind == "400":
            return JSONResponse({"error": {"code": "invalid_value"}}, status_code=400)
        if kind == "overflow":
            return JSONResponse({"error": {"code": "context_length_exceeded"}}, status_code=400)
        if kind == "401":
            return JSONResponse({"error": {"code": "invalid_api_key"}}, status_code=401)
        if kind == "429":
            return JSONResponse(
                {"error": {"code": "rate_limited"}},
                status_code=429,
                headers={"Retry-After": server.retry_after},
            )
        if kind == "hang":
            await asyncio.sleep(3600)
        pieces = server.pieces
        if kind == "badjson":
            pieces = ('{"action": ', '"reboot"', ", oops")

        async def endless() -> AsyncIterator[bytes]:
            yield b"data: "
            for _ in range(64):  # 4 MiB in one line, never ended: a bounded client stops
                yield b"x" * 65536

        if kind == "endless":
            return StreamingResponse(endless(), media_type="text/event-stream")

        async def sse() -> AsyncIterator[bytes]:
            for index, piece in enumerate(pieces):
                if kind == "drop" and index == server.drop_after:
                    raise ConnectionResetError("cut")  # uvicorn closes mid-body
                yield _event(model, chat, piece, None)
                if server.gap:
                    await asyncio.sleep(server.gap)
            finish = "length" if kind == "length" else "stop"
            yield _event(model, chat, None, finish)
            usage = {"prompt_tokens": 7, "completion_tokens": len(pieces)}
            yield b"data: " + json.dumps({"model": model, "choices": [], "usage": usage}).encode()
            yield b"\n\ndata: [DONE]\n\n"

        return StreamingResponse(sse(), media_type="text/event-stream")

    async def embeddings(request: Request) -> Response:
        body = await request.json()
        server.received.append(Recorded(request.url.path, dict(request.headers), body))
        if server.behaviour != "ok":
            return JSONResponse({"error": {}}, status_code=503)
        texts = body["input"]
        data = [
            {"index": i, "embedding": [float(len(t)), float(i), 1.0]} for i, t in enumerate(texts)
        ]
        return JSONResponse({"data": list(reversed(data)), "model": body["model"]})

    return Starlette(
        routes=[
            Route("/v1/chat/completions", completions, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
        ]
    )


@contextmanager
def serving(server: FakeServer) -> Iterator[FakeServer]:
    """``server`` listening on a free loopback port until the block ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server.port = sock.getsockname()[1]
    server.url = f"http://127.0.0.1:{server.port}/v1"
    config = uvicorn.Config(
        app(server), log_level="critical", lifespan="off", timeout_graceful_shutdown=1
    )
    runner = uvicorn.Server(config)
    thread = threading.Thread(target=runner.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not runner.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the fake server did not start")
        time.sleep(0.01)
    try:
        yield server
    finally:
        runner.should_exit = True
        thread.join(10)
        sock.close()


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
