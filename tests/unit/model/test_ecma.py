"""ECMA-262 ``$`` in schema patterns: the end of the string, never before a final newline."""

from __future__ import annotations

import pytest

from controller.model import ecma

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "string",
    "pattern": "^[a-z]+$",
}


@pytest.mark.parametrize(
    ("pattern", "python"),
    [
        ("^[a-z]+$", r"^[a-z]+\Z"),
        (r"^a\$$", r"^a\$\Z"),  # an escaped '$' is a literal
        ("^[$]x$", r"^[$]x\Z"),  # so is one in a character class
        ("^[]$]$", r"^[]$]\Z"),  # ']' first in a class is a literal in Python
        ("^(a|b$)$", r"^(a|b\Z)\Z"),
    ],
)
def test_dollar_anchors_become_end_of_string(pattern: str, python: str) -> None:
    assert ecma.to_python(pattern) == python


@pytest.mark.parametrize("value", ["deploy\n", "deploy\n\n", "\n"])
def test_a_trailing_newline_fails_the_pattern(value: str) -> None:
    validator = ecma.validator_class(SCHEMA)(SCHEMA)
    errors = list(validator.iter_errors(value))
    assert [e.validator for e in errors] == ["pattern"]


def test_a_matching_value_still_passes() -> None:
    validator = ecma.validator_class(SCHEMA)(SCHEMA)
    assert list(validator.iter_errors("deploy")) == []
