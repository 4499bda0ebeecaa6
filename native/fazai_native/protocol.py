"""The worker's wire protocol: newline-delimited JSON frames over a Unix socket.

One frame is one JSON object on one line (UTF-8, no raw newline inside: ``json.dumps``
escapes them), at most :data:`MAX_FRAME` bytes; a longer line is refused with a
``bad_request`` error and the connection closed, as is a line not finished within the
stall timeout, so a client cannot make the worker buffer (or wait) without bound. A
connection carries any number of requests at once, told apart by the ``id`` the client
gives each (unique per connection, at most 128 characters).
Closing a connection aborts every request it still has in flight.

Requests (client -> worker), each ``{"op": OP, "id": ID, ...}``:

=============  ==========================================================================
op             fields
=============  ==========================================================================
``generate``   ``model`` (a declared name), ``prompt`` (text) or ``messages`` (chat, the
               model's own template formats them), ``session`` (optional: keeps its KV
               state for the next request), ``params`` (:class:`Sampling` fields),
               ``schema`` (optional JSON Schema: output constrained to it),
               ``deadline`` (optional seconds from now: the request aborts then)
``embed``      ``model``, ``texts`` (list of strings)
``abort``      ``target`` (the id of a request on this connection); its result:
               ``aborted``, and when false, ``reason``: ``finished`` (too late) or
               ``unknown`` (no such request among the connection's recent ones)
``load``       ``model`` (a declared name), or ``spec`` (declares it too)
``unload``     ``model``
``drop``       ``session``
``stats``      (nothing)
=============  ==========================================================================

Replies (worker -> client), each ``{"id": ID, "event": EVENT, ...}``:

- ``token``: ``text`` (the piece), ``index`` (0-based count of pieces so far); only for
  ``generate``, as the tokens are made.
- ``done``: the end of a ``generate``: ``text`` (all of it), ``finish_reason`` (``stop``,
  ``length`` or ``abort``; with ``abort``, ``abort_reason``: ``abort``, ``deadline``,
  ``slow_reader`` or ``closed``), ``usage`` (``prompt_tokens``, ``completion_tokens``,
  ``cached_tokens``: prompt tokens not evaluated again thanks to the session),
  ``timings`` (``queued_s``, ``ttft_s``, ``total_s``, ``tokens_per_s``), ``model``.
- ``result``: the answer to any other op, its fields under ``result``.
- ``error``: ``code`` (one of :data:`ERROR_CODES`), ``message`` (never a prompt's
  text; for ``bad_request`` it starts with the field: ``params.top_p: ...``),
  ``retry_after`` (seconds, for ``busy`` and ``memory``). A frame whose id cannot be
  read is answered with id ``""``.

Every request gets exactly one final frame: ``done``, ``result`` or ``error``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

PROTOCOL_VERSION = 1
MAX_FRAME = 4 * 1024 * 1024  # bytes in one line, the newline included
MAX_ID = 128

OPS = ("generate", "embed", "abort", "load", "unload", "drop", "stats")
FINISH_REASONS = ("stop", "length", "abort")

# What an error frame's code says, and whether the same request may be sent again.
ERROR_CODES: Mapping[str, bool] = {
    "busy": True,  # the queue is full: try again after retry_after, or another backend
    "bad_request": False,  # a frame that is not a valid request (names the field)
    "unknown_model": False,  # no model of that name is declared
    "schema_unsupported": False,  # the schema cannot be made into a grammar: refused
    "context_overflow": False,  # prompt + max_tokens exceed the model's context
    "invalid_output": True,  # a schema answer the schema refuses: never passed on as valid
    "memory": True,  # the model does not fit in the memory budget now
    "load_failed": False,  # the model file could not be loaded
    "aborted": False,  # an abort frame or the deadline stopped it before any token
    "internal": True,  # the worker failed; it may be restarted
}


class ProtocolError(ValueError):
    """A frame that cannot be read; ``field`` names what was wrong."""

    def __init__(self, message: str, field: str = "") -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


@dataclass(frozen=True)
class Sampling:
    """Per-request sampling parameters (llama.cpp's names)."""

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, value: Any) -> Sampling:
        if value is None:
            return cls()
        if not isinstance(value, Mapping):
            raise ProtocolError("must be an object", "params")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(value) - known)
        if unknown:
            raise ProtocolError(f"unknown parameter {unknown[0]!r}", "params")
        fields: dict[str, Any] = dict(value)
        if "stop" in fields:
            stop = fields["stop"]
            if isinstance(stop, str):
                stop = [stop]
            if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
                raise ProtocolError("must be a string or a list of strings", "params.stop")
            fields["stop"] = tuple(stop)
        sampling = cls(**fields)
        sampling.check()
        return sampling

    def check(self) -> None:
        def number(name: str, low: float, high: float, integer: bool = False) -> None:
            value = getattr(self, name)
            kind = int if integer else (int, float)
            if isinstance(value, bool) or not isinstance(value, kind):
                raise ProtocolError("must be a number", f"params.{name}")
            if not low <= value <= high:
                raise ProtocolError(f"must be between {low} and {high}", f"params.{name}")

        number("max_tokens", 1, 1 << 20, integer=True)
        number("temperature", 0.0, 5.0)
        number("top_p", 0.0, 1.0)
        number("top_k", 0, 1 << 20, integer=True)
        number("min_p", 0.0, 1.0)
        number("repeat_penalty", 0.0, 5.0)
        if self.seed is not None:
            number("seed", 0, (1 << 32) - 1, integer=True)
        if len(self.stop) > 16:
            raise ProtocolError("at most 16 stop strings", "params.stop")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["stop"] = list(self.stop)
        return out


def encode(frame: Mapping[str, Any]) -> bytes:
    """One frame as its line. Raises ProtocolError when it would exceed MAX_FRAME."""
    line = json.dumps(frame, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
    if len(line) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(line)} bytes exceeds {MAX_FRAME}")
    return line


def decode(line: bytes) -> dict[str, Any]:
    """One line as its frame: a JSON object. Raises ProtocolError otherwise."""
    if len(line) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(line)} bytes exceeds {MAX_FRAME}")
    try:
        value = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ProtocolError("a frame must be a JSON object")
    return value


def request_id(frame: Mapping[str, Any]) -> str:
    value = frame.get("id")
    if not isinstance(value, str) or not value or len(value) > MAX_ID:
        raise ProtocolError(f"must be a non-empty string of at most {MAX_ID} characters", "id")
    return value


def error(rid: str, code: str, message: str, retry_after: float | None = None) -> dict[str, Any]:
    if code not in ERROR_CODES:
        raise ValueError(f"unknown error code {code!r}")
    frame: dict[str, Any] = {"id": rid, "event": "error", "code": code, "message": message}
    if retry_after is not None:
        frame["retry_after"] = retry_after
    return frame
