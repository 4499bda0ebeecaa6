"""Prometheus metrics of the model runtime, in a registry the caller gives (the API's,
so they appear on the existing ``/metrics`` endpoint).

The chain feeds answers, fallbacks and errors as they happen; the worker's current state
(queue depth, model swaps) comes from its stats, read by
:meth:`~controller.llm.runtime.ModelRuntime.refresh_metrics` (a backend that has an
``async stats()`` method) and set with :meth:`ModelMetrics.stats`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from controller.llm.completion import Answer

# From a warm session's first token (tens of ms) to a cold long prompt on a CPU.
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
RATE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


class ModelMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["backend", "model"]
        self.ttft = Histogram(
            "fazai_model_time_to_first_token_seconds",
            "Time from a completion's call to its first token, fallbacks included",
            labels,
            buckets=TTFT_BUCKETS,
            registry=registry,
        )
        self.rate = Histogram(
            "fazai_model_tokens_per_second",
            "Generation speed of an answer, after its first token",
            labels,
            buckets=RATE_BUCKETS,
            registry=registry,
        )
        self.tokens = Counter(
            "fazai_model_tokens",
            "Tokens evaluated (prompt) and generated (completion)",
            [*labels, "kind"],
            registry=registry,
        )
        self.answers = Counter(
            "fazai_model_answers",
            "Completions answered, by finish reason",
            [*labels, "role", "finish_reason"],
            registry=registry,
        )
        self.fallbacks = Counter(
            "fazai_model_fallbacks",
            "Times a role's chain left a backend for the next one",
            ["role", "backend", "kind"],
            registry=registry,
        )
        self.errors = Counter(
            "fazai_model_errors",
            "Failures of a backend, by error kind",
            [*labels, "kind"],
            registry=registry,
        )
        self.queue = Gauge(
            "fazai_model_queue_depth",
            "Requests waiting in a backend's queue (the worker's stats)",
            ["backend"],
            registry=registry,
        )
        self.swaps = Counter(
            "fazai_model_swaps",
            "Models loaded into the worker in place of an evicted one",
            ["backend"],
            registry=registry,
        )
        self._swaps_seen: dict[str, int] = {}

    def answer(self, role: str, model: str, answer: Answer) -> None:
        """One answer, labelled by ``model`` as configured (never ``answer.model``, which
        the backend reports: a server naming a new model each time would add series
        without bound)."""
        at = (answer.backend, model)
        self.answers.labels(*at, role, answer.finish_reason).inc()
        if answer.usage.completion_tokens:
            self.ttft.labels(*at).observe(answer.timings.ttft_s)
        if answer.tokens_per_s > 0:
            self.rate.labels(*at).observe(answer.tokens_per_s)
        self.tokens.labels(*at, "prompt").inc(answer.usage.prompt_tokens)
        self.tokens.labels(*at, "completion").inc(answer.usage.completion_tokens)

    def fallback(self, role: str, backend: str, kind: str) -> None:
        self.fallbacks.labels(role, backend, kind).inc()

    def error(self, backend: str, model: str, kind: str) -> None:
        self.errors.labels(backend, model, kind).inc()

    def stats(self, backend: str, stats: Mapping[str, Any]) -> None:
        """A backend's stats: ``queue`` (requests waiting now) and ``swaps`` (loads since
        the worker started; a counter, so only its increase is added, and a restarted
        worker's lower count starts over)."""
        queue = stats.get("queue")
        if isinstance(queue, int | float) and not isinstance(queue, bool):
            self.queue.labels(backend).set(queue)
        swaps = stats.get("swaps")
        if isinstance(swaps, int) and not isinstance(swaps, bool):
            seen = self._swaps_seen.get(backend, 0)
            self.swaps.labels(backend).inc(swaps - seen if swaps >= seen else swaps)
            self._swaps_seen[backend] = swaps
