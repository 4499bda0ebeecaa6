"""The model runtime: what the agent and the gateway call.

:class:`ModelRuntime` holds one :class:`~controller.llm.chain.Chain` per role, built from
``fazai.yaml``'s ``models`` section (or the embedded defaults), each backend with its
circuit breaker. Endpoints are built here (:class:`~controller.llm.endpoint.EndpointBackend`);
local models come from the worker client's factory,
``controller.llm.worker.local_backend(settings, backend_settings)``, imported only when a
local backend is needed, so a runtime of endpoints alone (and its tests) does not need
the worker or llama.cpp installed.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence

from controller.events import EventBus
from controller.llm.backend import Backend
from controller.llm.breaker import Breaker
from controller.llm.chain import Chain, Link
from controller.llm.completion import Answer, Chunk, Completion, Role
from controller.llm.endpoint import EndpointBackend
from controller.llm.errors import AnswerTruncated, BackendUnavailable, GenerationAborted
from controller.llm.metrics import ModelMetrics
from controller.llm.settings import BackendSettings, ModelsSettings

log = logging.getLogger("fazai.llm")


class ModelRuntime:
    """Completions and embeddings by role, through each role's chain of backends.

    ``backends``: the backends by name (every name of ``settings.backends`` must be
    there); None builds them from the settings."""

    def __init__(
        self,
        settings: ModelsSettings,
        backends: Mapping[str, Backend] | None = None,
        *,
        events: EventBus | None = None,
        metrics: ModelMetrics | None = None,
    ) -> None:
        self.settings = settings
        self._metrics = metrics
        built = dict(backends) if backends is not None else _build(settings)
        missing = [b.name for b in settings.backends if b.name not in built]
        if missing:
            raise ValueError(f"no backend given for {', '.join(missing)}")
        self._backends = built
        self._chains = {
            role: Chain(
                role,
                [
                    Link(
                        built[b.name],
                        Breaker(settings.circuit.failures, settings.circuit.reset),
                        b.model,
                    )
                    for b in settings.chain(role)
                ],
                events=events,
                metrics=metrics,
            )
            for role in Role
        }

    def chain(self, role: Role | str) -> tuple[str, ...]:
        """The names of ``role``'s backends, in the order they are tried."""
        return self._chains[Role(role)].names

    def stream(self, request: Completion) -> AsyncIterator[Chunk | Answer]:
        """Chunks as they come, then the Answer. After a switch of backend mid-stream the
        next chunk has ``restart=True``: discard the text before it (see chain)."""
        return self._chains[request.role].stream(request)

    async def complete(self, request: Completion) -> Answer:
        """The whole Answer, finished (``finish_reason == "stop"``). Raises
        AnswerTruncated when max_tokens ended it (its ``text`` holds what was made: never
        a valid answer), GenerationAborted when the backend aborted it."""
        stream = self.stream(request)
        try:
            async for item in stream:
                if isinstance(item, Answer):
                    if item.finish_reason == "length":
                        raise AnswerTruncated(
                            item.backend,
                            f"max_tokens ({request.budget.max_tokens}) ended the answer",
                            item.text,
                            model=item.model,
                            usage=item.usage,
                        )
                    if item.finish_reason != "stop":
                        raise GenerationAborted(item.backend, "the backend aborted the answer")
                    return item
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        raise BackendUnavailable("", "the chain ended without an answer")

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        return await self._chains[Role.EMBEDDER].embed(texts)

    async def refresh_metrics(self) -> None:
        """Read the stats of every backend that has them (the worker: queue depth,
        swaps) into the metrics; a backend that cannot answer is skipped, and one that
        says it is not ``running`` (a worker not started yet) is not asked: a scrape
        must not start a model."""
        if self._metrics is None:
            return
        for name, backend in self._backends.items():
            stats = getattr(backend, "stats", None)
            if stats is None or getattr(backend, "running", True) is False:
                continue
            try:
                found = await asyncio.wait_for(stats(), 2.0)
            except Exception as exc:  # stats are best effort: a scrape must not fail
                log.debug("no stats from model backend %s: %s", name, exc)
                continue
            if isinstance(found, Mapping):
                self._metrics.stats(name, found)

    async def close(self) -> None:
        """Close every backend, each once; one that fails to close is logged and the
        others are still closed."""
        for backend in self._backends.values():
            try:
                await backend.close()
            except Exception as exc:
                log.warning("closing model backend %s failed: %s", backend.name, exc)


def _build(settings: ModelsSettings) -> dict[str, Backend]:
    built: dict[str, Backend] = {}
    for backend in settings.backends:
        built[backend.name] = _backend(settings, backend)
    return built


def _backend(settings: ModelsSettings, backend: BackendSettings) -> Backend:
    if backend.endpoint is not None:
        return EndpointBackend(backend.name, backend.endpoint)
    # The worker client is imported only here: a runtime of endpoints needs none of it.
    # (By name: h4's module lands beside this one; mypy checks it once it is there.)
    worker = importlib.import_module("controller.llm.worker")
    made: Backend = worker.local_backend(settings, backend)
    return made
