"""Fixtures: a running emulator per test and an httpx client bound to it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from controller.testing.opnsense import EmulatorServer


@pytest.fixture
def fw(request: pytest.FixtureRequest) -> Iterator[EmulatorServer]:
    version = getattr(request, "param", "26.1")
    with EmulatorServer(version=version, rollback_seconds=0.5) as server:
        yield server


@pytest.fixture
def api(fw: EmulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fw.url, auth=fw.auth, timeout=10) as client:
        yield client
