"""The worker's in-process values: what a model is (:class:`ModelSpec`), what one
generation asks (:class:`GenerateRequest`) and what it made (:class:`GenerateResult`).
The server turns frames into these and these into frames; the engine knows no frames."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from fazai_native.protocol import Sampling

Kind = Literal["gguf", "embedder"]


@dataclass(frozen=True)
class ModelSpec:
    """A model the worker may load. ``path``: the GGUF file (or, for an embedder, the
    folder of its ONNX model and tokenizer). ``pinned``: stays loaded (the brain); others
    load on demand and are evicted least recently used when the memory budget is short.
    ``slots``: contexts over the one mmap'd file, so that that many sessions generate at
    once without one waiting for another's prompt."""

    name: str
    path: str
    kind: Kind = "gguf"
    role: str = "brain"
    n_ctx: int = 2048
    n_threads: int = 2
    slots: int = 1
    pinned: bool = False

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> ModelSpec:
        from fazai_native.protocol import ProtocolError

        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(value) - known)
        if unknown:
            raise ProtocolError(f"unknown field {unknown[0]!r}", "spec")
        for name in ("name", "path"):
            if not isinstance(value.get(name), str) or not value[name]:
                raise ProtocolError("must be a non-empty string", f"spec.{name}")
        spec = cls(**dict(value))
        if spec.kind not in ("gguf", "embedder"):
            raise ProtocolError("must be gguf or embedder", "spec.kind")
        for name, low, high in (("n_ctx", 128, 1 << 20), ("n_threads", 1, 256), ("slots", 1, 16)):
            number = getattr(spec, name)
            if isinstance(number, bool) or not isinstance(number, int) or not low <= number <= high:
                raise ProtocolError(f"must be an integer from {low} to {high}", f"spec.{name}")
        return spec


@dataclass(frozen=True)
class ChatMessage:
    role: Literal["system", "user", "assistant"]
    content: str

    def __post_init__(self) -> None:
        # Checked here too, not only at the frame: a role is written into the prompt.
        if self.role not in ("system", "user", "assistant"):
            raise ValueError(
                f"a chat message's role must be system, user or assistant: {self.role!r}"
            )
        if not isinstance(self.content, str):
            raise ValueError("a chat message's content must be text")


@dataclass(frozen=True)
class GenerateRequest:
    model: str
    prompt: str | None = None
    messages: tuple[ChatMessage, ...] = ()
    session: str | None = None
    sampling: Sampling = field(default_factory=Sampling)
    schema: Mapping[str, Any] | None = None
    deadline: float | None = None  # time.monotonic() at which it aborts


@dataclass(frozen=True)
class GenerateResult:
    text: str
    finish_reason: Literal["stop", "length", "abort"]
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int  # prompt tokens a session's KV state spared evaluating
    ttft_s: float  # from the start of the engine's work, not counting the queue
    total_s: float
