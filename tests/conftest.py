"""Shared fixtures: the real SSH fleet comes from the public test kit."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller import daemon

# The test session is an entry point, like `fazai serve`: fazai.yaml's loader knows the
# sections their owners register.
daemon.register_sections()

pytest_plugins = ["controller.testing.pytest_fleet"]


@pytest.fixture(autouse=True, scope="session")
def _own_machine_locks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # The machine-wide node locks (/run/lock/fazai) are keyed on a node's address: tests
    # of other checkouts on this host use the same documentation addresses, so each
    # session (and the processes it starts) gets its own folder.
    folder = tmp_path_factory.mktemp("machine-locks")
    before = os.environ.get("FAZAI_LOCK_DIR")
    os.environ["FAZAI_LOCK_DIR"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("FAZAI_LOCK_DIR", None)
    else:
        os.environ["FAZAI_LOCK_DIR"] = before
