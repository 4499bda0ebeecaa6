"""An SSH node that hangs up on us after MaxAuthTries (sshd's "Too many authentication
failures", a disconnect that asyncssh raises as a protocol error, not as "permission
denied") refused our credentials: a permanent AuthenticationError, not an unreachable
node retried at the temporary pace (each retry counts towards fail2ban). Real OpenSSH on
the fleet, a real ssh-agent offering more keys than sshd allows tries."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.errors import AuthenticationError, retry_decision
from controller.providers.linux import ssh
from controller.testing.fleet import Fleet, NodeSpec, fleet_available

SUBNET = os.environ.get("FAZAI_FLEET_SUBNET") or "10.242.4.0/24"
KEYS = 8  # more than sshd's default MaxAuthTries (6)


@pytest.fixture(scope="module")
def one_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    reason = fleet_available()
    if reason is not None:
        pytest.skip(f"no fleet: {reason}")
    address = str(ipaddress.ip_network(SUBNET)[11])
    with Fleet(
        (NodeSpec("web-1", address),), workdir=tmp_path_factory.mktemp("auth"), subnet=SUBNET
    ) as fleet:
        yield fleet


@pytest.fixture
def agent_with_many_keys(tmp_path: Path) -> Iterator[str]:
    """An ssh-agent holding KEYS keys the node does not know."""
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(
        ["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert time.monotonic() < deadline, "ssh-agent did not start"
            time.sleep(0.02)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        for i in range(KEYS):
            key = tmp_path / f"stranger-{i}"
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True
            )
            subprocess.run(["ssh-add", "-q", str(key)], env=env, check=True, timeout=10)
        yield str(sock)
    finally:
        agent.terminate()
        agent.wait(timeout=10)


async def test_too_many_authentication_failures_is_a_permanent_refusal(
    one_node: Fleet, agent_with_many_keys: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSH_AUTH_SOCK", agent_with_many_keys)
    node = one_node.nodes["web-1"]
    target = ssh.SshTarget(
        node="web-1",
        address=node.address,
        port=22,
        user="root",
        private_key_file=None,
        use_agent=True,
        known_hosts_file=one_node.known_hosts_file,
        connect_timeout=5,
        command_timeout=5,
    )
    with pytest.raises(AuthenticationError) as caught:
        await ssh.connect(target)
    assert "too many authentication failures" in str(caught.value)
    assert retry_decision(caught.value).permanent
    cause = caught.value.__cause__
    assert cause is not None and type(cause).__name__ == "ProtocolError", repr(cause)
