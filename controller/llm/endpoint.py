"""A backend over an OpenAI-compatible API (Ollama, vLLM, llama.cpp's servers, a hosted
one), with httpx.

A chat request (``messages``) goes to ``/chat/completions``, a raw ``prompt`` to
``/completions``, both streamed as server-sent events and parsed as the bytes come (a line
longer than :data:`MAX_LINE` is refused: no unbounded buffer). A schema is asked for with
``response_format`` and the final text is validated against it with jsonschema whatever
the endpoint claims: an answer that does not match raises
:class:`~controller.llm.errors.SchemaUnsupported`, it is never passed on as valid.

Timeouts: ``connectTimeout`` for the connection, ``tokenTimeout`` for every read (so for
the first token and each gap between two), and the request's budget deadline over all.
Failures map into the ModelError tree, chained ``from exc``: 429 -> BackendBusy (with
``Retry-After`` as ``delay``), other 4xx -> BackendRefused, 5xx, timeouts and broken
streams -> BackendUnavailable, the deadline -> GenerationAborted. Retries happen here only
before the response began (a refused connection, 429, 503) and at most ``maxRetries``
times; once a byte of an answer arrived, a failure goes to the chain, which starts over
elsewhere. The API key is read from its reference at each request and sent in the
``Authorization`` header only: never in a repr, a message or a log line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import httpx
import jsonschema

from controller import secrets
from controller.errors import SecretError, retry_after
from controller.llm.completion import (
    Answer,
    Chunk,
    Completion,
    FinishReason,
    Timings,
    Usage,
)
from controller.llm.errors import (
    BackendBusy,
    BackendRefused,
    BackendUnavailable,
    GenerationAborted,
    ModelError,
    SchemaUnsupported,
)
from controller.llm.settings import EndpointSettings

log = logging.getLogger("fazai.llm")

MAX_LINE = 1024 * 1024  # bytes of one SSE line
MAX_BODY = 64 * 1024 * 1024  # bytes of a non-streamed answer (embeddings)
MAX_RETRY_WAIT = 2.0  # longer Retry-After: the chain moves on rather than wait here
DEFAULT_TOP_K = 40  # llama.cpp's own default: not sent, since OpenAI's API refuses top_k
_REQUEST_FAULTS = (400, 413, 422)  # the request's content was refused, not the backend
_CAPACITY_CODES = ("context_length_exceeded",)  # ... unless it is this model's context
MAX_ERROR_BODY = 4096  # bytes of an error answer read, for its code


class EndpointBackend:
    """One endpoint of ``fazai.yaml``'s ``models.backends``, by its ``name``."""

    def __init__(
        self,
        name: str,
        settings: EndpointSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.settings = settings
        self.model = settings.model
        self._clock = clock
        timeout = httpx.Timeout(
            connect=settings.connect_timeout,
            read=settings.token_timeout,
            write=settings.token_timeout,
            pool=settings.connect_timeout,
        )
        self._client = httpx.AsyncClient(
            base_url=settings.url + "/",
            timeout=timeout,
            transport=transport,
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=4),
            follow_redirects=False,  # a redirect could carry the key elsewhere
        )

    def __repr__(self) -> str:
        return (
            f"EndpointBackend(name={self.name!r}, url={self.settings.url!r}, model={self.model!r})"
        )

    async def close(self) -> None:
        await self._client.aclose()

    # -- completions ---------------------------------------------------------------

    async def stream(self, request: Completion) -> AsyncIterator[Chunk | Answer]:
        start = self._clock()
        deadline = start + request.budget.seconds if request.budget.seconds is not None else None
        if request.schema is not None:
            _check_schema(self.name, request.schema)
        path, body = self._body(request)
        response = await self._open(path, body, deadline)
        pieces: list[str] = []
        finish: str | None = None
        usage: Mapping[str, Any] | None = None
        model = self.model
        ttft = 0.0
        try:
            async for event in self._events(response, deadline):
                model = str(event.get("model") or model)
                if isinstance(event.get("usage"), Mapping):
                    usage = event["usage"]
                for choice in event.get("choices") or ():
                    text = _piece(choice)
                    if text:
                        if not pieces:
                            ttft = self._clock() - start
                        yield Chunk(text, len(pieces), self.name)
                        pieces.append(text)
                    if choice.get("finish_reason"):
                        finish = str(choice["finish_reason"])
        finally:
            await response.aclose()
        if finish is None:
            raise BackendUnavailable(self.name, "the stream ended without a finish reason")
        text = "".join(pieces)
        reason: FinishReason = "length" if finish == "length" else "stop"
        if reason == "stop" and request.schema is not None:
            _check_answer(self.name, text, request.schema)
        yield Answer(
            text=text,
            finish_reason=reason,
            backend=self.name,
            model=model,
            usage=_usage(usage, len(pieces)),
            timings=Timings(queued_s=0.0, ttft_s=ttft, total_s=self._clock() - start),
        )

    def _body(self, request: Completion) -> tuple[str, dict[str, Any]]:
        sampling = request.sampling
        body: dict[str, Any] = {
            "model": self.model,
            "stream": True,
            "max_tokens": request.budget.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
        }
        if sampling.top_k != DEFAULT_TOP_K:
            body["top_k"] = sampling.top_k
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if request.schema is not None:
            if self.settings.response_format == "json_object":
                body["response_format"] = {"type": "json_object", "schema": dict(request.schema)}
            else:
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "answer",
                        "schema": dict(request.schema),
                        "strict": True,
                    },
                }
        if request.messages:
            body["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
            body["stream_options"] = {"include_usage": True}
            return "chat/completions", body
        body["prompt"] = request.prompt
        return "completions", body

    async def _open(
        self,
        path: str,
        body: Mapping[str, Any],
        deadline: float | None,
        accept: str = "text/event-stream",
    ) -> httpx.Response:
        """The response, status 200, its body not read yet; retried where nothing of an
        answer can have been made (the connection refused, 429, 503)."""
        attempt = 0
        while True:
            headers = {"Accept": accept, **self._auth()}
            try:
                sent = self._client.build_request("POST", path, json=body, headers=headers)
                response: httpx.Response = await self._bounded(
                    self._client.send(sent, stream=True), deadline
                )
            except httpx.ConnectError as exc:
                error: ModelError = BackendUnavailable(self.name, "cannot connect")
                if attempt < self.settings.max_retries and _fits(deadline, 0.1, self._clock()):
                    attempt += 1
                    await asyncio.sleep(0.05 * attempt)
                    continue
                raise error from exc
            except httpx.HTTPError as exc:
                raise _transport_error(self.name, exc) from exc
            if response.status_code == 200:
                return response
            try:  # the first KiBs only: for the error's code, never quoted whole
                head, _ = await self._bounded(_read(response, MAX_ERROR_BODY), deadline)
            except httpx.HTTPError:
                head = b""
            finally:
                await response.aclose()
            error = _status_error(self.name, response, head)
            delay = error.delay or 0.0
            retryable = response.status_code in (429, 503)
            if (
                retryable
                and attempt < self.settings.max_retries
                and delay <= MAX_RETRY_WAIT
                and _fits(deadline, delay, self._clock())
            ):
                attempt += 1
                await asyncio.sleep(delay)
                continue
            raise error

    async def _events(
        self, response: httpx.Response, deadline: float | None
    ) -> AsyncIterator[Mapping[str, Any]]:
        """The JSON objects of the ``data:`` lines, until ``[DONE]`` or the end."""
        buffer = b""
        chunks = response.aiter_raw()
        while True:
            try:
                data = await self._bounded(anext(chunks, b""), deadline)
            except httpx.HTTPError as exc:
                raise _transport_error(self.name, exc) from exc
            if not data:
                return
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                line = line.rstrip(b"\r")
                if not line.startswith(b"data:"):
                    continue  # comments (keep-alives), event names, blank separators
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    return
                try:
                    event = json.loads(payload)
                except ValueError as exc:
                    raise BackendUnavailable(
                        self.name, "sent a stream event that is not JSON"
                    ) from exc
                if isinstance(event, Mapping):
                    if "error" in event:
                        raise BackendUnavailable(self.name, "reported an error mid-stream")
                    yield event
            if len(buffer) > MAX_LINE:
                raise BackendUnavailable(self.name, f"sent a stream line over {MAX_LINE} bytes")

    # -- embeddings ----------------------------------------------------------------

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        body = {"model": self.model, "input": list(texts)}
        response = await self._open("embeddings", body, None, accept="application/json")
        try:
            content, whole = await _read(response, MAX_BODY)
        except httpx.HTTPError as exc:
            raise _transport_error(self.name, exc) from exc
        finally:
            await response.aclose()
        if not whole:
            raise BackendUnavailable(self.name, f"sent an answer over {MAX_BODY} bytes")
        try:
            items = sorted(json.loads(content)["data"], key=lambda d: d["index"])
            vectors = [[float(x) for x in item["embedding"]] for item in items]
        except (ValueError, KeyError, TypeError) as exc:
            raise BackendUnavailable(self.name, "sent embeddings in an unknown shape") from exc
        if len(vectors) != len(texts):
            raise BackendUnavailable(
                self.name, f"sent {len(vectors)} vectors for {len(texts)} texts"
            )
        return vectors

    async def _bounded(self, awaitable: Any, deadline: float | None) -> Any:
        """``await awaitable``, aborted at the budget's deadline."""
        if deadline is None:
            return await awaitable
        try:
            return await asyncio.wait_for(awaitable, max(deadline - self._clock(), 0.0))
        except TimeoutError:
            raise GenerationAborted(self.name, "the budget's deadline passed") from None

    def _auth(self) -> dict[str, str]:
        ref = self.settings.api_key
        if ref is None:
            return {}
        try:
            key = secrets.resolve(ref.as_mapping(), self.name, "apiKeyRef")
        except SecretError as exc:
            raise BackendRefused(self.name, exc.message, request_fault=False) from exc
        return {"Authorization": f"Bearer {key.reveal()}"}


def _piece(choice: Mapping[str, Any]) -> str:
    delta = choice.get("delta")
    if isinstance(delta, Mapping):
        content = delta.get("content")
        return content if isinstance(content, str) else ""
    text = choice.get("text")
    return text if isinstance(text, str) else ""


def _usage(usage: Mapping[str, Any] | None, pieces: int) -> Usage:
    """The endpoint's counts; without them (no ``include_usage``), the pieces streamed
    stand in for the completion's tokens (one per piece, as llama.cpp and vLLM send)."""
    if usage is None:
        return Usage(completion_tokens=pieces)

    def number(value: Any) -> int:
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    details = usage.get("prompt_tokens_details")
    cached = number(details.get("cached_tokens")) if isinstance(details, Mapping) else 0
    return Usage(number(usage.get("prompt_tokens")), number(usage.get("completion_tokens")), cached)


def _check_schema(backend: str, schema: Mapping[str, Any]) -> None:
    try:
        jsonschema.validators.validator_for(schema).check_schema(dict(schema))
    except jsonschema.SchemaError as exc:
        raise BackendRefused(
            backend, f"the schema is not a valid JSON Schema: {exc.message}"
        ) from exc


def _check_answer(backend: str, text: str, schema: Mapping[str, Any]) -> None:
    """The endpoint said it kept to the schema: check. Never quote the text (it may
    repeat the prompt)."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise SchemaUnsupported(
            backend, "answered text that is not JSON despite the schema"
        ) from exc
    error = jsonschema.exceptions.best_match(
        jsonschema.validators.validator_for(schema)(schema).iter_errors(value)
    )
    if error is not None:
        where = "/".join(map(str, error.absolute_path)) or "(root)"
        raise SchemaUnsupported(
            backend, f"answered JSON that breaks the schema at {where} ({error.validator})"
        )


def _fits(deadline: float | None, wait: float, now: float) -> bool:
    return deadline is None or now + wait < deadline


def _transport_error(backend: str, exc: httpx.HTTPError) -> ModelError:
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return BackendUnavailable(backend, "connection timed out")
    if isinstance(exc, httpx.TimeoutException):
        return BackendUnavailable(backend, "no answer within tokenTimeout")
    return BackendUnavailable(backend, f"connection failed ({type(exc).__name__})")


def _status_error(backend: str, response: httpx.Response, head: bytes) -> ModelError:
    """The error an HTTP status means. The body is not quoted: a server may echo the
    prompt in it; only its OpenAI error ``code``, when it is a short word. A prompt too
    long for this model's context is this backend's limit, not the request's fault: the
    chain tries the next (which may have a larger context)."""
    status = response.status_code
    code = _error_code(head)
    words = f"answered HTTP {status}" + (f" ({code})" if code else "")
    delay = retry_after(response.headers.get("Retry-After"))
    if status == 429:
        return BackendBusy(backend, words, delay=delay)
    if 400 <= status < 500 and status != 408:
        fault = status in _REQUEST_FAULTS and code not in _CAPACITY_CODES
        return BackendRefused(backend, words, request_fault=fault)
    error = BackendUnavailable(backend, words)
    error.delay = delay
    return error


async def _read(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """Up to ``limit`` bytes of the body, and whether that was all of it."""
    data = b""
    async for part in response.aiter_raw():
        data += part
        if len(data) > limit:
            return data[:limit], False
    return data, True


def _error_code(head: bytes) -> str:
    try:
        error = json.loads(head).get("error") if head else None
    except (ValueError, AttributeError):
        return ""
    code = error.get("code") if isinstance(error, Mapping) else None
    if isinstance(code, str) and len(code) <= 40 and code.replace("_", "").isalnum():
        return code
    return ""
