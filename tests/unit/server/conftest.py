"""Fixtures of the HTTP API's unit tests: a fake controller over a real store and bus."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.store import StateStore
from tests.unit.server.serverkit import FakeHandle, Tokens, with_tokens


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore(tmp_path / "state.db") as opened:
        yield opened


@pytest.fixture
def handle(store: StateStore) -> FakeHandle:
    return FakeHandle(store)


@pytest.fixture
def tokens(monkeypatch: pytest.MonkeyPatch) -> Tokens:
    return with_tokens(monkeypatch)
