"""Counted nouns for messages people read: "1 change", "2 changes", never "1 changes"."""

from __future__ import annotations


def count(number: int, singular: str, plural: str | None = None) -> str:
    """``number`` and the noun agreeing with it; ``plural`` when adding "s" is wrong."""
    word = singular if number == 1 else (plural or singular + "s")
    return f"{number} {word}"
