"""Upstream messages, loaded from ``data/messages.json`` (verbatim from opnsense/core)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources


@cache
def _messages() -> dict[str, str]:
    raw = json.loads(resources.files(__package__).joinpath("data/messages.json").read_text())
    return {key: entry["text"] for key, entry in raw["messages"].items()}


def msg(key: str) -> str:
    """The upstream text for ``key``; KeyError for a key the data file lacks."""
    return _messages()[key]


def fmt(key: str, *args: str) -> str:
    """``msg(key)`` with its ``%s`` placeholders filled, like PHP's sprintf."""
    text = msg(key)
    for arg in args:
        text = text.replace("%s", arg, 1)
    return text
