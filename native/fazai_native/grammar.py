"""JSON Schema to a llama.cpp grammar, refusing what the grammar would not enforce.

llama-cpp-python's converter (``llama_cpp.llama_grammar.SchemaConverter``, 0.3.36) turns
a schema into GBNF by recognising a handful of shapes and ignoring every keyword it does
not know: ``not``, ``if``/``then``/``else``, ``minimum``, ``patternProperties``,
``uniqueItems``, most ``format`` values and many more simply vanish, and what is left is a
looser grammar that the model then follows "successfully". Read from its ``visit``:

- ``$ref``: only local ``#/...`` pointers; its sibling keywords are dropped; a target is
  looked up by its last path segment among rule names, so a definition named like a
  built-in rule (``string``) or like another definition resolves to the wrong rule.
- ``anyOf``/``oneOf``: alternatives, siblings dropped (``oneOf``'s "exactly one" is not
  enforced: the answer is validated after); both at once: ``anyOf`` is dropped.
- ``type`` as a list: a union of bare types, every other keyword dropped.
- ``allOf``: merges only the parts' ``properties``, all made required; anything else in
  the parts (a string's ``maxLength``, a part's own ``required``) is lost.
- objects: ``properties``, ``required``, ``additionalProperties``; a ``required`` name
  outside ``properties`` is ignored.
- arrays: ``items`` (a schema or a tuple), ``prefixItems`` (ignored when ``items`` is
  there too), ``minItems``/``maxItems`` only with a single ``items`` schema.
- strings: ``pattern`` (a regex subset; wins over every other string keyword), the
  formats ``date``, ``time``, ``date-time``, ``uuid`` (and then no length),
  ``minLength``/``maxLength`` only with ``"type": "string"``.
- literals (``const``, ``enum`` and property names) are written as ``json.dumps`` text
  with only ``"`` and newlines escaped again for GBNF: a backslash, a quote or a control
  character in them comes out wrong.
- the string character rule admits raw control characters (a newline inside a string:
  not JSON, and it would break a one-JSON-per-line frame): replaced here.

So :func:`grammar_for` walks the schema first and raises :class:`SchemaUnsupported`
naming the first construct outside that set; every finished answer is still checked
against the schema with jsonschema (:func:`check_output`), since a grammar cannot say
everything a schema does (``oneOf``, real dates).

Sizes are bounded before llama.cpp sees anything, because its grammar parser does not
bound itself: a repetition becomes nested optional groups parsed by recursion, and a
``maxLength`` of 20000 overflows the worker's stack (a segfault, measured); from about
1200 it refuses with "exceeds sane defaults". So every count (``minLength``,
``maxLength``, ``minItems``, ``maxItems``, a pattern's ``{m,n}``) is at most
:data:`MAX_REPEAT`, a pattern's ``{m,n}`` applies to one character or class (a group's
would multiply), nesting is at most :data:`MAX_DEPTH`, the schema's JSON at most
:data:`MAX_SCHEMA_BYTES` and the grammar made from it at most :data:`MAX_GRAMMAR_BYTES`.
A schema that is not valid JSON Schema, or that no value could satisfy (``minItems``
over ``maxItems``, an ``enum`` value the rest of its schema refuses), is refused too:
the model would be held to a shape no answer can have."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import jsonschema
from llama_cpp.llama_grammar import RESERVED_NAMES, LlamaGrammar, json_schema_to_gbnf

__all__ = [
    "MAX_DEPTH",
    "MAX_GRAMMAR_BYTES",
    "MAX_REPEAT",
    "MAX_SCHEMA_BYTES",
    "SchemaUnsupported",
    "check_output",
    "grammar_for",
]

MAX_REPEAT = 1000  # llama.cpp's parser refuses from ~1200 and overflows its stack later
MAX_DEPTH = 32  # nested subschemas, and a pattern's nested groups
MAX_PATTERN = 512  # characters of one pattern
MAX_SCHEMA_BYTES = 64 * 1024
MAX_GRAMMAR_BYTES = 256 * 1024


class SchemaUnsupported(Exception):
    """The schema holds a construct the grammar cannot enforce (the message names it and
    where it is)."""


ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "$comment",
        "deprecated",
        "readOnly",
        "writeOnly",
        "$schema",
    }
)
DEFINITIONS = ("$defs", "definitions")
STRUCTURE = frozenset(
    {
        "type",
        "$ref",
        "anyOf",
        "oneOf",
        "const",
        "enum",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "pattern",
        "format",
        "minLength",
        "maxLength",
        *DEFINITIONS,
    }
)
TYPES = frozenset({"string", "number", "integer", "boolean", "null", "object", "array"})
FORMATS = frozenset(
    {"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4", "uuid5"}
)
STRING_KEYWORDS = frozenset({"pattern", "format", "minLength", "maxLength"})

# The control characters, quote and backslash stay out of a string's characters: JSON
# escapes them, and the converter's rule let raw ones through.
SAFE_CHAR_RULE = (
    r'char ::= [^"\\\x00-\x1F\x7F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] '
    r"[0-9a-fA-F] [0-9a-fA-F])"
)
# A pattern's own characters: what needs no JSON escape and means itself in both regex and
# GBNF. Refused besides: ".", "\d"-style classes, negated classes, lookarounds, anchors
# inside, backslashes other than before a regex operator.
_PATTERN_LITERAL = re.compile(r"[A-Za-z0-9 _\-:/@,=%~#!&';<>]")
_PATTERN_CLASS = re.compile(r"\[([A-Za-z0-9 _\-:/@,=%~#!&';<>.+*?(){}|$]+)\]")
_PATTERN_QUANTIFIER = re.compile(r"\{\d+(,\d*)?\}")


def grammar_for(schema: Mapping[str, Any]) -> LlamaGrammar:
    """A grammar that admits only JSON text valid for ``schema`` as far as a grammar can
    say it; SchemaUnsupported for anything it would have loosened or got wrong."""
    if not isinstance(schema, Mapping):
        raise SchemaUnsupported("the schema must be an object")
    try:
        size = len(json.dumps(schema))
    except (TypeError, ValueError, RecursionError) as exc:
        raise SchemaUnsupported(f"the schema is not JSON: {exc}") from exc
    if size > MAX_SCHEMA_BYTES:
        raise SchemaUnsupported(f"the schema is {size} bytes, over {MAX_SCHEMA_BYTES}")
    _check_schema(schema)
    cleaned = _Walker(schema).walk(schema, "#")
    try:
        gbnf = json_schema_to_gbnf(json.dumps(cleaned))
    except (AssertionError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SchemaUnsupported(f"the grammar converter refused it: {exc}") from exc
    if len(gbnf) > MAX_GRAMMAR_BYTES:
        raise SchemaUnsupported(
            f"its grammar is {len(gbnf)} bytes, over {MAX_GRAMMAR_BYTES}: fewer or shorter "
            "repetitions, please"
        )
    lines = [SAFE_CHAR_RULE if line.startswith("char ::= ") else line for line in gbnf.splitlines()]
    return LlamaGrammar.from_string("\n".join(lines), verbose=False)


def _check_schema(schema: Mapping[str, Any]) -> None:
    """Refuse what is not JSON Schema at all (``"maxLength": "ten"``): the walker's
    checks assume the keywords' own types."""
    try:
        validator_class = jsonschema.validators.validator_for(schema)
        validator_class.check_schema(dict(schema))
    except jsonschema.exceptions.SchemaError as exc:
        where = "/".join(str(part) for part in exc.absolute_path) or "(root)"
        raise SchemaUnsupported(f"not a valid JSON Schema at {where}: {exc.message}") from exc
    except (jsonschema.exceptions.UnknownType, RecursionError) as exc:
        raise SchemaUnsupported(f"not a valid JSON Schema: {exc}") from exc


def check_output(schema: Mapping[str, Any], text: str) -> str | None:
    """Why ``text`` is not a valid answer for ``schema`` (not JSON, or the schema refuses
    it), or None when it is."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"not JSON: {exc}"
    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path) or "(root)"
    return f"at {where}: {error.message}"


class _Walker:
    """Checks each subschema and returns the schema without its annotations (the
    converter crashes on a schema that is only a description)."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.ref_names: dict[str, str] = {}
        self.depth = 0

    def walk(self, node: Any, where: str) -> dict[str, Any]:
        if self.depth >= MAX_DEPTH:
            raise SchemaUnsupported(f"{where}: subschemas nested more than {MAX_DEPTH} deep")
        self.depth += 1
        try:
            return self._walk(node, where)
        finally:
            self.depth -= 1

    def _walk(self, node: Any, where: str) -> dict[str, Any]:
        if not isinstance(node, Mapping):
            raise SchemaUnsupported(f"{where}: a boolean or non-object schema")
        for key in node:
            if key not in STRUCTURE and key not in ANNOTATIONS:
                raise SchemaUnsupported(f"{where}: keyword {key!r} is not enforced")
        out = {k: v for k, v in node.items() if k in STRUCTURE}
        constraints = set(out) - set(DEFINITIONS)
        for name in DEFINITIONS:
            if name in out:
                defs = out[name]
                if not isinstance(defs, Mapping):
                    raise SchemaUnsupported(f"{where}/{name}: must be an object")
                out[name] = {k: self.walk(v, f"{where}/{name}/{k}") for k, v in defs.items()}
        if "$ref" in out:
            self._ref(out["$ref"], constraints, where)
            return out
        if "anyOf" in out or "oneOf" in out:
            return self._union(out, constraints, where)
        types = out.get("type")
        if isinstance(types, list):
            if not types or not all(isinstance(t, str) and t in TYPES for t in types):
                raise SchemaUnsupported(f"{where}/type: unknown type in {types!r}")
            if constraints - {"type"}:
                raise SchemaUnsupported(
                    f"{where}: a list of types drops {sorted(constraints - {'type'})[0]!r}"
                )
            return out
        if types is not None and types not in TYPES:
            raise SchemaUnsupported(f"{where}/type: unknown type {types!r}")
        if "const" in out or "enum" in out:
            values = [out["const"]] if "const" in out else out["enum"]
            if not isinstance(values, list) or not values:
                raise SchemaUnsupported(f"{where}/enum: must be a non-empty list")
            for value in values:
                _literal(value, where)
            _satisfiable(node, values, where)
            return out
        self._object(out, types, where)
        self._array(out, types, where)
        self._string(out, types, where)
        return out

    def _ref(self, ref: Any, constraints: set[str], where: str) -> None:
        if not isinstance(ref, str) or not ref.startswith("#/"):
            raise SchemaUnsupported(f"{where}/$ref: only local '#/...' references ({ref!r})")
        if constraints - {"$ref"}:
            raise SchemaUnsupported(
                f"{where}: $ref drops its sibling {sorted(constraints - {'$ref'})[0]!r}"
            )
        target: Any = self.root
        for part in ref[2:].split("/"):
            if not isinstance(target, Mapping) or part not in target:
                raise SchemaUnsupported(f"{where}/$ref: {ref!r} does not resolve")
            target = target[part]
        # The converter finds a target's rule by the pointer's last segment.
        name = re.sub(r"[^a-zA-Z0-9-]+", "-", ref.rsplit("/", 1)[-1])
        if name in RESERVED_NAMES or name in ("space", "dot") or not name:
            raise SchemaUnsupported(f"{where}/$ref: a definition named {name!r}")
        if self.ref_names.setdefault(name, ref) != ref:
            raise SchemaUnsupported(
                f"{where}/$ref: {ref!r} and {self.ref_names[name]!r} end in the same name"
            )

    def _union(self, out: dict[str, Any], constraints: set[str], where: str) -> dict[str, Any]:
        if "anyOf" in out and "oneOf" in out:
            raise SchemaUnsupported(f"{where}: anyOf and oneOf together")
        key = "anyOf" if "anyOf" in out else "oneOf"
        if constraints - {key}:
            raise SchemaUnsupported(
                f"{where}: {key} drops its sibling {sorted(constraints - {key})[0]!r}"
            )
        options = out[key]
        if not isinstance(options, list) or not options:
            raise SchemaUnsupported(f"{where}/{key}: must be a non-empty list")
        out[key] = [self.walk(o, f"{where}/{key}/{i}") for i, o in enumerate(options)]
        return out

    def _object(self, out: dict[str, Any], types: Any, where: str) -> None:
        properties = out.get("properties")
        if properties is not None:
            if not isinstance(properties, Mapping):
                raise SchemaUnsupported(f"{where}/properties: must be an object")
            for name in properties:
                _literal(name, f"{where}/properties")
            out["properties"] = {
                k: self.walk(v, f"{where}/properties/{k}") for k, v in properties.items()
            }
        extra = out.get("additionalProperties")
        if extra is not None and not isinstance(extra, bool):
            out["additionalProperties"] = self.walk(extra, f"{where}/additionalProperties")
        required = out.get("required")
        if required is not None:
            if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
                raise SchemaUnsupported(f"{where}/required: must be a list of names")
            for name in required:
                if name not in (properties or {}):
                    raise SchemaUnsupported(
                        f"{where}/required: {name!r} is not in properties (not enforced)"
                    )
        if types not in (None, "object") and (
            {"properties", "required", "additionalProperties"} & set(out)
        ):
            raise SchemaUnsupported(f"{where}: object keywords on type {types!r}")

    def _array(self, out: dict[str, Any], types: Any, where: str) -> None:
        items, prefix = out.get("items"), out.get("prefixItems")
        counts = {"minItems", "maxItems"} & set(out)
        if items is not None and prefix is not None:
            raise SchemaUnsupported(f"{where}: prefixItems with items (prefixItems dropped)")
        tuple_form = prefix if prefix is not None else items if isinstance(items, list) else None
        if tuple_form is not None:
            if counts:
                raise SchemaUnsupported(f"{where}: {sorted(counts)[0]} on a tuple is dropped")
            if not isinstance(tuple_form, list) or not tuple_form:
                raise SchemaUnsupported(f"{where}: a tuple must list its items")
            key = "prefixItems" if prefix is not None else "items"
            out[key] = [self.walk(s, f"{where}/{key}/{i}") for i, s in enumerate(tuple_form)]
        elif items is not None:
            if isinstance(items, Mapping) and not items:
                raise SchemaUnsupported(f"{where}/items: an empty schema (any value)")
            out["items"] = self.walk(items, f"{where}/items")
        elif counts:
            raise SchemaUnsupported(f"{where}: {sorted(counts)[0]} without items is dropped")
        _bounds(out, "minItems", "maxItems", where)
        if types not in (None, "array") and ({"items", "prefixItems"} | counts) & set(out):
            raise SchemaUnsupported(f"{where}: array keywords on type {types!r}")

    def _string(self, out: dict[str, Any], types: Any, where: str) -> None:
        used = STRING_KEYWORDS & set(out)
        if not used:
            return
        if types != "string":
            raise SchemaUnsupported(f'{where}: {sorted(used)[0]} needs "type": "string"')
        if "pattern" in out:
            if used - {"pattern"}:
                raise SchemaUnsupported(f"{where}: pattern drops {sorted(used - {'pattern'})[0]!r}")
            _pattern(out["pattern"], where)
        elif "format" in out:
            if out["format"] not in FORMATS:
                raise SchemaUnsupported(f"{where}/format: {out['format']!r} is not enforced")
            if used - {"format"}:
                raise SchemaUnsupported(f"{where}: format drops {sorted(used - {'format'})[0]!r}")
        _bounds(out, "minLength", "maxLength", where)


def _bounds(out: Mapping[str, Any], low: str, high: str, where: str) -> None:
    """A count pair: each a whole number up to MAX_REPEAT, the low one not over the high."""
    for name in (low, high):
        if name not in out:
            continue
        value = out[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SchemaUnsupported(f"{where}/{name}: must be a non-negative integer")
        if value > MAX_REPEAT:
            raise SchemaUnsupported(
                f"{where}/{name}: {value} is over {MAX_REPEAT} (llama.cpp's grammar cannot "
                "hold such a repetition)"
            )
    if low in out and high in out and out[low] > out[high]:
        raise SchemaUnsupported(f"{where}: {low} {out[low]} over {high} {out[high]}: no value fits")


def _satisfiable(node: Mapping[str, Any], values: list[Any], where: str) -> None:
    """Refuse an ``enum``/``const`` value that the rest of its own schema refuses: the
    grammar would make the model write it and the answer would then fail its check."""
    rest = {k: v for k, v in node.items() if k not in ("enum", "const", *DEFINITIONS)}
    if not rest or "$ref" in json.dumps(rest):
        return  # nothing else, or a reference the node alone cannot resolve
    validator = jsonschema.validators.validator_for(node)(rest)
    for value in values:
        if not validator.is_valid(value):
            raise SchemaUnsupported(
                f"{where}: the value {json.dumps(value)[:40]} is refused by the rest of "
                "its schema: no answer could be valid"
            )


def _literal(value: Any, where: str, depth: int = 0) -> None:
    """A const, enum value or property name: its strings must come out of the converter's
    escaping intact."""
    if depth > MAX_DEPTH:
        raise SchemaUnsupported(f"{where}: a literal nested more than {MAX_DEPTH} deep")
    if isinstance(value, str):
        for char in value:
            if char in '"\\' or ord(char) < 0x20 or ord(char) == 0x7F or ord(char) > 0xFFFF:
                raise SchemaUnsupported(
                    f"{where}: the literal {value[:40]!r} holds {char!r}, which the "
                    "converter does not escape correctly"
                )
    elif isinstance(value, list):
        for item in value:
            _literal(item, where, depth + 1)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _literal(key, where, depth + 1)
            _literal(item, where, depth + 1)
    elif isinstance(value, float) and value != value:
        raise SchemaUnsupported(f"{where}: NaN is not JSON")


def _pattern(pattern: Any, where: str) -> None:
    if not isinstance(pattern, str) or not (pattern.startswith("^") and pattern.endswith("$")):
        raise SchemaUnsupported(f"{where}/pattern: must be anchored as ^...$ ({pattern!r})")
    if len(pattern) > MAX_PATTERN:
        raise SchemaUnsupported(f"{where}/pattern: {len(pattern)} characters, over {MAX_PATTERN}")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise SchemaUnsupported(f"{where}/pattern: not a regular expression: {exc}") from exc
    body, i = pattern[1:-1], 0
    depth = 0
    while i < len(body):
        char = body[i]
        if char == "[":
            match = _PATTERN_CLASS.match(body, i)
            if match is None:
                raise SchemaUnsupported(
                    f"{where}/pattern: character class at {i} (negated, escaped or with "
                    "characters JSON escapes) is not supported"
                )
            i = match.end()
        elif char == "{":
            match = _PATTERN_QUANTIFIER.match(body, i)
            if match is None or i == 0:
                raise SchemaUnsupported(f"{where}/pattern: quantifier at {i}")
            if body[i - 1] in ")}*+?" and body[i - 2 : i] != "\\" + body[i - 1]:
                # The converter writes a counted group out that many times: nested, the
                # grammar would multiply (a{1000}){1000}.
                raise SchemaUnsupported(
                    f"{where}/pattern: a {{m,n}} at {i} may follow one character or class "
                    "only, not a group or another quantifier"
                )
            low, _, high = match.group()[1:-1].partition(",")
            numbers = [int(low), *([int(high)] if high else [])]
            if max(numbers) > MAX_REPEAT:
                raise SchemaUnsupported(
                    f"{where}/pattern: the quantifier {match.group()} at {i} is over {MAX_REPEAT}"
                )
            if len(numbers) == 2 and numbers[0] > numbers[1]:
                raise SchemaUnsupported(f"{where}/pattern: the quantifier {match.group()} at {i}")
            i = match.end()
        elif char == "(":
            if body[i + 1 : i + 2] == "?":
                raise SchemaUnsupported(f"{where}/pattern: '(?' groups are not supported")
            depth += 1
            if depth > MAX_DEPTH:
                raise SchemaUnsupported(f"{where}/pattern: groups nested over {MAX_DEPTH} deep")
            i += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise SchemaUnsupported(f"{where}/pattern: unbalanced ')'")
            i += 1
        elif char in "*+?":
            if i == 0 or body[i - 1] in "(|*+?":
                raise SchemaUnsupported(f"{where}/pattern: {char!r} at {i} (lazy or dangling)")
            i += 1
        elif char == "|":
            i += 1
        elif char == "\\":
            if body[i + 1 : i + 2] not in tuple("[](){}|*+?"):
                raise SchemaUnsupported(
                    f"{where}/pattern: escape {body[i : i + 2]!r} is not supported"
                )
            i += 2
        elif _PATTERN_LITERAL.fullmatch(char):
            i += 1
        else:
            raise SchemaUnsupported(f"{where}/pattern: {char!r} at {i} is not supported")
    if depth:
        raise SchemaUnsupported(f"{where}/pattern: unbalanced '('")
