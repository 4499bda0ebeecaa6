"""Durations as the config file writes them: ``90`` (seconds), ``"90s"``, ``"10m"``,
``"2h"``, ``"7d"``."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}

PATTERN = r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*$"
"""The same syntax as a JSON Schema pattern, for the settings schemas."""


def parse_duration(value: int | float | str) -> float:
    """Seconds; ValueError with a readable message for anything else."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"{value!r} is negative")
        return float(value)
    match = _DURATION.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a duration such as 30s, 10m, 2h or 7d")
    return float(match.group(1)) * _UNIT[match.group(2)]
