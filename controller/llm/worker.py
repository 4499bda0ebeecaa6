"""The resident worker as a :class:`~controller.llm.backend.Backend`: completions and
embeddings over its Unix socket (:mod:`fazai_native.protocol`).

Frames become values here: ``token`` a :class:`Chunk`, ``done`` the :class:`Answer`
(usage, timings, this backend's name, the model), ``error`` the ModelError its code
stands for (:func:`error_for`). ``finish_reason: length`` comes back as an Answer that
says so: the runtime, which knows the budget, raises AnswerTruncated. The worker stopping
at the budget's deadline (``abort_reason: deadline``, or an ``aborted`` error once the
deadline has passed: no one else aborts our requests) is DeadlineExceeded, ``answered``:
the worker is up, so the circuit breaker counts nothing, and an aborted answer is never
passed on as one that finished. Giving up on a
stream (``aclose()``, a cancelled task, a frame that does not come in time) sends
``abort`` for that request, so the worker stops generating for nobody.

Where the connection comes from is a :class:`Link`: the supervisor's (it starts and
restarts the worker, :mod:`controller.llm.supervisor`) or :class:`SocketLink`, a worker
someone else runs (``fazai model worker``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from controller.llm.completion import Answer, Chunk, Completion, Role, Timings, Usage
from controller.llm.errors import (
    BackendBusy,
    BackendRefused,
    BackendUnavailable,
    DeadlineExceeded,
    GenerationAborted,
    ModelError,
    SchemaUnsupported,
)
from controller.llm.supervisor import Supervisor, WorkerOptions
from controller.llm.wire import Connection, Pending

if TYPE_CHECKING:
    from controller.llm.settings import BackendSettings, ModelsSettings

DEFAULT_FRAME_TIMEOUT = 120.0  # seconds between two frames of one request (queue + prompt)
DEFAULT_CONNECT_TIMEOUT = 5.0


class Link(Protocol):
    """Where a backend gets its connection to the worker."""

    async def connection(self) -> Connection:
        """The live connection; BackendUnavailable when there is none (and none comes
        soon enough: a worker restarting)."""
        ...

    async def close(self) -> None: ...


class SocketLink:
    """A worker that runs on its own at ``path``: one connection, opened on first use
    and again after it failed."""

    def __init__(self, path: str, *, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> None:
        self.path = path
        self._timeout = connect_timeout
        self._conn: Connection | None = None
        self._lock = asyncio.Lock()

    async def connection(self) -> Connection:
        async with self._lock:
            if self._conn is None or self._conn.failed:
                self._conn = await Connection.open(self.path, timeout=self._timeout)
            return self._conn

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None


def error_for(backend: str, frame: Mapping[str, Any]) -> ModelError:
    """The ModelError an ``error`` frame's code stands for."""
    code = str(frame.get("code", "internal"))
    message = str(frame.get("message", "")) or code
    text = f"{message} ({code})"
    if code == "busy":
        delay = frame.get("retry_after")
        seconds = float(delay) if isinstance(delay, int | float) and delay >= 0 else None
        return BackendBusy(backend, text, delay=seconds)
    if code == "schema_unsupported":
        return SchemaUnsupported(backend, text)
    if code == "aborted":
        return GenerationAborted(backend, text)
    if code in ("bad_request", "context_overflow"):
        return BackendRefused(backend, text)
    # memory, internal, load_failed, unknown_model (this backend's own configuration):
    # the next backend of the chain may well answer.
    return BackendUnavailable(backend, text)


def generate_frame(model: str, request: Completion) -> dict[str, Any]:
    """The ``generate`` request for ``request`` on the worker's model ``model``."""
    sampling = request.sampling
    params: dict[str, Any] = {
        "max_tokens": request.budget.max_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k,
        "stop": list(sampling.stop),
    }
    if sampling.seed is not None:
        params["seed"] = sampling.seed
    frame: dict[str, Any] = {"op": "generate", "model": model, "params": params}
    if request.prompt is not None:
        frame["prompt"] = request.prompt
    else:
        frame["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
    if request.session is not None:
        frame["session"] = request.session
    if request.schema is not None:
        frame["schema"] = dict(request.schema)
    if request.budget.seconds is not None:
        frame["deadline"] = request.budget.seconds
    return frame


class WorkerBackend:
    """The worker's model ``model`` (its name in the worker) as the backend ``name``."""

    def __init__(
        self,
        name: str,
        model: str,
        link: Link,
        *,
        frame_timeout: float = DEFAULT_FRAME_TIMEOUT,
        owns_link: bool = False,
    ) -> None:
        self.name = name
        self.model = model
        self._link = link
        self._frame_timeout = frame_timeout
        self._owns_link = owns_link

    def __repr__(self) -> str:
        return f"WorkerBackend({self.name!r}, model={self.model!r})"

    @property
    def running(self) -> bool:
        """False while its worker is not started (a supervised one starts on first use):
        what is only looked at, such as the metrics, does not start it."""
        running = getattr(self._link, "running", True)
        return bool(running)

    async def stream(self, request: Completion) -> AsyncIterator[Chunk | Answer]:
        started = time.monotonic()
        conn = await self._connection()
        pending = await self._request(conn, generate_frame(self.model, request))
        first: float | None = None
        finished = False
        try:
            while True:
                frame = await self._next(pending, request)
                event = frame.get("event")
                if event == "token":
                    if first is None:
                        first = time.monotonic()
                    yield Chunk(str(frame.get("text", "")), int(frame.get("index", 0)), self.name)
                elif event == "done":
                    finished = True
                    reason = frame.get("abort_reason")
                    if frame.get("finish_reason") == "abort" and reason in (
                        "slow_reader",
                        "closed",
                    ):
                        # The worker gave up on this connection, not the caller on it.
                        raise BackendUnavailable(
                            self.name, f"the worker aborted it ({frame['abort_reason']})"
                        )
                    if frame.get("finish_reason") == "abort" and reason == "deadline":
                        raise _deadline(self.name, request)
                    yield self._answer(frame, started, first)
                    return
                elif event == "error":
                    finished = True
                    error = error_for(self.name, frame)
                    if isinstance(error, GenerationAborted) and _past(request, started):
                        # Only we can abort our requests, and we did not: its deadline.
                        raise _deadline(self.name, request) from error
                    raise error
        finally:
            if not finished:
                # aclose(), a cancelled task, a timeout: the worker stops for nobody.
                await asyncio.shield(conn.abort(pending))
            conn.forget(pending)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        result = await self.call({"op": "embed", "model": self.model, "texts": list(texts)})
        vectors = result.get("vectors", result.get("embeddings"))
        if not isinstance(vectors, list) or len(vectors) != len(texts):
            raise BackendUnavailable(self.name, "the worker's embed answer has no vectors")
        return [[float(x) for x in v] for v in vectors]

    async def stats(self) -> dict[str, Any]:
        """The worker's stats, with ``queue`` as the number of requests waiting (what
        the runtime's metrics read; the worker's own breakdown stays in ``queue_detail``)."""
        found = await self.call({"op": "stats"})
        queue = found.get("queue")
        if isinstance(queue, Mapping):
            found["queue_detail"] = dict(queue)
            found["queue"] = queue.get("depth", 0)
        return found

    async def call(self, frame: Mapping[str, Any]) -> dict[str, Any]:
        """A request answered by one ``result`` frame (embed, load, unload, drop,
        stats): its ``result`` mapping."""
        conn = await self._connection()
        pending = await self._request(conn, frame)
        try:
            reply = await self._next(pending, None)
        except BaseException:
            await asyncio.shield(conn.abort(pending))
            raise
        if reply.get("event") == "error":
            raise error_for(self.name, reply)
        result = reply.get("result")
        return dict(result) if isinstance(result, Mapping) else {}

    async def close(self) -> None:
        if self._owns_link:
            await self._link.close()

    async def _connection(self) -> Connection:
        try:
            return await self._link.connection()
        except BackendUnavailable as exc:
            raise BackendUnavailable(self.name, _reason(exc)) from exc

    async def _request(self, conn: Connection, frame: Mapping[str, Any]) -> Pending:
        try:
            return await conn.request(frame)
        except BackendUnavailable as exc:
            raise BackendUnavailable(self.name, _reason(exc)) from exc
        except BackendRefused as exc:
            raise BackendRefused(self.name, _reason(exc)) from exc

    async def _next(self, pending: Pending, request: Completion | None) -> dict[str, Any]:
        timeout = self._frame_timeout
        if request is not None and request.budget.seconds is not None:
            # The worker aborts at the deadline itself; wait a little longer for it to say so.
            elapsed = time.monotonic() - pending.started
            timeout = min(timeout, max(0.0, request.budget.seconds - elapsed) + 5.0)
        try:
            return await pending.next(timeout)
        except TimeoutError as exc:
            raise BackendUnavailable(
                self.name, f"no frame from the worker within {timeout:g} s"
            ) from exc
        except BackendUnavailable as exc:
            # Raised again under this backend's name, with the connection's reason.
            raise BackendUnavailable(self.name, _reason(exc)) from exc

    def _answer(self, frame: Mapping[str, Any], started: float, first: float | None) -> Answer:
        usage = frame.get("usage") if isinstance(frame.get("usage"), Mapping) else {}
        timings = frame.get("timings") if isinstance(frame.get("timings"), Mapping) else {}
        assert isinstance(usage, Mapping) and isinstance(timings, Mapping)
        now = time.monotonic()
        reason = frame.get("finish_reason")
        return Answer(
            text=str(frame.get("text", "")),
            finish_reason=reason if reason in ("stop", "length", "abort") else "stop",
            backend=self.name,
            model=str(frame.get("model") or self.model),
            usage=Usage(
                prompt_tokens=_int(usage.get("prompt_tokens")),
                completion_tokens=_int(usage.get("completion_tokens")),
                cached_tokens=_int(usage.get("cached_tokens")),
            ),
            timings=Timings(
                queued_s=_float(timings.get("queued_s")),
                ttft_s=(first if first is not None else now) - started,
                total_s=now - started,
            ),
        )


def _deadline(backend: str, request: Completion) -> DeadlineExceeded:
    seconds = request.budget.seconds
    within = f" ({seconds:g} s)" if seconds is not None else ""
    return DeadlineExceeded(
        backend, f"the worker stopped at the budget's deadline{within}", answered=True
    )


def _past(request: Completion, started: float) -> bool:
    """Whether ``request``'s deadline has passed (the worker's clock started after
    ``started``: when it fires, ours has passed too)."""
    seconds = request.budget.seconds
    return seconds is not None and time.monotonic() - started >= seconds


def _reason(exc: ModelError) -> str:
    text = str(exc)
    prefix = f"{exc.backend}: "
    return text[len(prefix) :] if exc.backend and text.startswith(prefix) else text


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _float(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


@contextlib.asynccontextmanager
async def connected(path: str, name: str = "worker") -> AsyncIterator[WorkerBackend]:
    """A backend over a worker someone else runs at ``path`` (the CLI's ``model stats``),
    closed on exit."""
    backend = WorkerBackend(name, "", SocketLink(path), owns_link=True)
    try:
        yield backend
    finally:
        await backend.close()


# -- the local backends of the runtime: one supervised worker for all of them -----------


class _SharedLink:
    """The supervisor of one socket path, shared by every local backend that names it;
    the last backend closed stops the worker."""

    _by_socket: ClassVar[dict[str, _SharedLink]] = {}

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.users = 0

    @classmethod
    def get(cls, options: WorkerOptions) -> _SharedLink:
        key = str(options.socket)
        link = cls._by_socket.get(key)
        if link is None or link.users == 0:
            link = cls._by_socket[key] = cls(Supervisor(options))
        link.users += 1
        return link

    @property
    def running(self) -> bool:
        return self.supervisor.running

    async def connection(self) -> Connection:
        return await self.supervisor.connection()

    async def close(self) -> None:
        self.users -= 1
        if self.users <= 0:
            key = str(self.supervisor.options.socket)
            if self._by_socket.get(key) is self:
                del self._by_socket[key]
            await self.supervisor.close()


def worker_options(models: ModelsSettings) -> WorkerOptions:
    """How to start the worker for ``models``: its socket, queue and JSON config."""
    return WorkerOptions(
        socket=models.worker.socket_path,
        config=worker_config(models),
        queue=models.worker.queue,
    )


def worker_config(models: ModelsSettings) -> dict[str, Any]:
    """The worker's ``--config``: every local model as a ModelSpec (fazai_native.types),
    the first local brain pinned (it stays loaded), and the memory budget."""
    specs: list[dict[str, Any]] = []
    pinned = False
    for backend in models.backends:
        local = backend.local
        if local is None:
            continue
        path = f"embedded:{local.embedded}" if local.embedded else str(local.path)
        pin = backend.role is Role.BRAIN and not pinned
        pinned = pinned or pin
        specs.append(
            {
                "name": backend.name,
                "path": path,
                "kind": "embedder" if backend.role is Role.EMBEDDER else "gguf",
                "role": backend.role.value,
                "n_ctx": backend.context_size,
                "n_threads": backend.threads,
                "slots": backend.slots,
                "pinned": pin,
            }
        )
    return {"models": specs, "memory_budget": models.memory_budget}


def local_backend(models: ModelsSettings, backend: BackendSettings) -> WorkerBackend:
    """The backend the runtime uses for the local model ``backend``: over the one worker
    all local backends of ``models`` share, started on first use and supervised."""
    if backend.local is None:
        raise ValueError(f"{backend.name} is not a local backend")
    link = _SharedLink.get(worker_options(models))
    return WorkerBackend(backend.name, backend.name, link, owns_link=True)
