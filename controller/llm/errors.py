"""The model runtime's failures, in FazAI's one exception tree (``controller.errors``).

    FazaiError
    └── ModelError                a model could not give an answer       (temporary)
        ├── BackendUnavailable        a backend is down, crashed, timed out, or its
        │                             circuit is open; the chain tries the next (temporary)
        ├── BackendBusy               its queue is full (429 / busy)  (temporary, delay)
        ├── BackendRefused            it refused the request (4xx, bad request)  (permanent)
        ├── SchemaUnsupported         the schema cannot be enforced as a grammar (permanent)
        ├── AnswerTruncated           the budget's max_tokens ended it mid-answer (permanent)
        ├── GenerationAborted         an abort or the budget's deadline stopped it (permanent)
        │   └── DeadlineExceeded          ... the deadline, while waiting on this backend
        │                                 (or said by it: .answered)
        └── NoBackendLeft             every backend of the role failed; .attempts (temporary)

Messages name the backend and model, never a prompt's text or an API key.
"""

from __future__ import annotations

from collections.abc import Sequence

from controller.errors import FazaiError
from controller.llm.completion import Usage


class ModelError(FazaiError):
    retryable = True

    def __init__(self, backend: str, message: str) -> None:
        self.backend = backend
        super().__init__(f"{backend}: {message}" if backend else message)


class BackendUnavailable(ModelError):
    pass


class BackendBusy(ModelError):
    def __init__(self, backend: str, message: str, delay: float | None = None) -> None:
        super().__init__(backend, message)
        self.delay = delay


class BackendRefused(ModelError):
    """``request_fault``: the request itself was refused (400, 413, 422: the next backend
    would most likely refuse it too, so the chain stops); False when it is this backend's
    own configuration (401, 403, 404: a wrong key or model name), which the chain passes
    over to the next one."""

    retryable = False

    def __init__(self, backend: str, message: str, *, request_fault: bool = True) -> None:
        super().__init__(backend, message)
        self.request_fault = request_fault


class SchemaUnsupported(ModelError):
    retryable = False


class AnswerTruncated(ModelError):
    """``text`` is what was made before the budget ran out: never a valid answer.
    ``usage`` and ``model`` are the cut answer's own (what it cost, who made it)."""

    retryable = False

    def __init__(
        self,
        backend: str,
        message: str,
        text: str = "",
        *,
        model: str = "",
        usage: Usage | None = None,
    ) -> None:
        super().__init__(backend, message)
        self.text = text
        self.model = model
        self.usage = usage if usage is not None else Usage()


class GenerationAborted(ModelError):
    retryable = False


class DeadlineExceeded(GenerationAborted):
    """The budget's deadline fired while the backend was being waited on (connecting,
    for its first piece, between pieces): the caller's limit for the caller, but for the
    backend's circuit breaker a temporary failure (a hung backend spends every budget),
    unlike an abort, which says nothing about the backend.

    ``answered``: the backend itself stopped at the deadline and said so (the worker's
    ``abort_reason: deadline``): it is up and working, the budget was just too short for
    the answer, so the breaker counts nothing."""

    def __init__(self, backend: str, message: str, *, answered: bool = False) -> None:
        super().__init__(backend, message)
        self.answered = answered


class NoBackendLeft(ModelError):
    """Every backend of ``role`` failed; ``attempts`` holds each one's error, in order."""

    def __init__(self, role: str, attempts: Sequence[ModelError]) -> None:
        self.role = role
        self.attempts = tuple(attempts)
        tried = "; ".join(str(a) for a in self.attempts) or "no backend is configured"
        super().__init__("", f"no backend could answer for {role}: {tried}")
        delays = [a.delay for a in self.attempts if a.delay is not None]
        self.delay = min(delays) if delays else None
        # Temporary while any backend failed temporarily (or none is configured: a config
        # reload may add one); when every one refused for good, so is the whole.
        self.retryable = not self.attempts or any(a.retryable for a in self.attempts)
