"""The `fleet` pytest fixture: one session-wide fleet of four real SSH nodes.

Register it once, in the top-level conftest::

    pytest_plugins = ["controller.testing.pytest_fleet"]

Tests that take `fleet` are skipped, with the reason, where a fleet cannot
start (not root, no sshd, no overlayfs, ...).  The fleet is shared by the whole
session: tests may change files in nodes (each node's root is copy-on-write)
but should undo what other tests could trip over, e.g. call node.start() after
node.stop().
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from controller.testing.fleet import Fleet, NodeSpec, fleet_available

FLEET_SUBNET = "10.231.7.0/24"
FLEET_NODES = (
    NodeSpec("web-1", "10.231.7.11"),
    NodeSpec("web-2", "10.231.7.12"),
    NodeSpec("db-1", "10.231.7.13"),
    NodeSpec("edge-1", "10.231.7.14"),
)


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """A started Fleet of web-1, web-2, db-1 and edge-1 on 10.231.7.11-14."""
    reason = fleet_available()
    if reason is not None:
        pytest.skip(f"no fleet: {reason}")
    workdir = tmp_path_factory.mktemp("fleet")
    # Another session on this machine (a colleague's pytest run) may hold the
    # subnet: queue behind it rather than fail.
    session_fleet = Fleet(FLEET_NODES, workdir=workdir, subnet=FLEET_SUBNET, subnet_wait=600)
    with session_fleet as started:
        yield started
