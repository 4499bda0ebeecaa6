"""The request types refuse what no backend could honour."""

from __future__ import annotations

import math

import pytest

from controller.llm.completion import Budget


@pytest.mark.parametrize("seconds", [math.nan, -1.0, 0.0, math.inf, True])
def test_a_budget_refuses_seconds_that_are_no_deadline(seconds: float) -> None:
    # NaN compares false with every clock reading: a deadline that never comes.
    with pytest.raises(ValueError, match="seconds"):
        Budget(seconds=seconds)


@pytest.mark.parametrize("tokens", [0, -5, True, 2.5])
def test_a_budget_refuses_max_tokens_below_one(tokens: int) -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        Budget(max_tokens=tokens)


def test_a_budget_takes_sane_bounds() -> None:
    assert Budget(max_tokens=1, seconds=0.5).seconds == 0.5
    assert Budget(seconds=None).seconds is None
