"""Schemas into grammars: what llama-cpp-python's converter would loosen is refused, what
it enforces constrains a real model's output, and every answer is validated after."""

from __future__ import annotations

import ctypes
import json
import math
import threading
from collections.abc import Iterator
from typing import Any

import jsonschema
import llama_cpp
import pytest
from fazai_native.engine import Engine, InvalidOutput
from fazai_native.grammar import (
    MAX_DEPTH,
    MAX_REPEAT,
    SchemaUnsupported,
    check_output,
    grammar_for,
)
from fazai_native.protocol import Sampling
from fazai_native.shipped import smollm2_path
from fazai_native.types import ChatMessage, GenerateRequest, ModelSpec
from llama_cpp.llama_grammar import json_schema_to_gbnf

ACTION = {
    "type": "object",
    "properties": {
        "action": {"enum": ["open_port", "close_port", "noop"]},
        "port": {"type": "integer"},
        "reason": {"type": "string", "maxLength": 40},
        "when": {"type": "string", "format": "date"},
        "hosts": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 3},
    },
    "required": ["action", "port", "reason"],
    "additionalProperties": False,
}


def deep_list(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


# Each: a schema the converter would loosen or get wrong, and what the refusal names.
REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"not": {"type": "string"}}, "'not'"),
    ({"type": "object", "if": {}, "then": {}, "else": {}}, "'if'"),
    ({"type": "object", "patternProperties": {"^a": {"type": "string"}}}, "'patternProperties'"),
    (
        {"type": "object", "properties": {"a": {"type": "string"}}, "dependentSchemas": {}},
        "'dependentSchemas'",
    ),
    (
        {"type": "object", "properties": {"a": {"type": "string"}}, "dependentRequired": {}},
        "'dependentRequired'",
    ),
    ({"type": "object", "propertyNames": {"maxLength": 3}}, "'propertyNames'"),
    ({"type": "object", "minProperties": 1}, "'minProperties'"),
    (
        {"type": "object", "properties": {"a": {"type": "string"}}, "unevaluatedProperties": False},
        "'unevaluatedProperties'",
    ),
    ({"type": "string", "format": "email"}, "'email' is not enforced"),
    ({"type": "string", "format": "ipv4"}, "'ipv4' is not enforced"),
    ({"type": "string", "format": "date", "maxLength": 4}, "format drops 'maxLength'"),
    ({"$ref": "https://example.com/schema.json"}, "only local"),
    ({"$ref": "other.json#/a"}, "only local"),
    ({"$ref": "#/$defs/missing", "$defs": {}}, "does not resolve"),
    (
        {"$ref": "#/$defs/a", "type": "object", "$defs": {"a": {"type": "string"}}},
        "drops its sibling 'type'",
    ),
    (
        {"$ref": "#/$defs/string", "$defs": {"string": {"type": "integer"}}},
        "a definition named 'string'",
    ),
    ({"allOf": [{"type": "string"}, {"maxLength": 3}]}, "'allOf'"),
    (
        {"type": "object", "properties": {"a": {"type": "string"}}, "anyOf": [{"required": ["a"]}]},
        "anyOf drops its sibling",
    ),
    ({"anyOf": [{"type": "string"}], "oneOf": [{"type": "integer"}]}, "anyOf and oneOf together"),
    ({"type": ["string", "null"], "maxLength": 5}, "a list of types drops 'maxLength'"),
    ({"type": "integer", "minimum": 0}, "'minimum'"),
    ({"type": "number", "exclusiveMaximum": 5}, "'exclusiveMaximum'"),
    ({"type": "integer", "multipleOf": 2}, "'multipleOf'"),
    ({"type": "array", "items": {"type": "string"}, "uniqueItems": True}, "'uniqueItems'"),
    ({"type": "array", "contains": {"type": "string"}}, "'contains'"),
    ({"type": "array", "maxItems": 2}, "maxItems without items"),
    (
        {"type": "array", "prefixItems": [{"type": "string"}], "items": {"type": "integer"}},
        "prefixItems with items",
    ),
    ({"type": "array", "prefixItems": [{"type": "string"}], "minItems": 1}, "on a tuple"),
    ({"type": "array", "items": {}}, "an empty schema"),
    ({"maxLength": 5}, 'needs "type": "string"'),
    ({"type": "string", "pattern": "^a.c$"}, "'.'"),
    ({"type": "string", "pattern": "^\\d+$"}, "escape"),
    ({"type": "string", "pattern": "^[^a]+$"}, "character class"),
    ({"type": "string", "pattern": "^(?=a)a$"}, "'(?' groups"),
    ({"type": "string", "pattern": "^a(?i:b)$"}, "'(?' groups"),
    ({"type": "string", "pattern": "^(a)\\1$"}, "escape '\\\\1'"),
    ({"type": "string", "pattern": "^a\\b$"}, "escape '\\\\b'"),
    ({"type": "string", "pattern": "abc"}, "anchored"),
    ({"type": "string", "pattern": "^a+?$"}, "lazy or dangling"),
    ({"type": "string", "pattern": "^a$", "maxLength": 3}, "pattern drops 'maxLength'"),
    ({"enum": ["a\\b"]}, "does not escape correctly"),
    ({"const": 'say "hi"'}, "does not escape correctly"),
    ({"enum": ["line\nbreak"]}, "does not escape correctly"),
    ({"type": "object", "properties": {"a\tb": {"type": "string"}}}, "does not escape correctly"),
    ({"type": "object", "properties": {"a": True}}, "boolean"),
    (
        {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["b"]},
        "'b' is not in properties",
    ),
    ({"type": "object", "nullable": True}, "'nullable'"),
    ({"type": "strng"}, "not a valid JSON Schema at type"),
    # Sizes llama.cpp's grammar parser cannot take (20000 overflowed its stack).
    ({"type": "string", "maxLength": 20000}, "20000 is over 1000"),
    ({"type": "array", "items": {"type": "integer"}, "maxItems": 1001}, "1001 is over 1000"),
    ({"type": "string", "pattern": "^a{1001}$"}, "{1001} at 1 is over 1000"),
    ({"type": "string", "pattern": "^(ab){3}$"}, "one character or class"),
    ({"type": "string", "pattern": "^a{2}{3}$"}, "is not a 'regex'"),
    ({"type": "string", "pattern": "^" + "(" * 40 + "a" + ")" * 40 + "$"}, "nested over 32"),
    ({"type": "string", "pattern": "^" + "a" * 600 + "$"}, "over 512"),
    ({"type": "string", "pattern": "^[a-z]{5,2}$"}, "is not a 'regex'"),
    ({"const": deep_list(40)}, "literal nested"),
    ({"enum": [f"value-{i:05d}" for i in range(8000)]}, "bytes, over 65536"),
    (
        {
            "type": "object",
            "properties": {f"p{i}": {"type": "string", "maxLength": 1000} for i in range(40)},
        },
        "its grammar is",
    ),
    # Nothing could satisfy these: the model would be held to an impossible shape.
    ({"type": "string", "minLength": 5, "maxLength": 2}, "no value fits"),
    ({"type": "array", "items": {"type": "integer"}, "minItems": 3, "maxItems": 1}, "no value"),
    ({"type": "string", "enum": ["a", 1]}, "refused by the rest of its schema"),
    ({"type": "string", "maxLength": "ten"}, "not a valid JSON Schema at maxLength"),
    ({"$id": "https://example.com/x", "type": "string"}, "'$id'"),
]


@pytest.mark.parametrize(("schema", "named"), REFUSED, ids=[n for _, n in REFUSED])
def test_a_construct_the_grammar_would_not_enforce_is_refused(
    schema: dict[str, Any], named: str
) -> None:
    with pytest.raises(SchemaUnsupported) as caught:
        grammar_for(schema)
    assert named in str(caught.value)


def nested(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    return schema


def test_subschemas_nested_deeper_than_the_cap_are_refused_not_a_recursion_error() -> None:
    grammar_for(nested(MAX_DEPTH - 1))
    with pytest.raises(SchemaUnsupported, match="nested more than 32 deep"):
        grammar_for(nested(MAX_DEPTH + 1))
    with pytest.raises(SchemaUnsupported):
        grammar_for(nested(5000))  # past Python's own recursion limit


ACCEPTED: list[dict[str, Any]] = [
    ACTION,
    {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,20}(:[0-9]{1,5})?$"},
    {"type": "string", "format": "date-time"},
    {"type": "string", "format": "uuid"},
    {
        "oneOf": [
            {"type": "object", "properties": {"kind": {"const": "a"}}, "required": ["kind"]},
            {"type": "object", "properties": {"kind": {"const": "b"}}, "required": ["kind"]},
        ]
    },
    {"type": ["string", "null"]},
    {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]},
    {
        "$defs": {"host": {"type": "string", "maxLength": 10}},
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/host"}},
        "required": ["a"],
    },
    {"title": "anything described", "description": "an object", "type": "object"},
    {"enum": ["héllo", 1, None, {"nested": [True]}]},
]


@pytest.mark.parametrize("schema", ACCEPTED, ids=range(len(ACCEPTED)))
def test_a_schema_within_the_enforced_set_makes_a_grammar(schema: dict[str, Any]) -> None:
    assert "root ::=" in grammar_for(schema)._grammar


def test_check_output_says_why_an_answer_is_refused() -> None:
    assert check_output(ACTION, '{"action": "noop", "port": 1, "reason": "x"}') is None
    assert "not JSON" in (check_output(ACTION, '{"action": "noop",') or "")
    assert "at port" in (
        check_output(ACTION, '{"action": "noop", "port": "1", "reason": "x"}') or ""
    )
    two = {"oneOf": [{"type": "integer"}, {"type": "number"}]}
    assert check_output(two, "3") is not None  # both match: oneOf refuses it
    assert check_output({"type": "string", "format": "date"}, '"2026-02-31"') is not None
    assert check_output(ACTION, '{"action": "noop", "port": 1, "reason": "a\nb"}') is not None


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    loaded = Engine(ModelSpec(name="smol", path=smollm2_path(), n_ctx=512, n_threads=1))
    yield loaded
    loaded.close()


def test_the_model_answers_valid_json_for_the_schema(engine: Engine) -> None:
    messages = (ChatMessage("user", "Open port 443 for the web server. Answer in JSON."),)
    pieces: list[str] = []
    result = engine.generate(
        GenerateRequest(
            model="smol", messages=messages, schema=ACTION, sampling=Sampling(max_tokens=120)
        ),
        abort=threading.Event(),
        emit=lambda text, index: pieces.append(text),
    )
    assert result.finish_reason == "stop"
    value = json.loads(result.text)
    jsonschema.validate(value, ACTION)
    assert "".join(pieces) == result.text


def test_a_finished_answer_the_schema_refuses_is_reported_not_passed_on(engine: Engine) -> None:
    # The stop string cuts the JSON short: the grammar was followed, the answer is not valid.
    request = GenerateRequest(
        model="smol", prompt="JSON:", schema=ACTION, sampling=Sampling(max_tokens=60, stop=(":",))
    )
    with pytest.raises(InvalidOutput) as caught:
        engine.generate(request, abort=threading.Event(), emit=lambda text, index: None)
    assert caught.value.result.finish_reason == "stop"
    assert "not JSON" in caught.value.reason


def allowed(engine: Engine, grammar: str, prefix: str, candidates: list[str]) -> list[bool]:
    """Which single-token continuations the grammar admits after ``prefix``, asked of
    llama.cpp's own grammar sampler."""
    llama = engine._slots[0].llama
    vocab = llama._model.vocab
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
    assert sampler
    try:
        for token in llama.tokenize(prefix.encode(), add_bos=False, special=False):
            llama_cpp.llama_sampler_accept(sampler, token)
        ids = []
        for text in candidates:
            tokens = llama.tokenize(text.encode(), add_bos=False, special=False)
            assert len(tokens) == 1, text
            ids.append(tokens[0])
        data = (llama_cpp.llama_token_data * len(ids))(
            *(llama_cpp.llama_token_data(i, 0.0, 0.0) for i in ids)
        )
        array = llama_cpp.llama_token_data_array(
            data=data, size=len(ids), selected=-1, sorted=False
        )
        llama_cpp.llama_sampler_apply(sampler, ctypes.byref(array))
        return [not math.isinf(data[i].logit) for i in range(len(ids))]
    finally:
        llama_cpp.llama_sampler_free(sampler)


def test_no_raw_newline_gets_into_a_string(engine: Engine) -> None:
    schema = {"type": "object", "properties": {"note": {"type": "string"}}, "required": ["note"]}
    prefix = '{"note": "a'
    theirs = json_schema_to_gbnf(json.dumps(schema))
    assert allowed(engine, theirs, prefix, ["\n", "b"]) == [True, True]  # the converter's
    ours = grammar_for(schema)._grammar
    assert allowed(engine, ours, prefix, ["\n", "\t", "b", "\\"]) == [False, False, True, True]


def test_the_largest_allowed_repetitions_still_parse_in_llama_cpp(engine: Engine) -> None:
    for schema in (
        {"type": "string", "minLength": MAX_REPEAT, "maxLength": MAX_REPEAT},
        {"type": "array", "items": {"type": "integer"}, "maxItems": MAX_REPEAT},
        {"type": "string", "pattern": "^[a-z]{0,1000}$"},
        {
            "type": "object",
            "properties": {f"p{i}": {"type": "string", "maxLength": 1000} for i in range(10)},
        },
    ):
        engine._check_grammar(grammar_for(schema))  # SchemaUnsupported if llama.cpp refused
