"""Fixtures of the state store tests: real SQLite files under tmp_path, and a clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controller.store import StateStore


class Clock:
    """Ticks one second per reading, so every recorded timestamp is distinct and known."""

    def __init__(self) -> None:
        self.moment = datetime(2025, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.moment += timedelta(seconds=1)
        return self.moment


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "state.db"


@pytest.fixture
def store(db_path: Path, clock: Callable[[], datetime]) -> Iterator[StateStore]:
    with StateStore(db_path, now=clock) as opened:
        yield opened
