"""The schema check every section of ``fazai.yaml`` goes through.

:func:`problems` validates a value against a section's JSON Schema and explains each
failure in one wording, as ``(field path, message)``; the config loader pins each to the
file's ``LINE:COL`` (with :mod:`controller.model.yamlsource`'s positions) and a section's
``from_config`` raises them as a :class:`~controller.errors.SettingsError` when it is
called on a value built in code. Messages never repeat a string value unless the schema
names its kind (``x-fazai-noun``, as durations and names do): a token pasted where its
reference belongs must not reach a log.

Schemas may refer to the shared duration by its id, ``{"$ref": "<durations.SCHEMA_ID>"}``:
:func:`validator` knows that resource. Beside the ``$ref`` a key states its own range
with the standard ``minimum``, ``exclusiveMinimum`` and ``maximum`` in seconds, which
:func:`validator` applies to a duration string (``"2h"``) as to a number, so the schema
check refuses ``headTimeout: 2h`` with its position; ``"x-fazai-off": true`` lets ``0``
("off") through a minimum.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from controller.errors import SettingsError
from controller.model import ecma, validate
from controller.model.yamlsource import FloatNumeral, Numeral
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
    # Without its "$schema": jsonschema would validate a resource that names its dialect
    # with that dialect's stock class, dropping the ECMA patterns and duration keywords.
    contents = {k: v for k, v in durations.schema().items() if k != "$schema"}
    resource: Resource[Any] = Resource.from_contents(contents, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(durations.SCHEMA_ID, resource)
    return registry


def validator(schema: Mapping[str, Any]) -> jsonschema.protocols.Validator:
    """A validator of ``schema`` with ECMA-262 patterns, the shared resources, and bounds
    that read a duration string as its seconds."""
    made: jsonschema.protocols.Validator = _with_duration_bounds(ecma.validator_class(schema))(
        schema, registry=_registry()
    )
    return made


def _seconds(instance: Any) -> float | None:
    """A number's value, or a duration string's seconds; None for anything else (a string
    that is no duration is the pattern's to report)."""
    if isinstance(instance, bool):
        return None
    if isinstance(instance, int | float):
        try:
            return float(instance)
        except OverflowError:  # an int beyond any float: above every maximum
            return math.inf
    if isinstance(instance, str):
        try:
            return durations.parse(instance, maximum=None)
        except ValueError:
            return None
    return None


def _bound(name: str, holds: Any) -> Any:
    def check(
        validator: Any, bound: float, instance: Any, schema: Mapping[str, Any]
    ) -> Iterator[jsonschema.ValidationError]:
        seconds = _seconds(instance)
        if seconds is None or holds(seconds, bound):
            return
        if seconds == 0 and schema.get("x-fazai-off") and name != "maximum":
            return  # 0 turns the setting off
        yield jsonschema.ValidationError(f"{name} {bound}")

    return check


def _decimal(
    validator: Any, wanted: bool, instance: Any, schema: Mapping[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    if wanted and isinstance(instance, Numeral | FloatNumeral):
        yield jsonschema.ValidationError("not written in decimal")


@cache
def _with_duration_bounds(cls: Any) -> Any:
    bounds = {
        "minimum": _bound("minimum", lambda v, b: v >= b),
        "exclusiveMinimum": _bound("exclusiveMinimum", lambda v, b: v > b),
        "maximum": _bound("maximum", lambda v, b: v <= b),
        # fazai.yaml's reader marks 1:30, 0x10 and 010 (controller.model.yamlsource).
        "x-fazai-decimal": _decimal,
    }
    return jsonschema.validators.extend(cls, bounds)  # type: ignore[no-untyped-call]


_RANGE_RULES = ("minimum", "exclusiveMinimum", "maximum")
_NOT_DECIMAL = (
    "write a duration in decimal seconds or with units (90, 1m30s): unquoted, YAML reads "
    "1:30 as 90, 0x10 as 16 and 010 as 8"
)


def _is_duration(schema: Mapping[str, Any]) -> bool:
    ref = schema.get("$ref")
    return schema.get("$id") == durations.SCHEMA_ID or (
        isinstance(ref, str) and (ref == durations.SCHEMA_ID or ref.endswith("/duration"))
    )


def _duration_range(schema: Mapping[str, Any]) -> str:
    """``must be more than 0 and at most 1h``, from a duration key's bounds."""
    words = []
    if "exclusiveMinimum" in schema:
        words.append(f"more than {durations.format_seconds(schema['exclusiveMinimum'])}")
    elif schema.get("minimum"):
        words.append(f"at least {durations.format_seconds(schema['minimum'])}")
    largest = schema.get("maximum", durations.MAX_SECONDS)
    words.append(f"at most {durations.format_seconds(largest)}")
    off = " (or 0, which turns it off)" if schema.get("x-fazai-off") else ""
    return "must be " + " and ".join(words) + off


_GRAMMAR_RANGE = _duration_range(
    {"minimum": 0, "maximum": durations.MAX_SECONDS}
)  # what the duration schema's own bounds say


@cache
def _cached(schema_text: str) -> jsonschema.protocols.Validator:
    return validator(json.loads(schema_text))


def problems(schema: Mapping[str, Any], value: Any) -> list[tuple[FieldPath, str]]:
    """Every place ``value`` breaks ``schema``: (path inside the value, message), sorted
    by path, each once."""
    check = _cached(json.dumps(schema, sort_keys=True))
    return explain_all(check.iter_errors(value))


def explain_all(errors: Iterable[jsonschema.ValidationError]) -> list[tuple[FieldPath, str]]:
    """Every error explained, sorted by path, each once. A duration above a key's own
    maximum also breaks the grammar's 365 days: only the key's range is said."""
    found: list[tuple[FieldPath, str]] = []
    ranged: set[FieldPath] = set()
    for error in sorted(errors, key=lambda e: list(map(str, e.absolute_path))):
        for path, message in explain(error):
            if message == _GRAMMAR_RANGE and path in ranged:
                continue
            if message.startswith("must be ") and error.validator in _RANGE_RULES:
                if message != _GRAMMAR_RANGE:
                    found = [(p, m) for p, m in found if (p, m) != (path, _GRAMMAR_RANGE)]
                ranged.add(path)
            if (path, message) not in found:
                found.append((path, message))
    # A number not written in decimal is not the number meant: its range says nothing.
    misread = {path for path, message in found if message == _NOT_DECIMAL}
    return [(p, m) for p, m in found if p not in misread or m == _NOT_DECIMAL]


def duration(value: Any, at: FieldPath, problems: list[tuple[FieldPath, str]]) -> float:
    """``value`` in seconds; what the schema cannot refuse (YAML's ``.inf``) is added to
    ``problems`` at ``at`` (0 is returned meanwhile)."""
    try:
        return durations.parse(value)
    except ValueError as exc:
        problems.append((at, str(exc)))
        return 0.0


def check(section: str, schema: Mapping[str, Any], value: Any, file: str = "") -> None:
    """Raise SettingsError listing every place ``value`` breaks ``schema`` (of ``file``,
    when the caller knows it)."""
    found = problems(schema, value)
    if found:
        raise SettingsError(section, found, file)


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
    if rule == "x-fazai-decimal":
        yield path, _NOT_DECIMAL
        return
    if rule in _RANGE_RULES and (_is_duration(schema) or isinstance(error.instance, str)):
        yield path, _duration_range(schema)  # never the value: it may be a misplaced secret
        return
    if rule == "pattern":
        noun = schema.get("x-fazai-noun")
        quoted = schema.get("x-fazai-quote", True)
        if noun and quoted and isinstance(error.instance, str) and len(error.instance) <= 80:
            yield path, f"{error.instance!r} is not a valid {noun}"
        elif noun:  # a duration: never echoed, a secret may have been pasted there
            yield path, f"is not a valid {noun}"
        else:
            yield path, "is not a valid value here (see this field's documentation)"
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
    if rule in ("enum", "const") and not schema.get("x-fazai-noun"):
        # Not the value: a secret pasted into the wrong field must not reach a log.
        if rule == "const":
            yield path, f"must be {expected!r}"
        else:
            choices = expected if isinstance(expected, list) else [expected]
            yield path, f"must be one of: {', '.join(map(str, choices))}"
        return
    if rule in ("additionalProperties", "propertyNames", "required", "type", "enum", "const"):
        yield from validate._explain(error, "")
        return
    if rule in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "maxLength"):
        yield from validate._explain(error, "")
        return
    yield path, f"does not match the schema ({rule})"
