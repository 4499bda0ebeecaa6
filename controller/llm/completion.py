"""What a caller asks a model for, and what it gets back: typed, frozen, JSON-free.

A :class:`Completion` names a role, not a model: the runtime's chain for that role picks
the backend. Its :class:`Budget` bounds it in tokens and seconds; running out of either
ends it as ``finish_reason == "length"`` (tokens) or aborts it (seconds). An
:class:`Answer` says which backend and model served it, with its usage and timings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal


class Role(StrEnum):
    BRAIN = "brain"  # plans: the agent's reasoning model
    EXECUTOR = "executor"  # writes tools
    EMBEDDER = "embedder"  # vectors for the knowledge base


FinishReason = Literal["stop", "length", "abort"]


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class Budget:
    """Bounds of one completion: ``max_tokens`` generated, ``seconds`` of wall time from
    the call (None: no deadline beyond the backends' own timeouts)."""

    max_tokens: int = 256
    seconds: float | None = None

    def __post_init__(self) -> None:
        tokens = self.max_tokens
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
            raise ValueError("a Budget's max_tokens must be an integer of at least 1")
        seconds = self.seconds
        if seconds is not None and (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not math.isfinite(seconds)
            or seconds <= 0
        ):
            # NaN would compare false with every clock reading: a deadline never met.
            raise ValueError("a Budget's seconds must be a finite number above 0, or None")


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.0
    top_p: float = 0.95
    top_k: int = 40
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Completion:
    """One request. Exactly one of ``prompt`` (raw text) and ``messages`` (chat). With
    ``session`` the backend keeps the evaluated prompt for the next request of the same
    session (the worker keeps its KV state; remote endpoints ignore it). With ``schema``
    the output is constrained to that JSON Schema, or refused where it cannot be."""

    role: Role
    prompt: str | None = None
    messages: tuple[Message, ...] = ()
    session: str | None = None
    schema: Mapping[str, Any] | None = None
    budget: Budget = field(default_factory=Budget)
    sampling: Sampling = field(default_factory=Sampling)

    def __post_init__(self) -> None:
        if (self.prompt is None) == (not self.messages):
            raise ValueError("a Completion takes exactly one of prompt and messages")


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens the session spared evaluating again


@dataclass(frozen=True)
class Timings:
    queued_s: float = 0.0
    ttft_s: float = 0.0  # time to first token, from the call
    total_s: float = 0.0


@dataclass(frozen=True)
class Chunk:
    """A piece of a streamed answer, as the backend made it."""

    text: str
    index: int  # 0-based count of pieces so far
    backend: str  # the backend's name (from fazai.yaml), e.g. "local" or "ollama"
    # The chain switched backends after chunks had come out: this chunk is the first of
    # the answer made again from the start by ``backend``; discard every text before it.
    restart: bool = False


@dataclass(frozen=True)
class Answer:
    text: str
    finish_reason: FinishReason
    backend: str
    model: str
    usage: Usage = field(default_factory=Usage)
    timings: Timings = field(default_factory=Timings)
    fallbacks: tuple[str, ...] = ()  # backends tried and failed before this one, in order

    @property
    def tokens_per_s(self) -> float:
        spent = self.timings.total_s - self.timings.ttft_s
        if spent <= 0 or self.usage.completion_tokens <= 1:
            return 0.0
        return (self.usage.completion_tokens - 1) / spent
