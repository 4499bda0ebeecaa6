"""OpenAI request bodies into Completions, and ModelErrors into OpenAI statuses."""

from __future__ import annotations

from typing import Any

import pytest

from controller.gateway import errors, requests
from controller.gateway.errors import BadRequest
from controller.llm.completion import Role
from controller.llm.errors import (
    BackendBusy,
    BackendRefused,
    BackendUnavailable,
    NoBackendLeft,
    SchemaUnsupported,
)

ROLES = {"smollm2": Role.BRAIN, "gemma": Role.EXECUTOR, "minilm": Role.EMBEDDER}
HI = [{"role": "user", "content": "hi"}]


def chat(body: dict[str, Any], headers: dict[str, str] | None = None) -> requests.Parsed:
    return requests.chat(body, headers or {}, ROLES)


def test_a_chat_request_becomes_a_completion() -> None:
    parsed = chat(
        {
            "model": "gemma",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                },
            ],
            "max_tokens": 9,
            "temperature": 0.5,
            "seed": 7,
            "stop": "END",
            "stream": True,
            "stream_options": {"include_usage": True},
            "user": "agent-1",
        },
        {"x-session-id": "agent-1"},
    )
    done = parsed.completion
    assert done.role is Role.EXECUTOR and parsed.model == "gemma" and parsed.stream
    assert [(m.role, m.content) for m in done.messages] == [("system", "be brief"), ("user", "ab")]
    assert done.budget.max_tokens == 9 and done.sampling.seed == 7
    assert done.sampling.stop == ("END",) and done.session == "open:agent-1"
    assert parsed.include_usage


def test_the_session_is_the_header_under_its_owner() -> None:
    parsed = requests.chat(
        {"messages": HI, "user": "u"}, {"x-session-id": "s-1"}, ROLES, owner="tA"
    )
    assert parsed.completion.session == "tA:s-1"
    assert parsed.completion.role is Role.BRAIN  # no model: the brain
    # ``user`` names an end user, not a session.
    assert chat({"messages": HI, "user": "u"}).completion.session is None


@pytest.mark.parametrize(
    ("format_", "schema"),
    [
        ({"type": "json_object"}, {"type": "object"}),
        (
            {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "array"}}},
            {"type": "array"},
        ),
        ({"type": "text"}, None),
    ],
)
def test_response_format_shapes(format_: dict[str, Any], schema: Any) -> None:
    assert chat({"messages": HI, "response_format": format_}).completion.schema == schema


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": HI, "n": 3}, "n"),
        ({"messages": HI, "logprobs": True}, "logprobs"),
        ({"messages": HI, "max_tokens": 0}, "max_tokens"),
        ({"messages": HI, "max_tokens": True}, "max_tokens"),
        ({"messages": HI, "temperature": "hot"}, "temperature"),
        ({"messages": HI, "n": True}, "n"),
        ({"messages": HI, "n": 1.0}, "n"),
        ({"messages": HI, "stop": ["a"] * 5}, "stop"),
        ({"messages": HI, "stop": ["a" * 257]}, "stop"),
        (
            {"messages": HI, "stream_options": {"include_usage": "no"}},
            "stream_options.include_usage",
        ),
        ({"messages": HI, "model": "minilm"}, "model"),
        ({"messages": HI, "response_format": {"type": "yaml"}}, "response_format.type"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content",
        ),
    ],
)
def test_what_cannot_be_done_is_refused_with_its_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequest) as caught:
        chat(body)
    assert caught.value.param == param and caught.value.status == 400


@pytest.mark.parametrize("session", ["x" * (requests.MAX_SESSION + 1), "a b"])
def test_a_bad_session_is_refused(session: str) -> None:
    with pytest.raises(BadRequest) as caught:
        chat({"messages": HI}, {"x-session-id": session})
    assert caught.value.param == "x-session-id"


def test_the_longest_session_fits_the_worker_under_any_owner() -> None:
    owner = "t" + "0" * 24  # as the app makes them
    parsed = requests.chat(
        {"messages": HI}, {"x-session-id": "s" * requests.MAX_SESSION}, ROLES, owner=owner
    )
    assert parsed.completion.session is not None
    assert len(parsed.completion.session) <= 128  # the worker's limit on a session id


def test_an_unknown_model_is_404() -> None:
    with pytest.raises(BadRequest) as caught:
        chat({"messages": HI, "model": "gpt-4o"})
    assert caught.value.status == 404


def test_completion_takes_one_prompt() -> None:
    assert requests.completion({"prompt": ["x"]}, {}, ROLES).completion.prompt == "x"
    with pytest.raises(BadRequest):
        requests.completion({"prompt": ["x", "y"]}, {}, ROLES)


def test_embedding_input() -> None:
    assert requests.embedding_input({"input": "a"}) == ["a"]
    with pytest.raises(BadRequest):
        requests.embedding_input({"input": [1, 2]})
    with pytest.raises(BadRequest):
        requests.embedding_input({"input": "a", "encoding_format": "hex"})
    assert requests.embedding_format({"encoding_format": "base64"}) == "base64"


@pytest.mark.parametrize(
    ("error", "status", "code", "retry"),
    [
        (BackendBusy("w", "full", delay=2.2), 429, "busy", "3"),
        (
            NoBackendLeft("brain", [BackendBusy("a", "x", 1.0), BackendBusy("b", "y", 4.0)]),
            429,
            "busy",
            "1",
        ),
        (NoBackendLeft("brain", [BackendUnavailable("a", "down")]), 503, "no_backend", None),
        (
            NoBackendLeft("brain", [SchemaUnsupported("a", "no grammar")]),
            400,
            "schema_unsupported",
            None,
        ),
        (SchemaUnsupported("a", "no grammar"), 400, "schema_unsupported", None),
        (BackendRefused("a", "too long"), 400, "refused", None),
        (BackendUnavailable("a", "down"), 503, "unavailable", None),
    ],
)
def test_model_errors_as_openai_answers(
    error: Any, status: int, code: str, retry: str | None
) -> None:
    reply = errors.for_model_error(error)
    assert reply.status_code == status
    assert reply.headers.get("retry-after") == retry
    import json

    assert json.loads(reply.body)["error"]["code"] == code


def test_a_server_side_failure_is_told_in_fixed_words() -> None:
    import json

    from controller.llm.supervisor import SupervisorError

    down = BackendUnavailable("local", "generate failed: KeyError at /opt/x.py:9 (internal)")
    for reply in (
        errors.for_model_error(down),
        errors.for_model_error(NoBackendLeft("brain", [down])),
    ):
        assert reply.status_code == 503
        assert "/opt/x.py" not in reply.body.decode() and "KeyError" not in reply.body.decode()
    assert "x.py" not in json.dumps(errors.stream_error(down))
    # Every backend refused for good: the first refusal's words, not the others' text.
    held = SupervisorError("worker", "another supervisor (pid 7) runs a worker on /run/w.sock")
    refused = NoBackendLeft("brain", [SchemaUnsupported("a", "no grammar"), held])
    reply = errors.for_model_error(refused)
    assert reply.status_code == 400
    message = json.loads(reply.body)["error"]["message"]
    assert "no grammar" in message and "/run/w.sock" not in message
    # The request's own faults keep their words: the client has to act on them.
    too_long = errors.for_model_error(BackendRefused("a", "prompt of 9000 tokens over 8192"))
    assert "9000 tokens" in json.loads(too_long.body)["error"]["message"]
