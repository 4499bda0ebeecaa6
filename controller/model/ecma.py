"""JSON Schema's ``pattern`` with the regular-expression semantics the standard names.

JSON Schema patterns are ECMA-262 regular expressions, where ``$`` (without the multiline
flag) matches only at the very end of the string. jsonschema checks them with Python's
``re.search``, whose ``$`` also matches before a final newline: ``"deploy\\n"`` passes
``^[a-z]+$``. A newline that slips through reaches the layer below (a passwd line, a
sysctl file, a command line), so every schema this project loads is checked with
:func:`validator_class`, which reads ``$`` as ECMA-262 does.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

import jsonschema


def to_python(pattern: str) -> str:
    """``pattern`` with every ``$`` anchor (unescaped, outside a character class) made
    ``\\Z``: the end of the string and nothing else."""
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            # A ']' right after '[' (or '[^') is a literal in Python's syntax.
            lead = 2 if pattern[i + 1 : i + 2] == "^" else 1
            if pattern[i + lead : i + lead + 1] == "]":
                out.append(pattern[i : i + lead + 1])
                i += lead + 1
                continue
        elif char == "$":
            out.append(r"\Z")
            i += 1
            continue
        out.append(char)
        i += 1
    return "".join(out)


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(to_python(pattern))


def _pattern(
    validator: Any, pattern: str, instance: Any, schema: Mapping[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    if validator.is_type(instance, "string") and not _compiled(pattern).search(instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


def validator_class(schema: Mapping[str, Any]) -> Any:
    """The validator class for ``schema`` (by its ``$schema``), with ECMA-262 ``pattern``."""
    return _extended(jsonschema.validators.validator_for(schema))


@cache
def _extended(cls: Any) -> Any:
    return jsonschema.validators.extend(cls, {"pattern": _pattern})  # type: ignore[no-untyped-call]
