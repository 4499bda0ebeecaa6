"""A backend over an OpenAI-compatible API (Ollama, vLLM, llama.cpp's servers, a hosted
one), with httpx.

A chat request (``messages``) goes to ``/chat/completions``, a raw ``prompt`` to
``/completions``, both streamed as server-sent events and parsed as the bytes come (a line
longer than :data:`MAX_LINE` is refused: no unbounded buffer). A schema is asked for with
``response_format`` and the final text is validated against it with jsonschema whatever
the endpoint claims: an answer that does not match raises
:class:`~controller.llm.errors.SchemaUnsupported`, it is never passed on as valid.

Timeouts: ``connectTimeout`` for the connection, ``tokenTimeout`` for the next piece of
the answer (the first, and each gap between two: reset only when text arrives, so SSE
keep-alive comments or empty events cannot hold a request open), and the request's budget
deadline over all. Embeddings, which have no budget, must be answered whole within
``connectTimeout + tokenTimeout``. Failures map into the ModelError tree, chained ``from
exc``: 429 -> BackendBusy (with ``Retry-After`` as ``delay``), 3xx (a redirect, not
followed) and 4xx -> BackendRefused, 5xx, timeouts and broken or malformed streams ->
BackendUnavailable, the deadline -> DeadlineExceeded.

The answer is checked as it comes: only ``finish_reason`` ``stop`` is a finished answer
and ``length`` a truncated one; any other (``content_filter``, ``error``, ``abort``...)
raises. A server streaming more pieces than ``max_tokens`` (it ignores the limit, or a
proxy dropped it) is cut here, and the answer ends as ``length``. Usage counts below 0
read as 0; the model name a server reports is kept only when it is a short string.

Retries happen here only before the response began (a refused connection, 429, 503) and
at most ``maxRetries`` times; once a byte of an answer arrived, a failure goes to the
chain, which starts over elsewhere. The API key is read from its reference at each
request and sent in the ``Authorization`` header only: never in a repr, a message or a
log line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
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
    DeadlineExceeded,
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
MAX_MODEL_NAME = 256  # characters of a reported model name kept in the Answer
# The value of a complete ``data:`` line (greedy to the line's end: linear, whatever the
# line holds); comments, event names and blank separators do not match.
_DATA = re.compile(rb"^data:(.*)$", re.MULTILINE)
_DONE = b"[DONE]"


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
            trust_env=False,  # no proxy or netrc from the environment gets the key
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
        lines = _Lines(self.name)
        pieces: list[str] = []
        finish: FinishReason | None = None
        usage: Mapping[str, Any] | None = None
        model = self.model
        ttft = 0.0
        limit = request.budget.max_tokens
        piece_by = self._clock() + self.settings.token_timeout
        done = False
        try:
            chunks = response.aiter_raw()
            while not done:
                data = await self._next(chunks, deadline, piece_by)
                if not data:
                    break
                for payload in lines.feed(data):
                    if payload == _DONE:
                        done = True
                        break
                    event = _event(self.name, payload)
                    reported = event.get("model")
                    if isinstance(reported, str) and 0 < len(reported) <= MAX_MODEL_NAME:
                        model = reported
                    if isinstance(event.get("usage"), Mapping):
                        usage = event["usage"]
                    for choice in _choices(self.name, event):
                        text = _piece(self.name, choice)
                        if text:
                            if len(pieces) >= limit:  # past max_tokens: cut here
                                finish, done = "length", True
                                break
                            if not pieces:
                                ttft = self._clock() - start
                            yield Chunk(text, len(pieces), self.name)
                            pieces.append(text)
                            piece_by = self._clock() + self.settings.token_timeout
                        if choice.get("finish_reason") is not None:
                            finish = _finish(self.name, choice["finish_reason"])
                    if done:
                        break
        finally:
            await response.aclose()
        if finish is None:
            raise BackendUnavailable(self.name, "the stream ended without a finish reason")
        text = "".join(pieces)
        if finish == "stop" and request.schema is not None:
            _check_answer(self.name, text, request.schema)
        yield Answer(
            text=text,
            finish_reason=finish,
            backend=self.name,
            model=model,
            usage=_usage(usage, len(pieces)),
            timings=Timings(queued_s=0.0, ttft_s=ttft, total_s=self._clock() - start),
        )

    async def _next(
        self, chunks: AsyncIterator[bytes], deadline: float | None, piece_by: float
    ) -> bytes:
        """The next bytes of the stream (b"" at its end), before the budget's deadline
        and the next piece's."""
        when = piece_by if deadline is None else min(deadline, piece_by)
        try:
            async with asyncio.timeout_at(self._loop_time(when)):
                data: bytes = await anext(chunks, b"")
                return data
        except TimeoutError:
            if deadline is not None and deadline <= piece_by:
                raise DeadlineExceeded(self.name, "the budget's deadline passed") from None
            raise BackendUnavailable(
                self.name, "no piece of the answer within tokenTimeout"
            ) from None
        except httpx.HTTPError as exc:
            raise _transport_error(self.name, exc) from exc

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

    # -- embeddings ----------------------------------------------------------------

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order. No budget: the whole answer must come within
        ``connectTimeout + tokenTimeout``."""
        body = {"model": self.model, "input": list(texts)}
        settings = self.settings
        deadline = self._clock() + settings.connect_timeout + settings.token_timeout
        try:
            response = await self._open("embeddings", body, deadline, accept="application/json")
            try:
                content, whole = await self._bounded(_read(response, MAX_BODY), deadline)
            except httpx.HTTPError as exc:
                raise _transport_error(self.name, exc) from exc
            finally:
                await response.aclose()
        except DeadlineExceeded:
            raise BackendUnavailable(
                self.name, "no whole answer within connectTimeout + tokenTimeout"
            ) from None
        if not whole:
            raise BackendUnavailable(self.name, f"sent an answer over {MAX_BODY} bytes")
        return _vectors(self.name, content, len(texts))

    async def _bounded(self, awaitable: Any, deadline: float | None) -> Any:
        """``await awaitable``, stopped at the budget's deadline."""
        if deadline is None:
            return await awaitable
        try:
            async with asyncio.timeout_at(self._loop_time(deadline)):
                return await awaitable
        except TimeoutError:
            raise DeadlineExceeded(self.name, "the budget's deadline passed") from None

    def _loop_time(self, when: float) -> float:
        """``when`` (on this backend's clock) on the event loop's clock."""
        return asyncio.get_running_loop().time() + (when - self._clock())

    def _auth(self) -> dict[str, str]:
        ref = self.settings.api_key
        if ref is None:
            return {}
        try:
            key = secrets.resolve(ref.as_mapping(), self.name, "apiKeyRef")
        except SecretError as exc:
            raise BackendRefused(self.name, exc.message, request_fault=False) from exc
        value = key.reveal()
        # Checked here, never left to the HTTP library: its encoding error would carry
        # the whole header value, key included, into the error's cause and the logs.
        if not value or not all(0x20 < ord(c) < 0x7F for c in value):
            raise BackendRefused(
                self.name,
                "apiKeyRef: the key is empty or holds characters an HTTP header cannot "
                "carry (non-ASCII, spaces, control characters)",
                request_fault=False,
            ) from None
        return {"Authorization": f"Bearer {value}"}


class _Lines:
    """The values of the ``data:`` lines of an SSE stream, fed as the bytes come. Each
    read is scanned once (a regex over its complete lines); only the unfinished last
    line is kept, at most :data:`MAX_LINE` bytes."""

    def __init__(self, backend: str) -> None:
        self._backend = backend
        self._rest = b""

    def feed(self, data: bytes) -> list[bytes]:
        end = data.rfind(b"\n")
        if end < 0:
            self._rest += data  # copies: bounded by MAX_LINE, then refused
            block = b""
        else:
            block = self._rest + data[: end + 1]
            self._rest = data[end + 1 :]
        if len(self._rest) > MAX_LINE:
            raise BackendUnavailable(self._backend, f"sent a stream line over {MAX_LINE} bytes")
        return [value.strip() for value in _DATA.findall(block)]


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _event(backend: str, payload: bytes) -> Mapping[str, Any]:
    try:
        event = json.loads(payload, parse_constant=_constant)
    except ValueError as exc:
        raise BackendUnavailable(backend, "sent a stream event that is not JSON") from exc
    if not isinstance(event, Mapping):
        raise BackendUnavailable(backend, "sent a stream event that is not a JSON object")
    if event.get("error") is not None:
        raise BackendUnavailable(backend, "reported an error mid-stream")
    return event


def _choices(backend: str, event: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    choices = event.get("choices")
    if choices is None:
        return []
    if not isinstance(choices, list) or not all(isinstance(c, Mapping) for c in choices):
        raise BackendUnavailable(backend, "sent choices in an unknown shape")
    return choices


def _piece(backend: str, choice: Mapping[str, Any]) -> str:
    delta = choice.get("delta")
    if delta is not None:
        if not isinstance(delta, Mapping):
            raise BackendUnavailable(backend, "sent a delta in an unknown shape")
        text = delta.get("content")
    else:
        text = choice.get("text")
    if text is not None and not isinstance(text, str):
        raise BackendUnavailable(backend, "sent a piece of text that is not a string")
    return text or ""


def _finish(backend: str, value: Any) -> FinishReason:
    """Only ``stop`` ends an answer, ``length`` truncates it; anything else cut it."""
    if value == "stop" or value == "length":
        return "stop" if value == "stop" else "length"
    if value == "content_filter":  # this backend's policy: another may answer
        raise BackendRefused(backend, "ended the answer by its content filter", request_fault=False)
    word = value if isinstance(value, str) and len(value) <= 32 and value.isidentifier() else ""
    shown = f"finish_reason {word}" if word else "an unknown finish_reason"
    raise BackendUnavailable(backend, f"ended the answer with {shown}")


def _vectors(backend: str, content: bytes, count: int) -> list[list[float]]:
    """The embeddings of an answer: ``count`` vectors of finite numbers, one dimension,
    ``index`` 0..count-1 each once; anything else is refused."""
    try:
        data = json.loads(content, parse_constant=_constant).get("data")
    except (ValueError, AttributeError) as exc:
        raise BackendUnavailable(backend, "sent embeddings in an unknown shape") from exc
    if not isinstance(data, list):
        raise BackendUnavailable(backend, "sent embeddings in an unknown shape")
    if len(data) != count:
        raise BackendUnavailable(backend, f"sent {len(data)} vectors for {count} texts")
    vectors: list[list[float] | None] = [None] * count
    for item in data:
        index = item.get("index") if isinstance(item, Mapping) else None
        if not isinstance(index, int) or isinstance(index, bool):
            raise BackendUnavailable(backend, "sent embeddings whose indices are not 0..n-1")
        if not 0 <= index < count or vectors[index] is not None:
            raise BackendUnavailable(backend, "sent embeddings whose indices are not 0..n-1")
        vector = _vector(item.get("embedding"))
        if vector is None:
            raise BackendUnavailable(backend, "sent an embedding that is not finite numbers")
        vectors[index] = vector
    done = [v for v in vectors if v is not None]
    if len({len(v) for v in done}) > 1:
        raise BackendUnavailable(backend, "sent embeddings of different dimensions")
    return done


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _vector(value: Any) -> list[float] | None:
    if not isinstance(value, list) or not value:
        return None
    out = []
    for x in value:
        if isinstance(x, bool) or not isinstance(x, int | float):
            return None
        try:
            number = float(x)
        except OverflowError:
            return None
        if not math.isfinite(number):
            return None
        out.append(number)
    return out


def _usage(usage: Mapping[str, Any] | None, pieces: int) -> Usage:
    """The endpoint's counts; without them (no ``include_usage``), the pieces streamed
    stand in for the completion's tokens (one per piece, as llama.cpp and vLLM send)."""
    if usage is None:
        return Usage(completion_tokens=pieces)

    def number(value: Any) -> int:  # a count: below 0 (or not an integer) reads as 0
        return max(value, 0) if _integer(value) else 0

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
    if 300 <= status < 400:  # not followed (the key could go with it): its configuration
        return BackendRefused(backend, words + ", a redirect", request_fault=False)
    if 400 <= status < 500 and status != 408:
        fault = status in _REQUEST_FAULTS and code not in _CAPACITY_CODES
        return BackendRefused(backend, words, request_fault=fault)
    error = BackendUnavailable(backend, words)
    error.delay = delay
    return error


async def _read(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """Up to ``limit`` bytes of the body, and whether that was all of it (the parts
    joined once at the end: no copy of what came before per part)."""
    parts: list[bytes] = []
    size = 0
    async for part in response.aiter_raw():
        parts.append(part)
        size += len(part)
        if size > limit:
            return b"".join(parts)[:limit], False
    return b"".join(parts), True


def _error_code(head: bytes) -> str:
    try:
        error = json.loads(head).get("error") if head else None
    except (ValueError, AttributeError):
        return ""
    code = error.get("code") if isinstance(error, Mapping) else None
    if isinstance(code, str) and len(code) <= 40 and code.replace("_", "").isalnum():
        return code
    return ""
