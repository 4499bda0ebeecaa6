"""Answers of a length the model cannot choose: a JSON Schema of ``count`` forced items.

A free-text answer may end after a few tokens by chance (and did, on a slower machine),
hiding a wait or a deadline a test is about; under this schema's grammar the model must
write every item, a few tokens each."""

from __future__ import annotations

from typing import Any


def forced_words(count: int) -> dict[str, Any]:
    """A JSON Schema: an object whose ``words`` are exactly ``count`` of three words."""
    return {
        "type": "object",
        "properties": {
            "words": {
                "type": "array",
                "items": {"enum": ["alpha", "beta", "gamma"]},
                "minItems": count,
                "maxItems": count,
            }
        },
        "required": ["words"],
        "additionalProperties": False,
    }
