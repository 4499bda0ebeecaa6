"""A scripted model: a real OpenAI-compatible HTTP server on loopback that answers each
completion with the next turn of a transcript kept as a data file, so the agent's loop is
tested through the same client as any endpoint (``EndpointBackend`` via ``ModelRuntime``)
with no model at all.

    transcript = Transcript.load("tests/data/restart.yaml")  # or Transcript.packaged(...)
    with serving(transcript) as model:
        runtime = ModelRuntime(settings_for(model.url))
        answer = await runtime.complete(Completion(Role.BRAIN, messages=...))
        assert model.calls == 1 and model.remaining == 0

A transcript file (YAML or JSON) is a list of turns, or a mapping of ``turns`` and
``chunkSize`` (characters per streamed chunk, default 8). A turn is a string (the
answer) or a mapping of:

``answer``
    the text streamed; a mapping or list is sent as its JSON (the agent's action, written
    as YAML). Split into chunks of ``chunkSize`` characters: one chunk is one token.
``expect``
    a string, or a list of strings, that the request must contain, else the server
    answers HTTP 500 with code ``transcript_mismatch`` and a body naming the turn and
    what was expected (the turn stays next). Where: ``within: last`` (default) is the
    last user message (a raw prompt: the prompt), ``within: prompt`` every message.
``hang: true``
    accept the request and send nothing but SSE keep-alive comments until the client
    gives up (its tokenTimeout) or the server stops.
``delay``
    seconds before each chunk (the first included).
``finish: length``
    end the answer as truncated by ``max_tokens`` (default ``stop``).
``status``
    answer that HTTP status (400-599) with an OpenAI error body instead of an answer.

Each completion request takes one turn, whether it succeeds or not (a mismatch takes
none); past the last, HTTP 500 ``transcript_exhausted after N turns``. Mismatches and
exhaustion are kept in ``errors``, and :func:`serving` raises them when its block ends
(``strict``), so a loop that swallows a model error still fails its test.

The server honours ``max_tokens`` (it stops there with ``finish_reason: length``), and
reports usage in the last event of every stream, as llama.cpp's server does:
``prompt_tokens`` is the prompt's characters / 4 (rounded up; a chat's prompt is its
messages' contents joined by newlines), ``completion_tokens`` the chunks sent.

Embeddings (``/v1/embeddings``, no transcript turn) are deterministic hashed
bag-of-words vectors, :func:`embedding`: each lower-cased run of letters and digits adds
+1 or -1 (by its hash) at one of :data:`EMBEDDING_DIMENSION` places (by its hash), and
the vector is scaled to length 1. The cosine of two texts therefore grows with the words
they share, and texts with no word in common score near 0 (collisions of 64 places
add noise, about +-0.15 for short texts): enough for a knowledge base to rank a text
containing the query's words above one that does not.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.resources
import json
import math
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import uvicorn
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from controller.llm.settings import ModelsSettings, from_config
from controller.words import count

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_MODEL",
    "EMBEDDING_DIMENSION",
    "Recorded",
    "ScriptedModel",
    "Transcript",
    "TranscriptError",
    "Turn",
    "embedding",
    "models_section",
    "serving",
    "settings_for",
]

DEFAULT_CHUNK_SIZE = 8  # characters per streamed chunk: several per answer, one "token" each
DEFAULT_MODEL = "scripted"
EMBEDDING_DIMENSION = 64
KEEP_ALIVE = 0.25  # seconds between the SSE comments of a hanging turn
_WORD = re.compile(r"[a-z0-9]+")
_TURN_KEYS = frozenset({"answer", "expect", "within", "hang", "delay", "finish", "status"})
_EXCERPT = 300  # characters of the request quoted in a mismatch

Within = Literal["last", "prompt"]


class TranscriptError(ValueError):
    """A transcript file or value that cannot be read: the message names the turn."""


@dataclass(frozen=True)
class Turn:
    answer: str = ""
    expect: tuple[str, ...] = ()
    within: Within = "last"
    hang: bool = False
    delay: float = 0.0
    finish: Literal["stop", "length"] = "stop"
    status: int | None = None


@dataclass(frozen=True)
class Transcript:
    turns: tuple[Turn, ...]
    chunk_size: int = DEFAULT_CHUNK_SIZE

    def __post_init__(self) -> None:
        size = self.chunk_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise TranscriptError("chunkSize must be an integer of at least 1")

    @classmethod
    def load(cls, path: str | Path) -> Transcript:
        """The transcript of a ``.json`` file (JSON) or any other (YAML)."""
        file = Path(path)
        text = file.read_text(encoding="utf-8")
        try:
            value = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            raise TranscriptError(f"{file}: not valid {file.suffix or 'YAML'}: {exc}") from exc
        return cls.parse(value, source=str(file))

    @classmethod
    def packaged(cls, name: str) -> Transcript:
        """A sample shipped in ``controller/testing/transcripts/`` (``name`` without its
        ``.yaml``)."""
        folder = importlib.resources.files("controller.testing") / "transcripts"
        entry = folder / f"{name}.yaml"
        if not entry.is_file():
            raise TranscriptError(f"no packaged transcript named {name!r}")
        value = yaml.safe_load(entry.read_text(encoding="utf-8"))
        return cls.parse(value, source=f"transcripts/{name}.yaml")

    @classmethod
    def parse(cls, value: Any, *, source: str = "transcript") -> Transcript:
        """A transcript of a loaded data value: a list of turns, or ``{turns, chunkSize}``."""
        chunk_size = DEFAULT_CHUNK_SIZE
        if isinstance(value, Mapping):
            unknown = sorted(set(map(str, value)) - {"turns", "chunkSize"})
            if unknown:
                raise TranscriptError(f"{source}: unknown key {unknown[0]!r} (turns, chunkSize)")
            chunk_size = value.get("chunkSize", DEFAULT_CHUNK_SIZE)
            value = value.get("turns")
        if not isinstance(value, list):
            raise TranscriptError(f"{source}: a transcript is a list of turns")
        turns = tuple(_turn(raw, f"{source}: turn {n}") for n, raw in enumerate(value, 1))
        try:
            return cls(turns, chunk_size)
        except TranscriptError as exc:
            raise TranscriptError(f"{source}: {exc}") from None


def _turn(raw: Any, at: str) -> Turn:
    if isinstance(raw, str):
        return Turn(answer=raw)
    if not isinstance(raw, Mapping):
        raise TranscriptError(f"{at}: a turn is a string or a mapping")
    unknown = sorted(set(map(str, raw)) - _TURN_KEYS)
    if unknown:
        raise TranscriptError(f"{at}: unknown key {unknown[0]!r} ({', '.join(sorted(_TURN_KEYS))})")
    answer = raw.get("answer", "")
    if not isinstance(answer, str):
        answer = json.dumps(answer)  # an action written as YAML: sent as the JSON it is
    expect = raw.get("expect", ())
    expect = (expect,) if isinstance(expect, str) else expect
    if not isinstance(expect, list | tuple) or not all(isinstance(e, str) and e for e in expect):
        raise TranscriptError(f"{at}: expect is a non-empty string or a list of them")
    within = raw.get("within", "last")
    if within not in ("last", "prompt"):
        raise TranscriptError(f"{at}: within is last or prompt")
    hang = raw.get("hang", False)
    if not isinstance(hang, bool):
        raise TranscriptError(f"{at}: hang is true or false")
    delay = raw.get("delay", 0.0)
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay < 3600:
        raise TranscriptError(f"{at}: delay is a number of seconds, 0 to 3600")
    finish = raw.get("finish", "stop")
    if finish not in ("stop", "length"):
        raise TranscriptError(f"{at}: finish is stop or length")
    status = raw.get("status")
    if status is not None and (
        isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599
    ):
        raise TranscriptError(f"{at}: status is an HTTP error status, 400 to 599")
    if "answer" not in raw and not hang and status is None:
        raise TranscriptError(f"{at}: a turn needs an answer (or hang, or status)")
    return Turn(answer, tuple(expect), within, hang, float(delay), finish, status)


@dataclass(frozen=True)
class Recorded:
    """One request as the server got it: ``body`` is its JSON ({} for a GET)."""

    path: str
    body: Mapping[str, Any]


def embedding(text: str) -> list[float]:
    """The deterministic vector of ``text`` (see the module): :data:`EMBEDDING_DIMENSION`
    numbers, length 1. A text with no word gets the vector of the empty word."""
    vector = [0.0] * EMBEDDING_DIMENSION
    for word in _WORD.findall(text.lower()) or [""]:
        digest = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
        vector[digest % EMBEDDING_DIMENSION] += 1.0 if digest >> 63 else -1.0
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0:  # every word cancelled out: still a unit vector, still deterministic
        vector[0], norm = 1.0, 1.0
    return [x / norm for x in vector]


@dataclass
class _Script:
    """The transcript's progress and what was asked; touched by the server's thread and
    read by the test's, under ``lock``."""

    transcript: Transcript
    model: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    closing: threading.Event = field(default_factory=threading.Event)
    next: int = 0
    calls: int = 0
    requests: list[Recorded] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def take(self, last: str, prompt: str) -> Turn | tuple[str, str]:
        """The next turn, or the error code and message of a request it cannot answer."""
        with self.lock:
            self.calls += 1
            turns = self.transcript.turns
            if self.next >= len(turns):
                message = f"transcript exhausted after {count(len(turns), 'turn')}"
                self.errors.append(message)
                return "transcript_exhausted", message
            turn = turns[self.next]
            seen = last if turn.within == "last" else prompt
            missing = [e for e in turn.expect if e not in seen]
            if missing:
                where = "the last user message" if turn.within == "last" else "the prompt"
                shown = seen if len(seen) <= _EXCERPT else "..." + seen[-_EXCERPT:]
                message = (
                    f"turn {self.next + 1} of {len(turns)} expected {missing[0]!r} in "
                    f"{where}, which was: {shown!r}"
                )
                self.errors.append(message)
                return "transcript_mismatch", message
            self.next += 1
            return turn

    def record(self, path: str, body: Mapping[str, Any]) -> None:
        with self.lock:
            self.requests.append(Recorded(path, body))

    async def until_closed(self) -> None:
        while not self.closing.is_set():
            await asyncio.sleep(0.05)


class ScriptedModel:
    """The server of one transcript on a free loopback port, from :meth:`start` (or
    ``with``) to :meth:`stop`. ``url`` is its base, ``/v1`` included, as
    ``models.backends[].endpoint.url`` takes it."""

    def __init__(
        self, transcript: Transcript, *, model: str = DEFAULT_MODEL, host: str = "127.0.0.1"
    ) -> None:
        self.transcript = transcript
        self.model = model
        self.host = host
        self.port = 0
        self._script = _Script(transcript, model)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def calls(self) -> int:
        """Completion requests received (answered or not)."""
        with self._script.lock:
            return self._script.calls

    @property
    def served(self) -> int:
        """Turns taken so far."""
        with self._script.lock:
            return self._script.next

    @property
    def remaining(self) -> int:
        """Turns not taken yet."""
        with self._script.lock:
            return len(self.transcript.turns) - self._script.next

    @property
    def requests(self) -> list[Recorded]:
        """Every request, in order: completions, embeddings and model lists."""
        with self._script.lock:
            return list(self._script.requests)

    @property
    def completions(self) -> list[Recorded]:
        """The completion requests only, in order."""
        return [r for r in self.requests if r.path.endswith("completions")]

    @property
    def errors(self) -> list[str]:
        """What was answered HTTP 500 for: mismatches, exhaustion."""
        with self._script.lock:
            return list(self._script.errors)

    def start(self) -> ScriptedModel:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))  # bound here: the port is known before the thread runs
        self.port = sock.getsockname()[1]
        self._socket = sock
        config = uvicorn.Config(
            _app(self._script),
            log_level="critical",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="scripted-model", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the scripted model server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._script.closing.set()  # hanging turns end, so shutdown need not wait on them
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> ScriptedModel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def serving(
    transcript: Transcript | str | Path, *, strict: bool = True, model: str = DEFAULT_MODEL
) -> Iterator[ScriptedModel]:
    """A :class:`ScriptedModel` of ``transcript`` (or of the file at that path) serving
    until the block ends. ``strict``: when the block ends without an exception but the
    server answered a mismatch or ran out of turns, raise AssertionError listing them."""
    if not isinstance(transcript, Transcript):
        transcript = Transcript.load(transcript)
    with ScriptedModel(transcript, model=model) as server:
        yield server
    if strict and server.errors:
        raise AssertionError("the scripted model refused requests: " + "; ".join(server.errors))


def models_section(
    urls: str | Sequence[str],
    roles: Sequence[str] = ("brain", "executor"),
    *,
    model: str = DEFAULT_MODEL,
    token_timeout: float | str | None = None,
    connect_timeout: float | str | None = None,
    max_retries: int = 0,
    circuit: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """fazai.yaml's ``models`` section with, for each role, one endpoint backend per URL
    (a chain tried in the order of ``urls``), named ``scripted-<role>`` then
    ``scripted-<role>-2``... ``max_retries`` defaults to 0, not the endpoint's 1, so one
    request takes exactly one turn even when the turn answers 503."""
    listed = [urls] if isinstance(urls, str) else list(urls)
    backends = []
    for role in roles:
        for n, url in enumerate(listed, 1):
            endpoint: dict[str, Any] = {"url": url, "model": model, "maxRetries": max_retries}
            if token_timeout is not None:
                endpoint["tokenTimeout"] = token_timeout
            if connect_timeout is not None:
                endpoint["connectTimeout"] = connect_timeout
            name = f"scripted-{role}" + (f"-{n}" if n > 1 else "")
            backends.append({"name": name, "role": role, "endpoint": endpoint})
    section: dict[str, Any] = {"backends": backends}
    if circuit is not None:
        section["circuit"] = dict(circuit)
    return section


def settings_for(
    urls: str | Sequence[str],
    roles: Sequence[str] = ("brain", "executor"),
    *,
    model: str = DEFAULT_MODEL,
    token_timeout: float | str | None = None,
    connect_timeout: float | str | None = None,
    max_retries: int = 0,
    circuit: Mapping[str, Any] | None = None,
) -> ModelsSettings:
    """The runtime's settings of :func:`models_section`, parsed as fazai.yaml's are
    (``ModelRuntime(settings_for(server.url))``). Add ``"embedder"`` to ``roles`` for
    embeddings: a role not listed has no backend."""
    return from_config(
        models_section(
            urls,
            roles,
            model=model,
            token_timeout=token_timeout,
            connect_timeout=connect_timeout,
            max_retries=max_retries,
            circuit=circuit,
        )
    )


# -- the HTTP API --------------------------------------------------------------------


def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    error = {"message": message, "type": code, "code": code, **extra}
    return JSONResponse({"error": error}, status_code=status)


def _texts(body: Mapping[str, Any], chat: bool) -> tuple[str, str] | None:
    """The last user message (a raw prompt: the prompt) and the whole prompt."""
    if not chat:
        prompt = body.get("prompt")
        return (prompt, prompt) if isinstance(prompt, str) else None
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    contents: list[str] = []
    last = ""
    for message in messages:
        content = message.get("content") if isinstance(message, Mapping) else None
        if not isinstance(content, str):
            return None
        contents.append(content)
        if message.get("role") == "user":
            last = content
    return last, "\n".join(contents)


def _app(script: _Script) -> Starlette:
    async def read(request: Request) -> Mapping[str, Any] | None:
        try:
            body = await request.json()
        except ValueError:
            body = None
        script.record(request.url.path, body if isinstance(body, Mapping) else {})
        return body if isinstance(body, Mapping) else None

    async def completions(request: Request) -> Response:
        body = await read(request)
        chat = request.url.path.endswith("chat/completions")
        texts = _texts(body, chat) if body is not None else None
        if body is None or texts is None:
            shape = "messages with string contents" if chat else "a string prompt"
            return _error(400, "invalid_request", f"the request needs a JSON body with {shape}")
        last, prompt = texts
        taken = script.take(last, prompt)
        if isinstance(taken, tuple):
            code, message = taken
            return _error(500, code, message)
        turn = taken
        if turn.status is not None:
            return _error(turn.status, "scripted_status", f"the transcript answers {turn.status}")
        size = script.transcript.chunk_size
        pieces = [turn.answer[i : i + size] for i in range(0, len(turn.answer), size)]
        finish: str = turn.finish
        limit = body.get("max_tokens")
        if isinstance(limit, int) and not isinstance(limit, bool) and 0 < limit < len(pieces):
            pieces, finish = pieces[:limit], "length"
        usage = {
            "prompt_tokens": math.ceil(len(prompt) / 4),
            "completion_tokens": len(pieces),
            "total_tokens": math.ceil(len(prompt) / 4) + len(pieces),
        }
        model = body.get("model") if isinstance(body.get("model"), str) else script.model
        reply = _Reply(chat, str(model), f"scripted-{script.calls}", int(time.time()))
        if body.get("stream") is True:
            events = reply.stream(turn, pieces, finish, usage, script)
            return StreamingResponse(events, media_type="text/event-stream")
        if turn.hang:
            await script.until_closed()
            return _error(503, "scripted_hang", "the server stopped during a hanging turn")
        for _ in pieces:
            if turn.delay:
                await asyncio.sleep(turn.delay)
        return JSONResponse(reply.whole("".join(pieces), finish, usage))

    async def embeddings(request: Request) -> Response:
        body = await read(request)
        given = body.get("input") if body is not None else None
        texts = [given] if isinstance(given, str) else given
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return _error(400, "invalid_request", "input is a string or a list of strings")
        data = [
            {"object": "embedding", "index": i, "embedding": embedding(t)}
            for i, t in enumerate(texts)
        ]
        tokens = sum(math.ceil(len(t) / 4) for t in texts)
        model = body.get("model") if body is not None else None
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": model if isinstance(model, str) else script.model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def models(request: Request) -> Response:
        script.record(request.url.path, {})
        listed = {"id": script.model, "object": "model", "created": 0, "owned_by": "fazai"}
        return JSONResponse({"object": "list", "data": [listed]})

    routes = [
        Route(prefix + path, handler, methods=[method])
        for prefix in ("/v1", "")
        for path, handler, method in (
            ("/chat/completions", completions, "POST"),
            ("/completions", completions, "POST"),
            ("/embeddings", embeddings, "POST"),
            ("/models", models, "GET"),
        )
    ]
    return Starlette(routes=routes)


@dataclass(frozen=True)
class _Reply:
    """The shapes of OpenAI's answers, chat or text completion."""

    chat: bool
    model: str
    id: str
    created: int

    def _head(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def _event(self, value: Mapping[str, Any]) -> bytes:
        return b"data: " + json.dumps(value).encode() + b"\n\n"

    def _chunk(self, text: str | None, first: bool, finish: str | None) -> bytes:
        choice: dict[str, Any] = {"index": 0}
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant"} if first else {}
            if text is not None:
                delta["content"] = text
            choice["delta"] = delta
        else:
            choice["text"] = text or ""
        choice["finish_reason"] = finish
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        return self._event({**self._head(kind), "choices": [choice]})

    async def stream(
        self,
        turn: Turn,
        pieces: Sequence[str],
        finish: str,
        usage: Mapping[str, int],
        script: _Script,
    ) -> AsyncIterator[bytes]:
        if turn.hang:
            # Comments only: no text, so the client's tokenTimeout must still fire.
            while not script.closing.is_set():
                yield b": scripted hang\n\n"
                await asyncio.sleep(KEEP_ALIVE)
            return
        for index, piece in enumerate(pieces):
            if turn.delay:
                await asyncio.sleep(turn.delay)
            yield self._chunk(piece, index == 0, None)
        yield self._chunk(None, not pieces, finish)
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        yield self._event({**self._head(kind), "choices": [], "usage": dict(usage)})
        yield b"data: [DONE]\n\n"

    def whole(self, text: str, finish: str, usage: Mapping[str, int]) -> dict[str, Any]:
        if self.chat:
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
            }
            kind = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "finish_reason": finish}
            kind = "text_completion"
        return {**self._head(kind), "choices": [choice], "usage": dict(usage)}
