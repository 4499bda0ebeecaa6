"""The worker's failures, each carrying the protocol error code the server answers
with (:data:`fazai_native.protocol.ERROR_CODES`). The runtime raises these; the server
turns one into an ``error`` frame and nothing else. Messages name models and fields,
never a prompt's text."""

from __future__ import annotations


class WorkerError(Exception):
    """A request the worker could not serve. ``code`` is its protocol error code."""

    code = "internal"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Busy(WorkerError):
    """The queue is full, or the model is in use and cannot be unloaded now."""

    code = "busy"


class BadRequest(WorkerError):
    code = "bad_request"


class UnknownModel(WorkerError):
    code = "unknown_model"


class SchemaRefused(WorkerError):
    code = "schema_unsupported"


class ContextOverflow(WorkerError):
    code = "context_overflow"


class InvalidOutput(WorkerError):
    """A schema-constrained answer that finished but does not validate (the grammar
    cannot enforce all of JSON Schema). Retryable: another backend may do better."""

    code = "invalid_output"


class MemoryShort(WorkerError):
    """The model does not fit in the memory budget, even after evicting every idle
    unpinned model. Retryable: the models in use may finish."""

    code = "memory"


class LoadFailed(WorkerError):
    code = "load_failed"


class Aborted(WorkerError):
    """An abort or the deadline stopped the request before it made any token."""

    code = "aborted"


class Internal(WorkerError):
    code = "internal"
