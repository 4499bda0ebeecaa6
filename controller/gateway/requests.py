"""OpenAI request bodies as the runtime's :class:`~controller.llm.completion.Completion`.

What the runtime cannot do is refused with 400 and the field's name (``n`` other than
the integer 1, ``tools``, ``logprobs``, ``echo``, more than 4 ``stop`` strings, a schema
too big for a grammar: 400 ``schema_unsupported``), never ignored: a client must not
believe it got what it asked. Fields that change nothing here (``stream_options`` aside from usage,
``presence_penalty`` of 0, ``metadata``) are accepted.

``model`` names a role (``brain``, ``executor``) or a backend of fazai.yaml, which stands
for its role's chain. The session that keeps a conversation's KV state in the worker is
the ``X-Session-Id`` header: the agent sends the same one on each iteration, so its
second prompt is not read again from the start. The name the worker gets is that one
under the caller's namespace (``owner``: a digest of its bearer token), so two tokens
that pick the same name never share, nor read, each other's KV state. OpenAI's ``user``
field is not a session: it names an end user, often the same one across conversations.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.gateway.errors import BadRequest
from controller.llm.completion import Budget, Completion, Message, Role, Sampling

SESSION_HEADER = "x-session-id"
MAX_SESSION = 96  # the worker's 128 less the owner's namespace (``owner:``)
MAX_OWNER = 31
MAX_TOKENS = 1 << 20
MAX_MESSAGES = 4096
MAX_STOPS = 4  # OpenAI's limit: a client written for it sends no more
MAX_STOP_CHARS = 256
MAX_SCHEMA_BYTES = 64 * 1024  # a grammar from more than this is not one the worker makes
MAX_SCHEMA_NODES = 4096  # values in it (keys' values, items), at any depth
MAX_SCHEMA_DEPTH = 32  # nested objects/arrays: deeper blows the converter's recursion
_SESSION = re.compile(rf"[A-Za-z0-9._:@/+=-]{{1,{MAX_SESSION}}}")

# Fields that ask for something this gateway does not do: refused, never ignored.
_UNSUPPORTED = (
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "logprobs",
    "echo",
    "best_of",
    "suffix",
    "logit_bias",
    "top_logprobs",
    "audio",
    "modalities",
)


@dataclass(frozen=True)
class Parsed:
    completion: Completion
    model: str  # as the client named it (answers repeat it)
    stream: bool
    include_usage: bool  # stream_options.include_usage


def role_for(model: Any, roles: Mapping[str, Role], default: Role = Role.BRAIN) -> Role:
    """The role ``model`` names: a role, or a backend (``roles``: backend name -> role)."""
    if model is None or model == "":
        return default
    if not isinstance(model, str):
        raise BadRequest("must be a string", "model")
    if model in {r.value for r in Role}:
        return Role(model)
    if model in roles:
        return roles[model]
    known = ", ".join(sorted({r.value for r in Role} | set(roles)))
    raise BadRequest(f"the model {model!r} does not exist; known: {known}", "model", 404)


def session_of(headers: Mapping[str, str], owner: str) -> str | None:
    """The worker's session for the ``X-Session-Id`` header, under ``owner``'s namespace
    (``owner:name``): the caller's own, never another token's."""
    value = headers.get(SESSION_HEADER)
    if value is None or value == "":
        return None
    if not _SESSION.fullmatch(value):
        raise BadRequest(
            f"a session (X-Session-Id) is 1 to {MAX_SESSION} letters, digits or ._:@/+=-",
            SESSION_HEADER,
        )
    if not owner or len(owner) > MAX_OWNER or ":" in owner:
        raise ValueError("a session's owner is 1 to 31 characters, without ':'")
    return f"{owner}:{value}"


def chat(
    body: Mapping[str, Any],
    headers: Mapping[str, str],
    roles: Mapping[str, Role],
    *,
    owner: str = "open",
) -> Parsed:
    """``owner``: the namespace of the caller's sessions (see :func:`session_of`)."""
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise BadRequest("must be a non-empty list of messages", "messages")
    if len(raw) > MAX_MESSAGES:
        raise BadRequest(f"at most {MAX_MESSAGES} messages", "messages")
    messages = tuple(_message(m, i) for i, m in enumerate(raw))
    return _parsed(body, headers, roles, owner, messages=messages)


def completion(
    body: Mapping[str, Any],
    headers: Mapping[str, str],
    roles: Mapping[str, Role],
    *,
    owner: str = "open",
) -> Parsed:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise BadRequest("must be a string (one prompt per request)", "prompt")
    return _parsed(body, headers, roles, owner, prompt=prompt)


def embedding_format(body: Mapping[str, Any]) -> str:
    """``float`` (lists of numbers) or ``base64`` (little-endian float32, what the
    openai client asks for by default)."""
    kind = body.get("encoding_format") or "float"
    if kind not in ("float", "base64"):
        raise BadRequest("must be float or base64", "encoding_format")
    return str(kind)


def embedding_input(body: Mapping[str, Any]) -> list[str]:
    value = body.get("input")
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise BadRequest("must be a string or a non-empty list of strings", "input")
    if len(texts) > 2048:
        raise BadRequest("at most 2048 inputs", "input")
    embedding_format(body)
    return texts


def _message(value: Any, index: int) -> Message:
    where = f"messages[{index}]"
    if not isinstance(value, Mapping):
        raise BadRequest("must be an object", where)
    role = value.get("role")
    if role == "developer":  # OpenAI's newer name for system
        role = "system"
    if role not in ("system", "user", "assistant"):
        raise BadRequest("role must be system, user or assistant", f"{where}.role")
    content = value.get("content")
    if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
        parts = []
        for part in content:
            if not isinstance(part, Mapping) or part.get("type") != "text":
                raise BadRequest("only text parts are supported", f"{where}.content")
            if not isinstance(part.get("text"), str):
                raise BadRequest("a text part needs text", f"{where}.content")
            parts.append(part["text"])
        content = "".join(parts)
    if not isinstance(content, str):
        raise BadRequest("must be a string or a list of text parts", f"{where}.content")
    return Message(role, content)


def _parsed(
    body: Mapping[str, Any],
    headers: Mapping[str, str],
    roles: Mapping[str, Role],
    owner: str,
    *,
    prompt: str | None = None,
    messages: tuple[Message, ...] = (),
) -> Parsed:
    for name in _UNSUPPORTED:
        if body.get(name) not in (None, False, [], {}):
            raise BadRequest(f"{name} is not supported by this gateway", name)
    n = body.get("n")
    # True == 1 and 1.0 == 1 in Python: only the integer 1 itself is one choice.
    if n is not None and (type(n) is not int or n != 1):
        raise BadRequest("only n=1 is supported (an integer)", "n")
    model = body.get("model")
    role = role_for(model, roles)
    if role is Role.EMBEDDER:
        raise BadRequest("an embedder makes embeddings, not completions (/v1/embeddings)", "model")
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    max_tokens = (
        Budget().max_tokens if limit is None else _integer(limit, "max_tokens", 1, MAX_TOKENS)
    )
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("must be true or false", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, Mapping):
        raise BadRequest("must be an object", "stream_options")
    include_usage = options.get("include_usage")
    if include_usage is not None and not isinstance(include_usage, bool):
        # "false" is truthy: a client must get what it said, not what bool() makes of it.
        raise BadRequest("must be true or false", "stream_options.include_usage")
    return Parsed(
        Completion(
            role,
            prompt=prompt,
            messages=messages,
            session=session_of(headers, owner),
            schema=_schema(body.get("response_format")),
            budget=Budget(max_tokens=max_tokens),
            sampling=_sampling(body),
        ),
        model if isinstance(model, str) and model else role.value,
        stream,
        bool(include_usage),
    )


def _sampling(body: Mapping[str, Any]) -> Sampling:
    default = Sampling()
    stop = body.get("stop")
    stops: Sequence[Any] = [] if stop is None else [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise BadRequest("must be a string or a list of strings", "stop")
    if len(stops) > MAX_STOPS:
        raise BadRequest(f"at most {MAX_STOPS} stop strings", "stop")
    if any(len(s) > MAX_STOP_CHARS for s in stops):
        raise BadRequest(f"a stop string is at most {MAX_STOP_CHARS} characters", "stop")
    seed = body.get("seed")
    return Sampling(
        temperature=_number(body.get("temperature", default.temperature), "temperature", 0, 2),
        top_p=_number(body.get("top_p", default.top_p), "top_p", 0, 1),
        top_k=_integer(body.get("top_k", default.top_k), "top_k", 0, 1 << 20),
        seed=None if seed is None else _integer(seed, "seed", 0, (1 << 32) - 1),
        stop=tuple(stops),
    )


def _schema(value: Any) -> Mapping[str, Any] | None:
    """``response_format`` as the JSON Schema the output is constrained to: any JSON
    object for ``json_object``, the given schema for ``json_schema``."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise BadRequest("must be an object", "response_format")
    kind = value.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
            raise BadRequest("json_schema needs a name and a schema", "response_format.json_schema")
        schema = spec.get("schema")
        if not isinstance(schema, Mapping):
            raise BadRequest(
                "must be an object (a JSON Schema)", "response_format.json_schema.schema"
            )
        _bounded(schema)
        return dict(schema)
    raise BadRequest("type must be text, json_object or json_schema", "response_format.type")


def _bounded(schema: Mapping[str, Any]) -> None:
    """Refuses a schema too big or too deep to be made into a grammar, as the worker
    refuses one it cannot convert (400 ``schema_unsupported``): past these bounds the
    conversion would blow the frame limit or the converter's recursion, a server error
    for what is the request's fault."""
    where = "response_format.json_schema.schema"
    stack: list[tuple[Any, int]] = [(schema, 1)]
    nodes = 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if depth > MAX_SCHEMA_DEPTH:
            raise BadRequest(
                f"a schema nested deeper than {MAX_SCHEMA_DEPTH} levels cannot be enforced",
                where,
                code="schema_unsupported",
            )
        if nodes > MAX_SCHEMA_NODES:
            break  # too big already: no need to walk the rest
        if isinstance(value, Mapping):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    size = MAX_SCHEMA_BYTES + 1 if nodes > MAX_SCHEMA_NODES else len(json.dumps(schema))
    if size > MAX_SCHEMA_BYTES:
        raise BadRequest(
            f"a schema over {MAX_SCHEMA_BYTES} bytes (or {MAX_SCHEMA_NODES} values) "
            "is too big to be made into a grammar here",
            where,
            code="schema_unsupported",
        )


def _number(value: Any, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise BadRequest(f"must be a number from {low:g} to {high:g}", name)
    return float(value)


def _integer(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(f"must be an integer from {low} to {high}", name)
    return value
