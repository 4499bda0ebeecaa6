"""Schema checking shared by the ``reports`` and ``notifications`` settings."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

from controller.model import ecma
from controller.reports.errors import FieldPath, SettingsError


@cache
def load_schema(package: str, name: str) -> Mapping[str, Any]:
    text = resources.files(package).joinpath(f"schemas/{name}").read_text(encoding="utf-8")
    loaded: Mapping[str, Any] = json.loads(text)
    return loaded


def check(section: str, schema: Mapping[str, Any], value: Any) -> None:
    """Raise SettingsError listing every place ``value`` breaks ``schema``."""
    validator = ecma.validator_class(schema)(schema)
    problems: list[tuple[FieldPath, str]] = []
    for error in validator.iter_errors(value):
        path: FieldPath = tuple(error.absolute_path)
        problems.append((path, _message(error)))
    if problems:
        raise SettingsError(section, problems)


def _message(error: jsonschema.ValidationError) -> str:
    """A message that never repeats the offending value: a webhook URL typed inline where a
    reference belongs is a secret, and must not reach a log."""
    v, expected = error.validator, error.validator_value
    if v == "additionalProperties" and isinstance(error.instance, Mapping):
        allowed = (
            sorted(error.schema.get("properties", {})) if isinstance(error.schema, dict) else []
        )
        extra = sorted(set(error.instance) - set(allowed))
        return f"unknown field(s) {', '.join(map(repr, extra))}; allowed: {', '.join(allowed)}"
    if v == "required":
        return str(error.message)  # names the missing key only
    if v == "type":
        kinds = expected if isinstance(expected, list) else [expected]
        return f"must be of type {' or '.join(map(str, kinds))}"
    if v == "enum":
        options: list[Any] = list(expected) if isinstance(expected, list) else [expected]
        return f"must be one of {', '.join(map(repr, options))}"
    if v == "const":
        return f"must be {expected!r}"
    if v == "pattern":
        return "is not valid here (see the documentation of this field)"
    if v in ("minLength", "maxLength"):
        return f"must be {'at least' if v == 'minLength' else 'at most'} {expected} characters"
    if v in ("minimum", "maximum"):
        return f"must be {'at least' if v == 'minimum' else 'at most'} {expected}"
    if v in ("minItems", "maxItems"):
        return f"must have {'at least' if v == 'minItems' else 'at most'} {expected} item(s)"
    if v in ("minProperties", "maxProperties"):
        schema = error.schema if isinstance(error.schema, dict) else {}
        if schema.get("maxProperties") == 1 and schema.get("minProperties") == 1:
            return f"give exactly one of {', '.join(sorted(schema.get('properties', {})))}"
        return f"must have {'at least' if v == 'minProperties' else 'at most'} {expected} field(s)"
    if v == "uniqueItems":
        return "must not repeat an item"
    if v in ("oneOf", "anyOf"):
        return "give exactly one of the documented forms"
    return f"does not match the schema ({v})"
