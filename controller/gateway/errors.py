"""The runtime's failures as OpenAI's error answers: ``{"error": {"message", "type",
"param", "code"}}`` with the status an OpenAI client acts on.

=========================  ======  ===================================================
failure                    status  why
=========================  ======  ===================================================
BackendBusy, or every      429     the client's SDK retries after ``Retry-After``
backend of the chain busy
BackendUnavailable,        503     nothing could answer now (``Retry-After`` when a
NoBackendLeft                      backend said when)
SchemaUnsupported          400     the schema cannot be enforced: sending it again will
                                   not help; OpenAI answers an unusable schema with 400
                                   too, so clients treat it as the request's fault
BackendRefused             400     the request itself (too long for the context, ...)
GenerationAborted          504     the deadline or an abort ended it before an answer
=========================  ======  ===================================================

The client's message is the error's own for its faults and the backends' limits (4xx:
busy, refused, a schema that cannot be enforced: what it must change). For the server's
own failures (5xx) it is a fixed sentence per code: a worker's or a remote endpoint's
text (a crash's exception, a path, a remote server's body) is the operator's to read, in
the gateway's log, not a client's.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from starlette.responses import JSONResponse

from controller.llm.errors import (
    BackendBusy,
    BackendRefused,
    BackendUnavailable,
    GenerationAborted,
    ModelError,
    NoBackendLeft,
    SchemaUnsupported,
)

log = logging.getLogger("fazai.gateway")

# What a client is told of a server-side failure, by code; the detail goes to the log.
_GENERIC = {
    "no_backend": "no model backend could answer now; try again later",
    "unavailable": "the model backend is unavailable now; try again later",
    "aborted": "the generation was stopped before it finished",
    "model_error": "the model backend failed",
}


def body(
    message: str, kind: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def reply(
    status: int,
    message: str,
    kind: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(body(message, kind, code, param), status, headers)


class BadRequest(Exception):
    """A request the gateway refuses before the runtime sees it; ``param`` names the
    field at fault."""

    def __init__(
        self,
        message: str,
        param: str | None = None,
        status: int = 400,
        *,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.param = param
        self.status = status
        self.code = code


def for_bad_request(exc: BadRequest) -> JSONResponse:
    code = exc.code or ("model_not_found" if exc.status == 404 else None)
    return reply(exc.status, str(exc), code=code, param=exc.param)


def status_of(exc: ModelError) -> tuple[int, str, str, float | None]:
    """(status, type, code, retry after) for ``exc``."""
    if isinstance(exc, BackendBusy):
        return 429, "rate_limit_error", "busy", exc.delay
    if isinstance(exc, NoBackendLeft):
        if exc.attempts and all(isinstance(a, BackendBusy) for a in exc.attempts):
            return 429, "rate_limit_error", "busy", exc.delay
        if exc.attempts and not exc.retryable:
            # Every backend refused for good (say, none can enforce the schema): the
            # first one's reason stands for the whole.
            status, kind, code, _ = status_of(exc.attempts[0])
            return status, kind, code, None
        return 503, "server_error", "no_backend", exc.delay
    if isinstance(exc, SchemaUnsupported):
        return 400, "invalid_request_error", "schema_unsupported", None
    if isinstance(exc, BackendRefused):
        return 400, "invalid_request_error", "refused", None
    if isinstance(exc, GenerationAborted):
        return 504, "server_error", "aborted", None
    if isinstance(exc, BackendUnavailable):
        return 503, "server_error", "unavailable", None
    return 503, "server_error", "model_error", None


def message_of(exc: ModelError, status: int, code: str) -> str:
    """What the client reads of ``exc``: its own text for a 4xx, a fixed sentence for a
    server-side failure (whose text is logged here instead)."""
    if status < 500:
        if isinstance(exc, NoBackendLeft) and exc.attempts:
            # The first refusal stands for the whole (status_of): its text alone, not
            # every backend's (one may be a server-side failure's).
            return f"no backend could answer for {exc.role}: {exc.attempts[0]}"
        return str(exc)
    log.warning("answered %d %s: %s", status, code, exc)
    return _GENERIC.get(code, _GENERIC["model_error"])


def for_model_error(exc: ModelError) -> JSONResponse:
    status, kind, code, delay = status_of(exc)
    headers = {}
    if delay is not None:
        headers["Retry-After"] = str(max(1, math.ceil(delay)))
    param = "response_format" if code == "schema_unsupported" else None
    return reply(status, message_of(exc, status, code), kind, code, param, headers)


def stream_error(exc: ModelError) -> dict[str, Any]:
    """The error as the last event of a stream whose 200 was already sent."""
    status, kind, code, _ = status_of(exc)
    return body(message_of(exc, status, code), kind, code)
