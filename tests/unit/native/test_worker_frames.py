"""Request frames: a bad one is refused naming its field, and never repeats a prompt."""

from __future__ import annotations

from typing import Any

import pytest
from fazai_native import config, frames
from fazai_native.protocol import ProtocolError

PROMPT = "the secret plan is 7f3a"


def generate(**fields: Any) -> dict[str, Any]:
    return {"op": "generate", "id": "1", "model": "brain", "prompt": PROMPT, **fields}


@pytest.mark.parametrize(
    ("frame", "field"),
    [
        (generate(model=""), "model"),
        (generate(model=None), "model"),
        (generate(messages=[{"role": "user", "content": "x"}]), "prompt"),
        ({"op": "generate", "id": "1", "model": "brain"}, "prompt"),
        (generate(prompt=3), "prompt"),
        (generate(session=""), "session"),
        (generate(session="s" * 129), "session"),
        (generate(schema=[1]), "schema"),
        (generate(deadline=0), "deadline"),
        (generate(deadline=True), "deadline"),
        (generate(params={"temperature": "hot"}), "params.temperature"),
        (generate(params={"max_tokens": 0}), "params.max_tokens"),
        (generate(params={"nope": 1}), "params"),
        (generate(colour="red"), "colour"),
    ],
)
def test_a_bad_generate_names_its_field(frame: dict[str, Any], field: str) -> None:
    with pytest.raises(ProtocolError) as refused:
        frames.generate_request(frame)
    assert refused.value.field == field
    assert PROMPT not in str(refused.value)


@pytest.mark.parametrize(
    ("messages", "field"),
    [
        ([], "messages"),
        ("hi", "messages"),
        ([{"role": "tool", "content": "x"}], "messages[0].role"),
        ([{"role": "user", "content": 1}], "messages[0].content"),
        ([{"role": "user", "content": "x", "name": "y"}], "messages[0]"),
    ],
)
def test_bad_messages_name_the_message(messages: Any, field: str) -> None:
    frame = {"op": "generate", "id": "1", "model": "brain", "messages": messages}
    with pytest.raises(ProtocolError) as refused:
        frames.generate_request(frame)
    assert refused.value.field == field


def test_a_good_generate_becomes_a_request_with_its_deadline() -> None:
    request, deadline = frames.generate_request(
        generate(session="s1", params={"max_tokens": 5, "stop": "\n"}, deadline=2.5)
    )
    assert request.prompt == PROMPT
    assert request.session == "s1"
    assert request.sampling.max_tokens == 5
    assert request.sampling.stop == ("\n",)
    assert deadline == 2.5
    assert request.deadline is not None


@pytest.mark.parametrize(
    ("frame", "field"),
    [
        ({"op": "embed", "id": "1", "model": "m", "texts": []}, "texts"),
        ({"op": "embed", "id": "1", "model": "m", "texts": ["a", 2]}, "texts[1]"),
        ({"op": "embed", "id": "1", "model": "m", "texts": ["a"] * 257}, "texts"),
    ],
)
def test_a_bad_embed_names_its_field(frame: dict[str, Any], field: str) -> None:
    with pytest.raises(ProtocolError) as refused:
        frames.embed_request(frame)
    assert refused.value.field == field


def test_a_load_takes_a_name_or_a_spec() -> None:
    assert frames.load_request({"op": "load", "id": "1", "model": "m"}) == ("m", None)
    name, spec = frames.load_request(
        {"op": "load", "id": "1", "spec": {"name": "m", "path": "/x.gguf", "n_ctx": 512}}
    )
    assert name is None and spec is not None and spec.n_ctx == 512
    with pytest.raises(ProtocolError, match="exactly one") as both:
        frames.load_request({"op": "load", "id": "1", "model": "m", "spec": {}})
    assert both.value.field == "model"
    with pytest.raises(ProtocolError) as bad:
        frames.load_request(
            {"op": "load", "id": "1", "spec": {"name": "m", "path": "/x", "n_ctx": 1}}
        )
    assert bad.value.field == "spec.n_ctx"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "JSON object"),
        ({"memory_budget": -1}, "memory_budget"),
        ({"memory_budget": True}, "memory_budget"),
        ({"models": {}}, "models"),
        ({"models": [{"name": "a"}]}, "models[0]: spec.path"),
        ({"models": [{"name": "a", "path": "/x", "colour": 1}]}, "models[0]"),
        (
            {"models": [{"name": "a", "path": "/x"}, {"name": "a", "path": "/y"}]},
            "declared twice",
        ),
        ({"budget": 1}, "unknown field"),
    ],
)
def test_a_bad_config_names_its_field(value: Any, message: str) -> None:
    with pytest.raises(config.ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config.parse(value)


def test_a_config_reads_specs_and_budget() -> None:
    parsed = config.parse(
        {"memory_budget": 1 << 30, "models": [{"name": "a", "path": "embedded:smollm2-135m"}]}
    )
    assert parsed.memory_budget == 1 << 30
    assert parsed.models[0].path == "embedded:smollm2-135m"
