"""The one duration grammar of ``fazai.yaml``.

A duration is a number of seconds (``90``, ``0.5``), or a string: a bare number of seconds
(``"90"``), or one or more number-unit parts (``90s``, ``10m``, ``1h30m``, ``250ms``,
``1.5h``, ``7d``; units ``ms s m h d``), with spaces allowed around and between the parts
(``"5 m"``, ``"1h 30m"``). ``0`` means "off" where a field allows it; negatives, booleans
and anything else are refused, and so is anything longer than :data:`MAX_SECONDS` (365
days): no setting means more, and a bigger one only overflows the clocks and socket
timeouts it reaches (``99999999999999d`` would stop a source's retries for good). The
same grammar, as a JSON Schema, is ``schemas/duration.schema.json`` (:data:`SCHEMA_ID`),
which every section's schema refers to, so the schema check and :func:`parse` can never
disagree (a unit test pins that).

Before this module, the controller's own keys took ``1h30m`` but not ``"90"`` or ``"5 m"``,
and the ``reports``/``notifications`` sections the other way round; this grammar is their
union, so every value either accepted keeps working.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

SCHEMA_ID = "https://fazai.dev/schemas/v1alpha1/duration.schema.json"
NOUN = "duration (like 90s, 10m, 1h30m, or 0)"
MAX_SECONDS = 365 * 86400.0

_NUMBER = r"[0-9]+(?:\.[0-9]+)?"
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# "ms" before "m": alternation takes the first that matches.
_PART = re.compile(rf"\s*({_NUMBER})\s*(ms|s|m|h|d)\s*")
_BARE = re.compile(rf"\s*({_NUMBER})\s*")


@cache
def schema() -> Mapping[str, Any]:
    """The JSON Schema of a duration (a resource the settings validators know by id)."""
    text = resources.files("controller.settings").joinpath("schemas/duration.schema.json")
    loaded: Mapping[str, Any] = json.loads(text.read_text(encoding="utf-8"))
    return loaded


def parse(value: object, *, maximum: float | None = MAX_SECONDS) -> float:
    """Seconds. ValueError (``... is not a duration ...``) for anything else; the schema
    refuses the same values first, with a file position. ``maximum`` (365 days unless a
    caller, like ``--since``, needs no bound but a finite one) is refused above it.

    A string value is never quoted in the message: a secret pasted into a duration field
    must not reach a log. A number is (it cannot be a secret)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{_shown(value)}is not a {NOUN}")
    if isinstance(value, float) and not 0 <= value < math.inf:  # YAML's .inf, .nan
        raise ValueError(f"{_shown(value)}is not a {NOUN}")
    try:
        seconds = _seconds(value)
    except OverflowError:  # 10**400 has no float: longer than any maximum
        seconds = math.inf
    if seconds is None or seconds < 0:
        raise ValueError(f"{_shown(value)}is not a {NOUN}")
    # A well-formed string too long for a float ("1" + 400 zeros + "s") is inf here.
    if seconds == math.inf or (maximum is not None and seconds > maximum):
        largest = format_seconds(maximum) if maximum is not None else "any clock can count"
        raise ValueError(f"{_shown(value)}must be at most {largest}")
    return seconds


def _seconds(value: int | float | str) -> float | None:
    if isinstance(value, int | float):
        return float(value)
    bare = _BARE.fullmatch(value)
    if bare is not None:
        return float(bare.group(1))
    total, at = 0.0, 0
    for match in _PART.finditer(value):
        if match.start() != at:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        at = match.end()
    if at == 0 or at != len(value):
        return None
    return total


def _shown(value: object) -> str:
    """The value for a message: numbers only (a string may be a misplaced secret)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        text = repr(value)
        return f"{text} " if len(text) <= 40 else "this number "
    return ""


def format_seconds(seconds: float) -> str:
    """``90.0`` -> ``1m30s``: for messages (and a valid duration itself)."""
    if seconds == 0:
        return "0"
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = round(seconds)
    days, rest = divmod(whole, 86400) if whole >= 2 * 86400 else (0, whole)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    return "".join(f"{n}{unit}" for n, unit in parts if n) or "0s"
