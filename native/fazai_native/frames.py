"""Request frames read into typed values, and the reply frames built from results.
Every refusal is a :class:`~fazai_native.protocol.ProtocolError` naming the field; no
message repeats a prompt's or a text's content."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from fazai_native.protocol import MAX_ID, ProtocolError, Sampling
from fazai_native.runtime import Generation, decode_rate
from fazai_native.types import ChatMessage, GenerateRequest, ModelSpec

MAX_TEXTS = 256  # texts in one embed request: their vectors must fit in one frame
MAX_MESSAGES = 512
ROLES = ("system", "user", "assistant")

FIELDS = {
    "generate": {
        "op",
        "id",
        "model",
        "prompt",
        "messages",
        "session",
        "params",
        "schema",
        "deadline",
    },
    "embed": {"op", "id", "model", "texts"},
    "abort": {"op", "id", "target"},
    "load": {"op", "id", "model", "spec"},
    "unload": {"op", "id", "model"},
    "drop": {"op", "id", "session"},
    "stats": {"op", "id"},
}


def check_fields(frame: Mapping[str, Any], op: str) -> None:
    unknown = sorted(set(frame) - FIELDS[op])
    if unknown:
        raise ProtocolError(f"unknown field for {op}", _short(unknown[0]))


def _short(name: str) -> str:
    return name if len(name) <= 64 else name[:61] + "..."


def text(frame: Mapping[str, Any], name: str, *, limit: int = MAX_ID) -> str:
    value = frame.get(name)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ProtocolError(f"must be a non-empty string of at most {limit} characters", name)
    return value


def generate_request(frame: Mapping[str, Any]) -> tuple[GenerateRequest, float | None]:
    """The request, and its deadline in seconds from now (None: none)."""
    check_fields(frame, "generate")
    model = text(frame, "model")
    prompt = frame.get("prompt")
    raw_messages = frame.get("messages")
    if (prompt is None) == (raw_messages is None):
        raise ProtocolError("give exactly one of prompt and messages", "prompt")
    messages: tuple[ChatMessage, ...] = ()
    if prompt is not None and (not isinstance(prompt, str) or not prompt):
        raise ProtocolError("must be a non-empty string", "prompt")
    if raw_messages is not None:
        messages = _messages(raw_messages)
    session = frame.get("session")
    if session is not None:
        session = text(frame, "session")
    schema = frame.get("schema")
    if schema is not None and not isinstance(schema, dict):
        raise ProtocolError("must be a JSON Schema object", "schema")
    deadline = frame.get("deadline")
    if deadline is not None and (
        isinstance(deadline, bool)
        or not isinstance(deadline, (int, float))
        or not 0 < deadline <= 86400
    ):
        raise ProtocolError("must be a number of seconds from 0 to 86400", "deadline")
    request = GenerateRequest(
        model=model,
        prompt=prompt,
        messages=messages,
        session=session,
        sampling=Sampling.from_dict(frame.get("params")),
        schema=schema,
        deadline=None if deadline is None else time.monotonic() + float(deadline),
    )
    return request, None if deadline is None else float(deadline)


def _messages(value: Any) -> tuple[ChatMessage, ...]:
    if not isinstance(value, list) or not value or len(value) > MAX_MESSAGES:
        raise ProtocolError(f"must be a list of 1 to {MAX_MESSAGES} messages", "messages")
    out = []
    for i, item in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(item, dict) or set(item) - {"role", "content"}:
            raise ProtocolError("must be an object with role and content", where)
        if item.get("role") not in ROLES:
            raise ProtocolError(f"must be one of {', '.join(ROLES)}", f"{where}.role")
        if not isinstance(item.get("content"), str):
            raise ProtocolError("must be a string", f"{where}.content")
        out.append(ChatMessage(item["role"], item["content"]))
    return tuple(out)


def embed_request(frame: Mapping[str, Any]) -> tuple[str, list[str]]:
    check_fields(frame, "embed")
    model = text(frame, "model")
    texts = frame.get("texts")
    if not isinstance(texts, list) or not texts or len(texts) > MAX_TEXTS:
        raise ProtocolError(f"must be a list of 1 to {MAX_TEXTS} strings", "texts")
    for i, item in enumerate(texts):
        if not isinstance(item, str):
            raise ProtocolError("must be a string", f"texts[{i}]")
    return model, texts


def load_request(frame: Mapping[str, Any]) -> tuple[str | None, ModelSpec | None]:
    check_fields(frame, "load")
    if ("model" in frame) == ("spec" in frame):
        raise ProtocolError("give exactly one of model and spec", "model")
    if "spec" in frame:
        spec = frame["spec"]
        if not isinstance(spec, dict):
            raise ProtocolError("must be an object", "spec")
        return None, ModelSpec.from_dict(spec)
    return text(frame, "model"), None


def done(rid: str, generation: Generation, queued_s: float) -> dict[str, Any]:
    result = generation.result
    rate = decode_rate(result)
    return {
        "id": rid,
        "event": "done",
        "text": result.text,
        "finish_reason": result.finish_reason,
        "usage": {
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "cached_tokens": result.cached_tokens,
        },
        "timings": {
            "queued_s": round(queued_s, 6),
            "ttft_s": round(result.ttft_s, 6),
            "total_s": round(result.total_s, 6),
            "tokens_per_s": None if rate is None else round(rate, 3),
        },
        "model": generation.model,
    }


def result(rid: str, value: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": rid, "event": "result", "result": dict(value)}


def token(rid: str, piece: str, index: int) -> dict[str, Any]:
    return {"id": rid, "event": "token", "text": piece, "index": index}
