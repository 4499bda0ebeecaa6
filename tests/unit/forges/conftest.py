"""Retries back off for milliseconds here, not seconds: the behaviour is the same."""

from __future__ import annotations

import pytest

from controller.forges import http


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "BACKOFF_S", 0.01)
