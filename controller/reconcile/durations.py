"""Durations as people write them in ``fazai.yaml``: ``90s``, ``10m``, ``1h30m``, ``250ms``."""

from __future__ import annotations

import re

_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse(value: int | float | str) -> float:
    """Seconds. A bare number is seconds; ``0`` (or ``"0"``) means "off" where allowed.

    Raises ValueError for anything else (the schema refuses it first, with a position)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"{value!r} is not a duration")
        return float(value)
    text = value.strip()
    if text == "0":
        return 0.0
    total, at = 0.0, 0
    for match in _PART.finditer(text):
        if match.start() != at:
            break
        total += float(match.group(1)) * _SECONDS[match.group(2)]
        at = match.end()
    if at != len(text) or not text:
        raise ValueError(f"{value!r} is not a duration (like 90s, 10m, 1h30m, or 0)")
    return total


def format_seconds(seconds: float) -> str:
    """``90.0`` -> ``1m30s``: for messages."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(hours, "h"), (minutes, "m"), (secs, "s")]
    return "".join(f"{n}{unit}" for n, unit in parts if n) or "0s"
