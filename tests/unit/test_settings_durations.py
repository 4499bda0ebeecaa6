"""The one duration grammar of fazai.yaml: every row is checked by the parser and by the
JSON Schema the sections refer to, so the two cannot drift apart."""

from __future__ import annotations

import pytest

from controller.settings import check, durations

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {"d": {"$ref": durations.SCHEMA_ID}},
}

# (value, seconds); the union of what the controller's keys (1h30m) and the reports and
# notifications sections (bare "90", "5 m") each accepted before.
VALID: list[tuple[object, float]] = [
    (0, 0.0), ("0", 0.0), (90, 90.0), (1.5, 1.5), ("90", 90.0), (" 90 ", 90.0),
    ("90s", 90.0), ("10m", 600.0), ("2h", 7200.0), ("7d", 604800.0), ("250ms", 0.25),
    ("1.5s", 1.5), ("1.5h", 5400.0), ("1h30m", 5400.0), ("2m30s", 150.0),
    ("1d2h3m4s5ms", 93784.005), ("5 m", 300.0), ("1h 30m", 5400.0), (" 10s ", 10.0),
    ("0s", 0.0), ("0ms", 0.0),
]  # fmt: skip

INVALID: list[object] = [
    "", " ", "10x", "m", "s10", "-1s", "-1", -3, -0.5, True, False, None, "1s2", "1h30",
    "1,5s", "1e3", "ten", "1 h m", "10sec", "1.s", ".5s", [], {}, "1h\n30m\nx",
]  # fmt: skip


@pytest.mark.parametrize(("value", "seconds"), VALID)
def test_a_duration_is_seconds_and_the_schema_agrees(value: object, seconds: float) -> None:
    assert durations.parse(value) == pytest.approx(seconds)
    assert check.problems(SCHEMA, {"d": value}) == []


@pytest.mark.parametrize("value", INVALID)
def test_not_a_duration_is_refused_by_both(value: object) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        durations.parse(value)
    found = check.problems(SCHEMA, {"d": value})
    assert [path for path, _ in found] == [("d",)], found


def test_the_schema_names_the_grammar_and_never_the_value() -> None:
    # A token pasted into a duration field must not reach a log.
    assert check.problems(SCHEMA, {"d": "ghp_10x"}) == [
        (("d",), "is not a valid duration (like 90s, 10m, 1h30m, or 0)")
    ]
    with pytest.raises(ValueError) as caught:
        durations.parse("ghp_10x")
    assert "ghp" not in str(caught.value)


def test_format_seconds_writes_a_valid_duration() -> None:
    shown = [durations.format_seconds(s) for s in (0.25, 1, 90, 3600, 3725)]
    assert shown == ["250ms", "1s", "1m30s", "1h", "1h2m5s"]
    assert [durations.parse(text) for text in shown] == [0.25, 1.0, 90.0, 3600.0, 3725.0]
