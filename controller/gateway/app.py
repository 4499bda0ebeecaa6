"""The gateway's Starlette app.

Routes (a bearer token needed on each when tokens are configured):

    POST /v1/chat/completions   messages -> an answer, or its tokens as server-sent events
    POST /v1/completions        a prompt -> the same
    POST /v1/embeddings         texts -> vectors (the embedder role)
    GET  /v1/models             the roles and backends a request may name as ``model``
    GET  /metrics               the runtime's Prometheus metrics
    GET  /healthz               open, for probes

A client that goes away aborts its generation: a streamed one when its connection
closes (the stream is cancelled, which sends ``abort`` to the worker), also while the
gateway still waits for its first token (before the response starts: a long prompt, a
queue), a whole one too (the request's task watches for the disconnect while the answer
is made).

Sessions (``X-Session-Id``) are the caller's own: the worker gets the name under a
namespace derived from the bearer token (:func:`owner_of`), so two tokens never share a
session's KV state whatever names they pick.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import struct
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from controller import secrets
from controller.gateway import errors, requests
from controller.gateway.errors import BadRequest
from controller.gateway.settings import GatewaySettings
from controller.llm.completion import Answer, Chunk, Completion, Role
from controller.llm.errors import AnswerTruncated, GenerationAborted, ModelError
from controller.server.replies import read_body

log = logging.getLogger("fazai.gateway")

Endpoint = Callable[[Request, str], Awaitable[Response]]
OPEN_OWNER = "open"  # the sessions' namespace of a gateway without tokens (loopback only)
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


class Runtime(Protocol):
    """What the gateway needs of :class:`controller.llm.runtime.ModelRuntime`."""

    def stream(self, request: Completion) -> AsyncIterator[Chunk | Answer]: ...

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


@dataclass(frozen=True)
class Model:
    """A name a request may give as ``model``: a role, or a backend (and its role)."""

    name: str
    role: Role
    backend: bool = False


def build_app(
    runtime: Runtime,
    settings: GatewaySettings,
    models: Sequence[Model],
    *,
    metrics: Callable[[], Awaitable[tuple[bytes, str]]] | None = None,
) -> Starlette:
    """The gateway over ``runtime``. Reads every token now, so a missing one stops the
    start (SecretError) rather than failing the first request. ``metrics`` renders the
    exposition (body, content type)."""
    digests = tuple(_digest(_read_token(ref, i)) for i, ref in enumerate(settings.tokens))
    roles = {m.name: m.role for m in models if m.backend}

    def guarded(endpoint: Endpoint, write: bool) -> Callable[[Request], Awaitable[Response]]:
        async def guard(request: Request) -> Response:
            refused = _refused(request, digests, write)
            if refused is not None:
                return refused
            try:
                return await endpoint(request, owner_of(request, bool(digests)))
            except BadRequest as exc:
                return errors.for_bad_request(exc)
            except ModelError as exc:
                return errors.for_model_error(exc)

        return guard

    async def chat(request: Request, owner: str) -> Response:
        body = await _json(request, settings.max_body)
        parsed = requests.chat(body, request.headers, roles, owner=owner)
        return await _answer(request, runtime, parsed, chat=True)

    async def complete(request: Request, owner: str) -> Response:
        body = await _json(request, settings.max_body)
        parsed = requests.completion(body, request.headers, roles, owner=owner)
        return await _answer(request, runtime, parsed, chat=False)

    async def embeddings(request: Request, owner: str) -> Response:
        body = await _json(request, settings.max_body)
        role = requests.role_for(body.get("model"), roles, Role.EMBEDDER)
        if role is not Role.EMBEDDER:
            raise BadRequest("names a model that makes completions, not embeddings", "model")
        texts = requests.embedding_input(body)
        encoding = requests.embedding_format(body)
        vectors = await _unless_gone(request, runtime.embed(texts))
        if vectors is None:
            return Response(status_code=499)
        encode = _base64 if encoding == "base64" else list
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {"object": "embedding", "index": i, "embedding": encode(v)}
                    for i, v in enumerate(vectors)
                ],
                "model": body.get("model") or Role.EMBEDDER.value,
                "usage": {"prompt_tokens": 0, "total_tokens": 0},
            }
        )

    async def list_models(request: Request, owner: str) -> Response:
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {
                        "id": m.name,
                        "object": "model",
                        "created": 0,
                        "owned_by": "fazai",
                        "role": m.role.value,
                    }
                    for m in models
                ],
            }
        )

    async def show_metrics(request: Request, owner: str) -> Response:
        if metrics is None:
            return errors.reply(404, "no metrics here", code="not_found")
        data, kind = await metrics()
        return Response(data, media_type=kind)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def not_found(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return errors.reply(exc.status_code, str(exc.detail), code=None)

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return errors.reply(500, "internal error", "server_error")

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", guarded(chat, True), methods=["POST"]),
            Route("/v1/completions", guarded(complete, True), methods=["POST"]),
            Route("/v1/embeddings", guarded(embeddings, True), methods=["POST"]),
            Route("/v1/models", guarded(list_models, False), methods=["GET"]),
            Route("/metrics", guarded(show_metrics, False), methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        exception_handlers={HTTPException: not_found, Exception: unexpected},
    )
    # What controller.server's serving stack reads (read_body, serve_http).
    app.state.settings = settings.server()
    app.state.closing = asyncio.Event()
    return app


def _base64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def _read_token(ref: Any, index: int) -> str:
    value = secrets.resolve(ref.as_mapping(), "gateway", f"tokens[{index}]").reveal()
    if len(value) < 16:
        from controller.server.errors import ServerConfigError

        raise ServerConfigError(
            ("tokens", index), "a token is at least 16 characters: `openssl rand -hex 32`"
        )
    return value


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def owner_of(request: Request, tokens: bool) -> str:
    """The namespace of the caller's sessions: a digest of its bearer token (already
    checked), under a label of its own so that it is not the digest the tokens are
    compared by; without tokens, every (loopback) caller is the one operator."""
    if not tokens:
        return OPEN_OWNER
    token = request.headers.get("authorization", "").partition(" ")[2].strip()
    mark = hashlib.sha256(b"fazai-gateway-session\0" + token.encode("utf-8", "surrogatepass"))
    return "t" + mark.hexdigest()[:24]


def _refused(request: Request, digests: tuple[bytes, ...], write: bool) -> Response | None:
    """None when the caller may go on. With tokens: a bearer token matching one of them,
    compared as digests against every one without stopping early (as controller.server's
    TokenTable). Without: only requests addressed to a loopback host, and writes only as
    JSON, as ``fazai serve``'s open API (a web page could otherwise drive the models
    through the operator's browser, by DNS rebinding or a cross-site form)."""
    if not digests:
        host = request.headers.get("host", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if name.lower() not in _LOOPBACK_HOSTS:
            return errors.reply(
                403,
                "this gateway has no token configured: it answers only loopback hosts",
                "permission_error",
            )
        kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if write and kind != "application/json":
            return errors.reply(415, "this gateway has no token configured: send JSON")
        return None
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    given = _digest(token.strip())
    found = False
    for digest in digests:  # no early exit
        found = hmac.compare_digest(given, digest) | found
    if scheme.lower() != "bearer" or not token.strip() or not found:
        return errors.reply(
            401,
            "a valid bearer token is needed",
            "invalid_request_error",
            "invalid_api_key",
            headers={"WWW-Authenticate": 'Bearer realm="fazai"'},
        )
    return None


async def _json(request: Request, limit: int) -> dict[str, Any]:
    try:
        data = await read_body(request, limit)
    except HTTPException as exc:
        raise BadRequest(str(exc.detail), None, exc.status_code) from None
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        raise BadRequest("the body is not a JSON object") from None
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object")
    return value


async def _disconnected(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _unless_gone(request: Request, work: Awaitable[Any]) -> Any:
    """``work``'s result; None (and ``work`` cancelled, which aborts its generation)
    when the client went away first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request.receive))
    gone = False
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        gone = not task.done()
        if gone:
            task.cancel()
        await asyncio.gather(watcher, task, return_exceptions=True)
    if gone:
        log.info("%s: the client went away; its generation was aborted", request.url.path)
        return None
    return task.result()


def _truncated(exc: AnswerTruncated) -> Answer:
    """An AnswerTruncated as the answer that says ``length`` (what an OpenAI client
    expects: finish_reason tells it), with the usage and model it came with."""
    return Answer(exc.text, "length", exc.backend, exc.model, usage=exc.usage)


async def _whole(runtime: Runtime, request: Completion) -> Answer:
    """The whole answer; an AnswerTruncated as an answer that says ``length``."""
    answer: Answer | None = None
    stream = runtime.stream(request)
    try:
        async for item in stream:
            if isinstance(item, Answer):
                answer = item
    except AnswerTruncated as exc:
        return _truncated(exc)
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    if answer is None:
        raise ModelError("", "the runtime ended without an answer")
    return _finished(answer)


def _finished(answer: Answer) -> Answer:
    """``answer``, unless it was aborted: that one is no answer to pass on as done."""
    if answer.finish_reason == "abort":
        raise GenerationAborted(answer.backend, "the backend aborted the answer")
    return answer


async def _answer(
    request: Request, runtime: Runtime, parsed: requests.Parsed, *, chat: bool
) -> Response:
    ident = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
    created = int(time.time())
    if parsed.stream:
        stream = runtime.stream(parsed.completion)
        # The first item decides the status: a failure before any token is a real error
        # answer (429, 503), not a 200 stream holding it. The wait for it (a long prompt,
        # a queue) comes before the response and its disconnect watch, so it watches for
        # the client going away itself: cancelled then, which aborts the generation.

        async def first_item() -> Chunk | Answer:
            try:
                return await anext(stream)
            except AnswerTruncated as exc:
                return _truncated(exc)

        try:
            first = await _unless_gone(request, first_item())
        except BaseException:
            await stream.aclose()  # type: ignore[attr-defined]
            raise
        if first is None:
            await stream.aclose()  # type: ignore[attr-defined]
            return Response(status_code=499)
        events = _events(stream, first, ident, created, parsed, chat)
        return _EventStream(events, stream)
    answer = await _unless_gone(request, _whole(runtime, parsed.completion))
    if answer is None:
        return Response(status_code=499)
    return JSONResponse(
        _whole_body(answer, ident, created, parsed.model, chat),
        headers={"X-Fazai-Backend": answer.backend},
    )


def _usage(answer: Answer) -> dict[str, Any]:
    usage = answer.usage
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }


def _finish(answer: Answer) -> str:
    return "length" if answer.finish_reason == "length" else "stop"


def _whole_body(answer: Answer, ident: str, created: int, model: str, chat: bool) -> dict[str, Any]:
    if chat:
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": answer.text},
            "finish_reason": _finish(answer),
            "logprobs": None,
        }
    else:
        choice = {
            "index": 0,
            "text": answer.text,
            "finish_reason": _finish(answer),
            "logprobs": None,
        }
    return {
        "id": ident,
        "object": "chat.completion" if chat else "text_completion",
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": _usage(answer),
        "system_fingerprint": answer.backend,
        "fazai": {
            "backend": answer.backend,
            "model": answer.model,
            "fallbacks": list(answer.fallbacks),
            "ttft_s": round(answer.timings.ttft_s, 4),
            "total_s": round(answer.timings.total_s, 4),
        },
    }


def _chunk(
    ident: str, created: int, model: str, chat: bool, text: str | None, finish: str | None
) -> dict[str, Any]:
    if chat:
        delta: dict[str, Any] = {} if text is None else {"role": "assistant", "content": text}
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
    else:
        choice = {"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}
    return {
        "id": ident,
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": created,
        "model": model,
        "choices": [choice],
    }


def _sse(value: Mapping[str, Any] | str) -> bytes:
    data = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


async def _events(
    stream: AsyncIterator[Chunk | Answer],
    first: Chunk | Answer,
    ident: str,
    created: int,
    parsed: requests.Parsed,
    chat: bool,
) -> AsyncIterator[bytes]:
    model = parsed.model
    item: Chunk | Answer | None = first
    sent = False
    try:
        while item is not None:
            if isinstance(item, Chunk) and item.restart and sent:
                # The chain started the answer again on another backend: what this client
                # got cannot be taken back, so the response fails rather than splice two.
                # The gateway's own words (no backend's text): the client must retry.
                log.warning("%s: the stream broke after tokens were sent", item.backend)
                yield _sse(
                    errors.body(
                        "the stream broke on a backend after tokens were sent; send it again",
                        "server_error",
                        "unavailable",
                    )
                )
                return
            if isinstance(item, Chunk):
                sent = sent or bool(item.text)
                yield _sse(_chunk(ident, created, model, chat, item.text, None))
            else:
                item = _finished(item)
                last = _chunk(ident, created, model, chat, None, _finish(item))
                last["system_fingerprint"] = item.backend
                yield _sse(last)
                if parsed.include_usage:
                    yield _sse(
                        {
                            **_chunk(ident, created, model, chat, None, None),
                            "choices": [],
                            "usage": _usage(item),
                        }
                    )
                yield _sse("[DONE]")
                return
            try:
                item = await anext(stream)
            except StopAsyncIteration:
                item = None
            except AnswerTruncated as exc:
                item = _truncated(exc)
    except ModelError as exc:
        # The 200 is sent: the failure goes as the stream's last event (OpenAI's clients
        # raise it), then the stream ends without [DONE].
        yield _sse(errors.stream_error(exc))
    except Exception as exc:
        # A bug below (not a ModelError): logged here, where its traceback still is
        # (the response's task swallows what its sender raises), and told the client
        # as a server error rather than a stream that just stops.
        log.error("%s: the stream failed", parsed.model, exc_info=exc)
        yield _sse(errors.body("internal error", "server_error", "server_error"))


class _EventStream(StreamingResponse):
    """Server-sent events that stop the generation when the client goes away: the
    sender is cancelled as soon as the connection's disconnect arrives, and the
    runtime's stream is closed in every case (which aborts it on the worker)."""

    def __init__(self, events: AsyncIterator[bytes], source: AsyncIterator[Any]) -> None:
        super().__init__(
            events,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._events = events
        self._source = source

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sender = asyncio.ensure_future(self.stream_response(send))
        watcher = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait({sender, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sender, watcher):
                task.cancel()
            for task in (sender, watcher):
                try:
                    await task
                except (asyncio.CancelledError, OSError):
                    pass  # cancelled here, or the client's connection went
                except Exception as exc:  # a bug: never swallowed unseen
                    log.error("the event stream failed", exc_info=exc)
            await self._events.aclose()  # type: ignore[attr-defined]
            await self._source.aclose()  # type: ignore[attr-defined]
