"""The worker's facade over the residency and the engines: what the server calls.

Every failure leaves here as a :class:`~fazai_native.errors.WorkerError` whose ``code``
is the protocol's; the engines' own exceptions are mapped ``from`` the original. Each
model runs at most ``spec.slots`` requests at once; the others wait here (the server
bounds how many may wait), abortable while they do."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from fazai_native import catalog, errors
from fazai_native.residency import Loaded, Residency
from fazai_native.types import GenerateRequest, GenerateResult, ModelSpec

Emit = Callable[[str, int], None]
RECENT = 32  # requests per model whose timings the stats keep
SLOT_POLL_S = 0.05  # how often a request waiting for a slot looks at its abort flag


SESSIONS_SHARE = 8  # under a budget, one model's sessions hold at most budget / this


def load_model(spec: ModelSpec, session_bytes: int | None = None) -> Loaded:
    """The real loader: an Engine for a GGUF file (its sessions' KV state bounded by
    ``session_bytes``, the engine's default if None), an Embedder for the embedder."""
    if spec.kind == "embedder":
        from fazai_native import embed

        try:
            return embed.Embedder(spec)
        except embed.EmbedFailed as exc:
            raise errors.LoadFailed(f"model {spec.name!r} could not be loaded: {exc}") from exc
    from fazai_native import engine
    from fazai_native.sessions import SessionStore

    store = None if session_bytes is None else SessionStore(session_bytes)
    try:
        return engine.Engine(spec, sessions=store)
    except engine.LoadFailed as exc:
        raise errors.LoadFailed(f"model {spec.name!r} could not be loaded: {exc}") from exc


def resolve_spec(spec: ModelSpec) -> ModelSpec:
    """``spec`` with an ``embedded:NAME`` path made the file that package ships."""
    if not spec.path.startswith(catalog.PREFIX):
        return spec
    try:
        path = catalog.resolve(spec.path)
        kind = catalog.kind(spec.path)
    except catalog.CatalogError as exc:
        raise errors.LoadFailed(str(exc)) from exc
    if kind != spec.kind:
        raise errors.BadRequest(f"spec.kind: {spec.path} is a {kind} model, not {spec.kind}")
    return dataclasses.replace(spec, path=path)


class Slots:
    """At most ``capacity`` requests of one model at once; the rest wait, abortable. One
    object per model for the worker's life: a re-declaration resizes it in place, so the
    requests already holding or waiting for a place keep counting against the same one.
    Waiters are served in arrival order: a newcomer never takes a place ahead of one that
    was already waiting (the engine's own slots keep that order too)."""

    def __init__(self, capacity: int) -> None:
        self._cond = threading.Condition()
        self.capacity = capacity
        self.taken = 0
        self._waiting: collections.deque[object] = collections.deque()

    def acquire(self, abort: threading.Event) -> None:
        ticket = object()
        with self._cond:
            self._waiting.append(ticket)
            try:
                while self._waiting.index(ticket) >= self.capacity - self.taken:
                    if abort.is_set():
                        raise errors.Aborted("aborted while waiting for the model")
                    self._cond.wait(SLOT_POLL_S)
                self.taken += 1
            finally:
                self._waiting.remove(ticket)
                self._cond.notify_all()  # the next in line may now be within reach

    def release(self) -> None:
        with self._cond:
            self.taken -= 1
            self._cond.notify_all()

    def resize(self, capacity: int) -> None:
        with self._cond:
            self.capacity = capacity
            self._cond.notify_all()


@dataclass(frozen=True)
class Generation:
    result: GenerateResult
    model: str
    waited_s: float  # for a slot (and a load) before the engine began


@dataclass
class _Recent:
    ttft_s: deque[float] = dataclasses.field(default_factory=lambda: deque(maxlen=RECENT))
    tokens_per_s: deque[float] = dataclasses.field(default_factory=lambda: deque(maxlen=RECENT))
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0


def decode_rate(result: GenerateResult) -> float | None:
    """Tokens per second after the first (the first's time is the prompt's)."""
    span = result.total_s - result.ttft_s
    if result.completion_tokens < 2 or span <= 0:
        return None
    return (result.completion_tokens - 1) / span


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


class Runtime:
    """The models a worker serves, under one memory budget."""

    def __init__(
        self,
        specs: Sequence[ModelSpec],
        budget_bytes: int | None = None,
        loader: Callable[[ModelSpec], Loaded] | None = None,
    ) -> None:
        if loader is None:
            # Sessions count against the budget: bounded so that they cannot take it all.
            share = None if budget_bytes is None else budget_bytes // SESSIONS_SHARE
            loader = functools.partial(load_model, session_bytes=share)
        self.residency = Residency(budget_bytes, loader)
        self._lock = threading.Lock()
        self._slots: dict[str, Slots] = {}
        self._recent: dict[str, _Recent] = {}
        self._errors: dict[str, int] = {}
        self.running = 0  # requests an engine or embedder is working on now
        self.started = time.time()
        for spec in specs:
            self.declare(spec)

    def declare(self, spec: ModelSpec) -> None:
        self.residency.declare(spec)
        self._gate(spec.name, spec.slots).resize(spec.slots)

    def _gate(self, name: str, capacity: int) -> Slots:
        """The model's slots, made when first needed (never replaced after)."""
        with self._lock:
            slots = self._slots.get(name)
            if slots is None:
                slots = self._slots[name] = Slots(capacity)
            self._recent.setdefault(name, _Recent())
            return slots

    def start(self) -> None:
        """Load the pinned models."""
        self.residency.start()

    def count_error(self, code: str) -> None:
        with self._lock:
            self._errors[code] = self._errors.get(code, 0) + 1

    # -- requests -------------------------------------------------------------------

    @contextlib.contextmanager
    def _running(self) -> Iterator[None]:
        with self._lock:
            self.running += 1
        try:
            yield
        finally:
            with self._lock:
                self.running -= 1

    def _slot(self, spec: ModelSpec, abort: threading.Event) -> Slots:
        # Made here too: a failed load of the same name may have removed the gate
        # just before another load of it declared the model.
        slot = self._gate(spec.name, spec.slots)
        slot.acquire(abort)
        return slot

    def generate(self, request: GenerateRequest, abort: threading.Event, emit: Emit) -> Generation:
        """Run one generation (blocking). Raises WorkerError."""
        began = time.monotonic()
        spec = self.residency.spec(request.model)
        if spec.kind != "gguf":
            raise errors.BadRequest(f"model: {request.model!r} is an embedder, not a generator")
        from fazai_native import engine, grammar

        slot = self._slot(spec, abort)
        try:
            with self.residency.use(request.model) as model:
                if abort.is_set():
                    raise errors.Aborted("aborted before it began")
                waited = time.monotonic() - began
                try:
                    with self._running():
                        result = cast("engine.Engine", model).generate(
                            request, abort=abort, emit=emit
                        )
                except engine.ContextOverflow as exc:
                    raise errors.ContextOverflow(str(exc)) from exc
                except grammar.SchemaUnsupported as exc:
                    raise errors.SchemaRefused(str(exc)) from exc
                except engine.InvalidOutput as exc:
                    # Not the reason's text: it may quote the output, which may quote
                    # the prompt.
                    raise errors.InvalidOutput(
                        f"the output of {request.model!r} does not match the schema"
                    ) from exc
                except engine.EngineError as exc:
                    raise errors.Internal(f"model {request.model!r} failed: {exc}") from exc
                except ValueError as exc:  # an empty prompt, a template that cannot place it
                    raise errors.BadRequest(f"prompt: {exc}") from exc
        finally:
            slot.release()
        if result.finish_reason == "abort" and result.completion_tokens == 0:
            raise errors.Aborted("aborted before any token")
        self._record(request.model, result)
        return Generation(result, request.model, waited)

    def _record(self, name: str, result: GenerateResult) -> None:
        with self._lock:
            recent = self._recent[name]
            recent.requests += 1
            recent.prompt_tokens += result.prompt_tokens
            recent.completion_tokens += result.completion_tokens
            recent.cached_tokens += result.cached_tokens
            if result.completion_tokens:
                recent.ttft_s.append(result.ttft_s)
            rate = decode_rate(result)
            if rate is not None:
                recent.tokens_per_s.append(rate)

    def embed(self, name: str, texts: Sequence[str], abort: threading.Event) -> list[list[float]]:
        """Embed ``texts`` with embedder ``name`` (blocking)."""
        spec = self.residency.spec(name)
        if spec.kind != "embedder":
            raise errors.BadRequest(f"model: {name!r} is a generator, not an embedder")
        from fazai_native import embed

        slot = self._slot(spec, abort)
        try:
            with self.residency.use(name) as model, self._running():
                try:
                    vectors = cast("embed.Embedder", model).embed(list(texts))
                except embed.EmbedFailed as exc:
                    raise errors.BadRequest(f"texts: {exc}") from exc
        finally:
            slot.release()
        with self._lock:
            self._recent[name].requests += 1
        return [[float(x) for x in v] for v in vectors]

    # -- management ---------------------------------------------------------------

    def load(self, name: str | None = None, spec: ModelSpec | None = None) -> dict[str, Any]:
        if spec is None:
            assert name is not None
            return self.residency.load(name)
        spec = resolve_spec(spec)
        # The gate first: once the residency shows the model, a request must find it.
        with self._lock:
            created = spec.name not in self._slots
        slots = self._gate(spec.name, spec.slots)
        try:
            out = self.residency.load_spec(spec)
        except BaseException:
            if created and spec.name not in self.residency.names():
                with self._lock:  # the load failed and undid the declaration
                    self._slots.pop(spec.name, None)
                    self._recent.pop(spec.name, None)
            raise
        slots.resize(self.residency.spec(spec.name).slots)
        return out

    def unload(self, name: str) -> dict[str, Any]:
        return {"model": name, "unloaded": self.residency.unload(name)}

    def drop(self, session: str) -> dict[str, Any]:
        dropped = False
        for _, model in self.residency.loaded():
            drop = getattr(model, "drop_session", None)
            if callable(drop) and drop(session):
                dropped = True
        return {"session": session, "dropped": dropped}

    def stats(self) -> dict[str, Any]:
        out = self.residency.stats()
        with self._lock:
            totals = {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "cached_tokens": 0}
            for name, recent in self._recent.items():
                model = out["models"].get(name)
                if model is None:
                    continue
                model["requests"] = recent.requests
                model["completion_tokens"] = recent.completion_tokens
                model["recent_tokens_per_s"] = _mean(recent.tokens_per_s)
                model["recent_ttft_s"] = _mean(recent.ttft_s)
                totals["requests"] += recent.requests
                totals["prompt_tokens"] += recent.prompt_tokens
                totals["completion_tokens"] += recent.completion_tokens
                totals["cached_tokens"] += recent.cached_tokens
            out["totals"] = {**totals, "errors": dict(self._errors)}
        out["uptime_s"] = round(time.time() - self.started, 3)
        return out

    def close(self) -> None:
        self.residency.close()
