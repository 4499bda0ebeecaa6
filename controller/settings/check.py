"""The schema check every section of ``fazai.yaml`` goes through.

:func:`problems` validates a value against a section's JSON Schema and explains each
failure in one wording, as ``(field path, message)``; the config loader pins each to the
file's ``LINE:COL`` (with :mod:`controller.model.yamlsource`'s positions) and a section's
``from_config`` raises them as a :class:`~controller.errors.SettingsError` when it is
called on a value built in code. Messages never repeat a string value unless the schema
names its kind (``x-fazai-noun``, as durations and names do): a token pasted where its
reference belongs must not reach a log.

Schemas may refer to the shared duration by its id, ``{"$ref": "<durations.SCHEMA_ID>"}``:
:func:`validator` knows that resource.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
from referencing import Registry, Resource

from controller.errors import SettingsError
from controller.model import ecma, validate
from controller.settings import durations

FieldPath = tuple[str | int, ...]


@cache
def load_schema(package: str, name: str) -> Mapping[str, Any]:
    """``schemas/<name>`` of ``package``, parsed."""
    text = resources.files(package).joinpath(f"schemas/{name}").read_text(encoding="utf-8")
    loaded: Mapping[str, Any] = json.loads(text)
    return loaded


@cache
def _registry() -> Registry[Any]:
    resource: Resource[Any] = Resource.from_contents(dict(durations.schema()))
    registry: Registry[Any] = Registry().with_resource(durations.SCHEMA_ID, resource)
    return registry


def validator(schema: Mapping[str, Any]) -> jsonschema.protocols.Validator:
    """A validator of ``schema`` with ECMA-262 patterns and the shared resources."""
    made: jsonschema.protocols.Validator = ecma.validator_class(schema)(
        schema, registry=_registry()
    )
    return made


@cache
def _cached(schema_text: str) -> jsonschema.protocols.Validator:
    return validator(json.loads(schema_text))


def problems(schema: Mapping[str, Any], value: Any) -> list[tuple[FieldPath, str]]:
    """Every place ``value`` breaks ``schema``: (path inside the value, message), sorted
    by path, each once."""
    check = _cached(json.dumps(schema, sort_keys=True))
    found: list[tuple[FieldPath, str]] = []
    errors = sorted(check.iter_errors(value), key=lambda e: list(map(str, e.absolute_path)))
    for error in errors:
        for item in explain(error):
            if item not in found:
                found.append(item)
    return found


def duration(value: Any, at: FieldPath, problems: list[tuple[FieldPath, str]]) -> float:
    """``value`` in seconds; what the schema cannot refuse (YAML's ``.inf``) is added to
    ``problems`` at ``at`` (0 is returned meanwhile)."""
    try:
        return durations.parse(value)
    except ValueError as exc:
        problems.append((at, str(exc)))
        return 0.0


def check(section: str, schema: Mapping[str, Any], value: Any) -> None:
    """Raise SettingsError listing every place ``value`` breaks ``schema``."""
    found = problems(schema, value)
    if found:
        raise SettingsError(section, found)


def _forms(alternatives: Any) -> str:
    """``env or file`` when each alternative requires one field; else a generic phrase."""
    names: list[str] = []
    for option in alternatives if isinstance(alternatives, list) else []:
        required = option.get("required") if isinstance(option, Mapping) else None
        if not (isinstance(required, list) and len(required) == 1):
            return "the documented forms"
        names.append(str(required[0]))
    return " or ".join(names) if names else "the documented forms"


def explain(error: jsonschema.ValidationError) -> Iterator[tuple[FieldPath, str]]:
    """One failure in plain words (the documents' wording where it applies)."""
    path: FieldPath = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    rule, expected = error.validator, error.validator_value
    if rule == "pattern":
        noun = schema.get("x-fazai-noun")
        if noun and isinstance(error.instance, str) and len(error.instance) <= 80:
            yield path, f"{error.instance!r} is not a valid {noun}"
        else:
            yield path, f"is not a valid {noun or 'value here'} (see this field's documentation)"
        return
    if rule in ("oneOf", "anyOf"):
        yield path, f"give exactly one of {_forms(expected)}"
        return
    if rule in ("minProperties", "maxProperties"):
        if schema.get("maxProperties") == 1 and schema.get("minProperties") == 1:
            yield path, f"give exactly one of {', '.join(sorted(schema.get('properties', {})))}"
        else:
            words = "at least" if rule == "minProperties" else "at most"
            yield path, f"must have {words} {expected} field(s)"
        return
    if rule in ("minItems", "maxItems"):
        words = "at least" if rule == "minItems" else "at most"
        yield path, f"must have {words} {expected} item(s)"
        return
    if rule == "minLength":
        yield path, "must not be empty" if expected == 1 else f"must be {expected}+ characters"
        return
    if rule == "uniqueItems":
        yield path, "must not repeat an item"
        return
    if rule in ("additionalProperties", "propertyNames", "required", "type", "enum", "const"):
        yield from validate._explain(error, "")
        return
    if rule in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "maxLength"):
        yield from validate._explain(error, "")
        return
    yield path, f"does not match the schema ({rule})"
