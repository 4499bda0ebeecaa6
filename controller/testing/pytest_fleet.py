"""The `fleet` pytest fixture: one session-wide fleet of four real SSH nodes.

Register it once, in the top-level conftest::

    pytest_plugins = ["controller.testing.pytest_fleet"]

Tests that take `fleet` are skipped, with the reason, where a fleet cannot
start (not root, no sshd, no overlayfs, ...).  The fleet is shared by the whole
session: tests may change files in nodes (each node's root is copy-on-write)
but should undo what other tests could trip over, e.g. call node.start() after
node.stop().

Registering the plugin also registers the platforms' kinds (``providers.load_all()``),
as the CLI does, so that tests can load documents with ``controller.model.loader``.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator

import pytest

from controller import providers
from controller.testing.fleet import Fleet, NodeSpec, fleet_available

# $FAZAI_FLEET_SUBNET moves the fleet (a /24; nodes at .11-.14), so that sessions on one
# machine can each have their own rather than queue for the default one.
FLEET_SUBNET = os.environ.get("FAZAI_FLEET_SUBNET") or "10.231.7.0/24"
_BASE = ipaddress.IPv4Network(FLEET_SUBNET).network_address
FLEET_NODES = tuple(
    NodeSpec(name, str(_BASE + 11 + i))
    for i, name in enumerate(("web-1", "web-2", "db-1", "edge-1"))
)


def pytest_configure(config: pytest.Config) -> None:
    providers.load_all()  # a test session is an entry point, like the CLI


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """A started Fleet of web-1, web-2, db-1 and edge-1 on 10.231.7.11-14 (or .11-.14 of
    $FAZAI_FLEET_SUBNET)."""
    reason = fleet_available()
    if reason is not None:
        pytest.skip(f"no fleet: {reason}")
    workdir = tmp_path_factory.mktemp("fleet")
    # Another session on this machine (a colleague's pytest run) may hold the
    # subnet: queue behind it rather than fail.
    session_fleet = Fleet(FLEET_NODES, workdir=workdir, subnet=FLEET_SUBNET, subnet_wait=600)
    with session_fleet as started:
        yield started
