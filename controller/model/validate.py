"""Schema validation of raw documents, with every error pinned to its field's position."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

import jsonschema

from controller.diagnostics import Diagnostic, format_path
from controller.model import ecma, kinds
from controller.model.document import API_VERSION, Document
from controller.model.yamlsource import FieldPath, RawDocument


@cache
def _validator(kind_name: str | None) -> jsonschema.protocols.Validator:
    kind = kinds.get(kind_name) if kind_name else None
    schema = kind.document_schema() if kind else dict(kinds.load_schema("_document"))
    cls = ecma.validator_class(schema)
    validator: jsonschema.protocols.Validator = cls(schema)
    return validator


def to_document(raw: RawDocument) -> tuple[Document | None, list[Diagnostic]]:
    """Validate ``raw`` against its kind's schema; a Document only when it is valid."""
    value = raw.value
    if not isinstance(value, dict):
        got = _json_type(value)
        return None, [Diagnostic(raw.location(), f"a document must be a mapping, got a {got}")]

    subject = _subject(value)
    api_version = value.get("apiVersion")
    if api_version != API_VERSION:
        message = (
            f"missing; expected {API_VERSION!r}"
            if api_version is None
            else f"unsupported apiVersion {api_version!r}; expected {API_VERSION!r}"
        )
        return None, [Diagnostic(raw.location(("apiVersion",)), message, subject, "apiVersion")]
    kind_name = value.get("kind")
    kind = kinds.get(kind_name) if isinstance(kind_name, str) else None
    if kind is None:
        known = ", ".join(kinds.names())
        message = (
            f"missing; known kinds: {known}"
            if kind_name is None
            else f"unknown kind {kind_name!r}; known kinds: {known}"
        )
        return None, [Diagnostic(raw.location(("kind",)), message, subject, "kind")]

    problems = [
        Diagnostic(raw.location(path), message, subject, format_path(path))
        for path, message in _schema_errors(_validator(kind.name), value, kind.name)
    ]
    if problems:
        return None, problems
    metadata = value["metadata"]
    name = metadata["name"]
    spec = kinds.apply_defaults(kind, name, value["spec"])
    return Document(kind.name, name, spec, dict(metadata.get("labels", {})), raw), []


def _subject(value: Mapping[str, Any]) -> str:
    kind = value.get("kind")
    metadata = value.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if isinstance(kind, str) and isinstance(name, str):
        return f"{kind}/{name}"
    return kind if isinstance(kind, str) else ""


def _schema_errors(
    validator: jsonschema.protocols.Validator, value: Any, kind: str
) -> Iterator[tuple[FieldPath, str]]:
    seen: set[tuple[FieldPath, str]] = set()
    errors = sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.absolute_path)))
    for error in errors:
        for path, message in _explain(error, kind):
            if (path, message) not in seen:
                seen.add((path, message))
                yield path, message


def _explain(error: jsonschema.ValidationError, kind: str) -> Iterator[tuple[FieldPath, str]]:
    """Plain-language messages for the validators people trip on most."""
    path: FieldPath = tuple(error.absolute_path)
    v = error.validator
    if v == "additionalProperties":
        allowed = sorted(_schema_properties(error))
        refused = error.schema.get("x-fazai-refused", {}) if isinstance(error.schema, dict) else {}
        for extra in _extra_keys(error):
            if extra in refused:
                yield (*path, extra), refused[extra]
                continue
            hint = f"; allowed: {', '.join(allowed)}" if allowed else ""
            yield (*path, extra), f"unknown field {extra!r}{hint}"
        return
    if "propertyNames" in error.relative_schema_path:
        # The instance is a key, but absolute_path stops at its mapping: point at the key.
        key = str(error.instance)
        yield (*path, key), f"{key!r} is not a valid {_key_noun(path)}"
        return
    if v == "required":
        missing: str = str(error.message).split("'")[1] if "'" in error.message else error.message
        yield path, f"required field {missing!r} is missing"
        return
    if v == "type":
        want = error.validator_value
        wanted = want if isinstance(want, list) else [want]
        want_text = " or ".join(_SCHEMA_TYPES.get(str(w), str(w)) for w in wanted)
        got = _json_type(error.instance)
        hint = ""
        if path and path[-1] == "mode" and isinstance(error.instance, int):
            # Unquoted, 0644 is an octal int (420) and 644 a decimal one: either way the
            # number is not what was meant, so show it.
            hint = (
                " (quote the mode, like '0644': unquoted, YAML reads it as the number "
                f"{error.instance})"
            )
        yield path, f"expected {want_text}, got {got}{hint}"
        return
    if v == "enum":
        values = error.validator_value
        choices = ", ".join(map(str, values)) if isinstance(values, list) else str(values)
        yield path, f"{error.instance!r} is not one of: {choices}"
        return
    if v in _BOUNDS:
        yield path, f"must be {_BOUNDS[v]} {error.validator_value}, got {error.instance}"
        return
    if v == "const":
        yield path, f"must be {error.validator_value!r}, got {error.instance!r}"
        return
    if v == "pattern":
        yield path, f"{error.instance!r} is not a valid {_field_noun(path, kind)}{_why(error)}"
        return
    if v == "maxLength":
        # Never the value itself: it is what is too long.
        length = len(error.instance) if isinstance(error.instance, str) else 0
        yield path, f"is {length} characters long; at most {error.validator_value} allowed"
        return
    if v in ("minItems", "maxItems") and isinstance(error.instance, list):
        # The count, not the list: it can be long, and hold what should not be echoed.
        bound = "at least" if v == "minItems" else "at most"
        yield path, f"has {len(error.instance)} items; {bound} {error.validator_value} allowed"
        return
    if v in ("minProperties", "maxProperties") and path and path[-1] == "target":
        yield path, "target needs exactly one of 'node' or 'matchLabels'"
        return
    yield path, str(error.message)


def _schema_properties(error: jsonschema.ValidationError) -> list[str]:
    schema = error.schema
    return [str(p) for p in schema.get("properties", {})] if isinstance(schema, Mapping) else []


def _extra_keys(error: jsonschema.ValidationError) -> list[str]:
    instance = error.instance if isinstance(error.instance, dict) else {}
    known = set(_schema_properties(error))
    return sorted(str(k) for k in instance if k not in known)


_BOUNDS = {
    "minimum": "at least",
    "maximum": "at most",
    "exclusiveMinimum": "greater than",
    "exclusiveMaximum": "less than",
}

# JSON Schema's names for types, in the words YAML authors use (and _json_type prints).
_SCHEMA_TYPES = {"object": "mapping", "array": "list", "number": "number", "integer": "integer"}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


_NOUNS = {
    "name": "name",
    "path": "absolute path",
    "mode": "octal mode (like '0644')",
    "owner": "user name",
    "group": "group name",
    "key": "sysctl key (like net.ipv4.ip_forward)",
    "version": "version",
    "shell": "absolute path",
    "home": "absolute path",
    "source": "relative path",
    "address": "address",
    "value": "sysctl value",
    "txtdata": "TXT record text",
    "gateway": "gateway name",
    "content": "alias entry",
}


_NAME_NOUNS = {
    "Package": "package name",
    "User": "user name",
    "Service": "unit name",
    "NftTable": "nftables table name",
}


def _why(error: jsonschema.ValidationError) -> str:
    """What in a refused value breaks a rule of the layer below: a control character (a
    newline splits a line-based file, a NUL ends a C string), a ':' (the field separator
    of /etc/passwd), a leading '-' (an option to the command that gets the value)."""
    value = error.instance
    if not isinstance(value, str):
        return ""
    control = next((c for c in value if (ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F), None)
    if control is not None:
        return f": control character U+{ord(control):04X} is not allowed"
    field = next((p for p in reversed(error.absolute_path) if isinstance(p, str)), "")
    if ":" in value and field in ("shell", "home"):
        return ": ':' separates the fields of /etc/passwd"
    if value.startswith("-"):
        return ": it must not start with '-' (a command would read it as an option)"
    return ""


def _key_noun(path: FieldPath) -> str:
    if path[-1:] == ("labels",):
        return "label key (like 'role' or 'example.com/role')"
    return "key"


def _field_noun(path: FieldPath, kind: str) -> str:
    last = next((p for p in reversed(path) if isinstance(p, str)), "")
    if path[:2] == ("metadata", "labels"):
        return "label value (up to 63 letters, digits, '-', '_' and '.')"
    if path[:2] == ("metadata", "name"):
        return "DNS-1123 name (lowercase letters, digits, '-' and '.')"
    if path == ("spec", "name"):
        return _NAME_NOUNS.get(kind, "name")
    if "groups" in path:
        return "group name"
    return _NOUNS.get(last, f"value for {last}")


def errors_against(schema: Mapping[str, Any], value: Any, kind: str) -> list[tuple[FieldPath, str]]:
    """``value`` checked against a schema a document carries (a Tool's params), with the
    same plain messages as a document's own fields; paths relative to ``value``."""
    cls = ecma.validator_class(schema)
    return list(_schema_errors(cls(schema), value, kind))


def schema_problem(schema: Any) -> str | None:
    """Why ``schema`` is not a JSON Schema its validator can use; None when it is."""
    if not isinstance(schema, Mapping):
        return "a JSON Schema is a mapping"
    try:
        ecma.validator_class(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        return f"not a valid JSON Schema: {exc.message}"
    return None
