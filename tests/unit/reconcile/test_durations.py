from __future__ import annotations

import pytest

from controller.reconcile.durations import format_seconds, parse


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0.0), (0, 0.0), (90, 90.0), ("90s", 90.0), ("10m", 600.0), ("1h30m", 5400.0),
     ("250ms", 0.25), ("1.5s", 1.5), ("1d", 86400.0), ("2m30s", 150.0)],
)  # fmt: skip
def test_durations(text: str | int, seconds: float) -> None:
    assert parse(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "10x", "m", "5 m", "-1s", "1s2", True, -3])
def test_not_durations(text: str | int) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse(text)


def test_format() -> None:
    assert [format_seconds(s) for s in (0.25, 1, 90, 3600, 3725)] == [
        "250ms", "1s", "1m30s", "1h", "1h2m5s",
    ]  # fmt: skip
