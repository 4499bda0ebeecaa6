"""The test fleet really is a set of separate Linux hosts reachable with OpenSSH.

Uses the session `fleet` fixture (controller.testing.pytest_fleet); tests that
must tear a fleet down start their own small one on another subnet.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
from pathlib import Path

import pytest

from controller.testing.fleet import Fleet, FleetError, NodeSpec

pytestmark = pytest.mark.fleet


def ssh(
    fleet: Fleet, node: str, command: str, known_hosts: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run command on node with the real `ssh` client binary."""
    argv = fleet.ssh_argv(node, command, known_hosts=known_hosts)
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def ip_output(*args: str) -> str:
    return subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=10, check=True
    ).stdout


def owned_objects(prefix: str) -> tuple[list[str], list[str]]:
    """Network namespaces and host links whose names carry the fleet's prefix."""
    netns = [line.split()[0] for line in ip_output("netns", "list").splitlines() if line]
    links = [line.split(":")[1].strip().split("@")[0] for line in
             ip_output("-o", "link", "show").splitlines()]  # fmt: skip
    return [n for n in netns if n.startswith(prefix)], [n for n in links if n.startswith(prefix)]


def test_real_ssh_client_reaches_every_node_by_name(fleet: Fleet) -> None:
    assert set(fleet.nodes) == {"web-1", "web-2", "db-1", "edge-1"}
    for name, node in fleet.nodes.items():
        result = ssh(fleet, name, "hostname; id -u")
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == [name, "0"]
        assert node.port == 22


def test_workdir_holds_client_key_and_known_hosts(fleet: Fleet) -> None:
    top = {p.name for p in fleet.private_key_file.parent.iterdir() if p.is_file()}
    assert top == {"id_ed25519", "id_ed25519.pub", "known_hosts"}
    assert fleet.private_key_file.name == "id_ed25519"
    lines = fleet.known_hosts_file.read_text().splitlines()
    assert sorted(lines) == sorted(f"{n.address} {n.host_public_key}" for n in fleet.nodes.values())
    keys = {n.host_public_key for n in fleet.nodes.values()}
    assert len(keys) == len(fleet.nodes)
    assert all(key.startswith("ssh-ed25519 AAAA") for key in keys)
    host_key = Path("/etc/ssh/ssh_host_ed25519_key.pub")
    if host_key.exists():
        assert " ".join(host_key.read_text().split()[:2]) not in keys
    assert fleet.gateway == "10.231.7.1"


def test_node_filesystems_are_private(fleet: Fleet) -> None:
    marker = f"/etc/fleet-marker-{secrets.token_hex(4)}"
    web1, web2 = fleet.nodes["web-1"], fleet.nodes["web-2"]
    web1.run(f"echo drift > {marker}")
    try:
        assert web1.run(f"cat {marker}").stdout == b"drift\n"
        assert ssh(fleet, "web-1", f"cat {marker}").stdout == "drift\n"
        assert web2.run(f"test -e {marker}", check=False).returncode == 1
        assert ssh(fleet, "web-2", f"test -e {marker}").returncode == 1
        assert not Path(marker).exists()
    finally:
        web1.run(f"rm -f {marker}")


def test_node_run_is_inside_the_node(fleet: Fleet) -> None:
    db = fleet.nodes["db-1"]
    out = db.run("hostname; ip -4 -o addr show dev eth0; cat /proc/1/comm").stdout.decode()
    name, addr_line, init = out.splitlines()
    assert name == "db-1"
    assert "10.231.7.13/24" in addr_line
    assert init == "sh"  # the node's own PID 1, not the host's
    result = db.run("cat", input=b"piped")
    assert result.stdout == b"piped"
    with pytest.raises(subprocess.CalledProcessError):
        db.run("exit 3")
    assert db.run("exit 3", check=False).returncode == 3
    # Global sysctls are read-only inside nodes, per-netns ones are the node's own.
    assert db.run("echo 1 > /proc/sys/net/ipv4/ip_forward", check=False).returncode == 0
    assert db.run("echo 1 > /proc/sys/vm/swappiness", check=False).returncode != 0


def test_nodes_reach_each_other_by_name(fleet: Fleet) -> None:
    result = ssh(fleet, "web-1", "getent hosts db-1 && head -c 4 < /dev/tcp/db-1/22")
    # /dev/tcp is a bash feature; root's shell on Debian is bash.
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].split() == ["10.231.7.13", "db-1"]
    assert result.stdout.endswith("SSH-")


def test_wrong_host_key_fails_verification(fleet: Fleet, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    fleet.write_known_hosts(known_hosts, {"web-2": fleet.nodes["db-1"].host_public_key})
    bad = ssh(fleet, "web-2", "true", known_hosts=known_hosts)
    assert bad.returncode == 255
    assert "Host key verification failed" in bad.stderr
    assert ssh(fleet, "web-1", "true", known_hosts=known_hosts).returncode == 0
    with pytest.raises(ValueError):
        fleet.write_known_hosts(known_hosts, {"no-such-node": "ssh-ed25519 AAAA"})


def test_stopped_node_refuses_connections_until_started(fleet: Fleet) -> None:
    edge = fleet.nodes["edge-1"]
    edge.stop()
    try:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((edge.address, edge.port), timeout=5).close()
        assert ssh(fleet, "edge-1", "true").returncode == 255
        assert ssh(fleet, "web-1", "true").returncode == 0  # the rest of the fleet is up
        assert edge.run("hostname").stdout == b"edge-1\n"  # the node itself still is
    finally:
        edge.start()
    assert ssh(fleet, "edge-1", "hostname").stdout == "edge-1\n"


def test_second_fleet_runs_alongside_and_stop_removes_everything(
    fleet: Fleet, tmp_path: Path
) -> None:
    other = Fleet([NodeSpec("solo-1", "10.231.8.21")], workdir=tmp_path, subnet="10.231.8.0/24")
    with other:
        assert other.prefix != fleet.prefix
        netns, links = owned_objects(other.prefix)
        assert netns == [f"{other.prefix}-solo-1"]
        assert sorted(links) == sorted([other.bridge, other.nodes["solo-1"].host_veth])
        assert ssh(other, "solo-1", "hostname").stdout == "solo-1\n"
        assert ssh(fleet, "web-1", "hostname").stdout == "web-1\n"
    assert owned_objects(other.prefix) == ([], [])
    other.stop()  # idempotent
    assert ssh(fleet, "db-1", "hostname").stdout == "db-1\n"


def test_failed_start_names_node_and_step_and_cleans_up(fleet: Fleet, tmp_path: Path) -> None:
    broken = Fleet(
        [NodeSpec("ok-1", "10.231.10.11"), NodeSpec("bad-1", "10.231.10.12")],
        workdir=tmp_path,
        subnet="10.231.10.0/24",
    )
    # Squat the host-side veth name of bad-1 so creating its link fails.
    squatted = broken.nodes["bad-1"].host_veth
    subprocess.run(["ip", "link", "add", squatted, "type", "bridge"], check=True, timeout=10)
    with pytest.raises(FleetError) as caught:
        broken.start()
    assert caught.value.node == "bad-1"
    assert caught.value.step == "network"
    assert "File exists" in str(caught.value)
    assert owned_objects(broken.prefix) == ([], [])
    broken.stop()


def test_same_subnet_is_refused_while_in_use(fleet: Fleet, tmp_path: Path) -> None:
    clash = Fleet([NodeSpec("clash-1", "10.231.7.99")], workdir=tmp_path, subnet="10.231.7.0/24")
    with pytest.raises(RuntimeError, match="in use"):
        clash.start()
    assert owned_objects(clash.prefix) == ([], [])
    assert ssh(fleet, "web-1", "hostname").stdout == "web-1\n"


def test_invalid_specs_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="DNS-1123"):
        Fleet([NodeSpec("Web_1", "10.231.0.5")], workdir=tmp_path)
    with pytest.raises(ValueError, match="not a host"):
        Fleet([NodeSpec("web-1", "10.9.9.9")], workdir=tmp_path)
    with pytest.raises(ValueError, match="duplicate"):
        Fleet([NodeSpec("a", "10.231.0.5"), NodeSpec("b", "10.231.0.5")], workdir=tmp_path)
    with pytest.raises(ValueError, match="duplicate"):
        Fleet([NodeSpec("a", "10.231.0.1")], workdir=tmp_path)  # the gateway's address
