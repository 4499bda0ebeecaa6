"""The loop keeps one verified SSH connection per node between passes: connections are
counted in the node's own sshd log; a node whose sshd restarts is reconnected, one whose
host key changed (or whose known_hosts entry did) is refused, and stopping the loop
closes them all."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.engine import apply as applying
from controller.engine import plan as planning
from controller.events import EventType
from controller.model import loader
from controller.providers.linux import pool, ssh
from controller.reconcile.config import ControllerConfig
from controller.reconcile.handle import Mode
from controller.source.open import open_source
from controller.store import NodeStatus, StateStore
from controller.testing.fleet import Fleet, FleetNode, NodeSpec, fleet_available
from tests.integration.servekit import Infra, file_doc, linux_node, resource, running, source

pytestmark = pytest.mark.fleet

SUBNET = "10.247.2.0/24"
NODE = "kc-1"
PATH = "/etc/fazai-kept/motd"
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"


@pytest.fixture(scope="module")
def kc_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    reason = fleet_available()
    if reason is not None:
        pytest.skip(f"no fleet: {reason}")
    workdir = tmp_path_factory.mktemp("kept-fleet")
    with Fleet([NodeSpec(NODE, "10.247.2.11")], workdir=workdir, subnet=SUBNET,
               subnet_wait=600) as fleet:  # fmt: skip
        yield fleet


def settings(tmp_path: Path, infra: Infra) -> ControllerConfig:
    return ControllerConfig(
        sources=(source(infra, mode=Mode.AUTO),),
        state=tmp_path / "state.db",
        cache_dir=tmp_path / "cache",
        drift_check=0,
        settle=0.05,
        backoff_initial=0.3,
        backoff_max=1.0,
    )


def logins(node: FleetNode) -> int:
    """SSH connections the node accepted (a new login each), from its sshd's log."""
    return node.sshd_log.read_text(errors="replace").count("Accepted publickey")


def sessions(node: FleetNode) -> int:
    """TCP connections established to the node's sshd now."""
    out = node.run("ss -Htn state established '( sport = :22 )'").stdout.decode()
    return len([line for line in out.splitlines() if line.strip()])


def content(node: FleetNode) -> str | None:
    done = node.run(f"cat {PATH}", check=False)
    return done.stdout.decode() if done.returncode == 0 else None


def documents(fleet: Fleet, text: str, **node_spec: Any) -> list[dict[str, Any]]:
    return [linux_node(fleet, NODE, **node_spec), file_doc("motd", {"node": NODE}, PATH, text)]


async def commit(loop: Any, infra: Infra, docs: list[dict[str, Any]], message: str) -> str:
    worker = loop.controller.workers["infra"]
    revision = infra.commit(docs, message)
    infra.push()
    assert await loop.controller.notify_push(infra.url, "refs/heads/main", revision)
    await loop.until(lambda: worker.revision == revision and not worker.busy, what=message)
    await loop.idle()
    return revision


async def settled(node: FleetNode, wanted: int, timeout: float = 5.0) -> int:
    """The node's sshd sessions once they number ``wanted`` (a closed connection takes a
    moment to go), or after ``timeout``."""
    deadline = time.monotonic() + timeout
    while (now := sessions(node)) != wanted and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return now


def plans(loop: Any) -> int:
    return len([e for e in loop.of(EventType.RUN_STARTED) if e.data["command"] == "plan"])


async def test_passes_reuse_the_kept_connection_and_stopping_closes_it(
    kc_fleet: Fleet, tmp_path: Path
) -> None:
    node = kc_fleet.nodes[NODE]
    infra = Infra(tmp_path / "infra")
    infra.commit(documents(kc_fleet, "v0\n"), "v0")
    infra.push()
    async with running(settings(tmp_path, infra)) as loop:
        worker = loop.controller.workers["infra"]
        await loop.until(lambda: worker.last_sync is not None, what="the first sync")
        await loop.idle()
        assert content(node) == "v0\n"
        before = logins(node)
        for n in (1, 2, 3):
            await commit(loop, infra, documents(kc_fleet, f"v{n}\n"), f"v{n}")
            assert content(node) == f"v{n}\n"
            assert worker.error is None
        # Plan read, moved-plan re-read, snapshot and write over the kept connection; only
        # verify logs in anew (it proves the node still takes logins), and that login is
        # kept for the next pass: one per converging pass (four before connections were
        # kept).
        assert logins(node) - before == 3
        runs = [e for e in loop.of(EventType.RUN_FINISHED) if e.data["command"] == "apply"]
        assert [e.data["status"] for e in runs[-3:]] == ["succeeded"] * 3

        # A pass with nothing to write (an API trigger) logs in nowhere.
        quiet, planned = logins(node), plans(loop)
        await loop.controller.trigger("infra")
        await loop.until(lambda: plans(loop) > planned, what="the triggered pass")
        await loop.idle()
        assert logins(node) == quiet
        assert await settled(node, 1) == 1
    # Stopping the controller closed the connection, on both ends.
    assert await settled(node, 0) == 0


async def test_a_node_whose_sshd_restarted_is_reconnected_and_converges(
    kc_fleet: Fleet, tmp_path: Path
) -> None:
    node = kc_fleet.nodes[NODE]
    infra = Infra(tmp_path / "infra")
    infra.commit(documents(kc_fleet, "r0\n"), "r0")
    infra.push()
    async with running(settings(tmp_path, infra)) as loop:
        worker = loop.controller.workers["infra"]
        await loop.until(lambda: worker.last_sync is not None, what="the first sync")
        await loop.idle()
        assert await settled(node, 1) == 1
        # sshd killed with every session (as a reboot would), then started again: the
        # kept connection is dead.
        node.stop()
        node.start()
        before = logins(node)
        await commit(loop, infra, documents(kc_fleet, "r1\n"), "r1")
        assert content(node) == "r1\n"
        assert worker.error is None, worker.error
        (last,) = [e for e in loop.of(EventType.RUN_FINISHED) if e.data["command"] == "apply"][-1:]
        assert last.data["status"] == "succeeded"
        assert logins(node) - before == 2  # the reconnect, then verify's login
        assert not loop.of(EventType.SOURCE_ERROR)


# Drops new SSH connections and keeps established ones (the kept one among them).
LOCKOUT_NFT = """chain input {
  type filter hook input priority 0; policy accept;
  ct state established,related accept
  tcp dport 22 drop
}"""


async def test_a_change_that_stops_new_logins_still_fails_verify_with_a_kept_connection(
    kc_fleet: Fleet, tmp_path: Path
) -> None:
    """The kept connection would still read the node fine; verify logs in anew, sees the
    lockout, and the rollback goes over the connection the transaction held."""
    node = kc_fleet.nodes[NODE]
    infra = Infra(tmp_path / "infra")
    infra.commit(documents(kc_fleet, "l0\n"), "l0")
    infra.push()
    async with running(settings(tmp_path, infra)) as loop:
        worker = loop.controller.workers["infra"]
        await loop.until(lambda: worker.last_sync is not None, what="the first sync")
        await loop.idle()
        lockout = resource(
            "NftTable", "lockout", {"node": NODE}, family="inet", name="fzkept",
            definition=LOCKOUT_NFT,
        )  # fmt: skip
        revision = infra.commit([*documents(kc_fleet, "l1\n"), lockout], "lockout")
        infra.push()
        assert await loop.controller.notify_push(infra.url, "refs/heads/main", revision)
        await loop.until(
            lambda: bool(loop.of(EventType.NODE_ROLLED_BACK)), timeout=30, what="the rollback"
        )
        (rolled,) = loop.of(EventType.NODE_ROLLED_BACK)
        assert f"no answer from {node.address}:22" in rolled.data["reason"]
        assert content(node) == "l0\n"
        assert node.run("nft list table inet fzkept", check=False).returncode != 0
        assert len(loop.of(EventType.NODE_VERIFIED)) == 1  # the first sync's only


CUT = (
    "nft add table inet fzcut && nft add chain inet fzcut input "
    "'{ type filter hook input priority -300; policy drop; }'"
)


async def test_a_network_cut_is_found_while_idle_and_the_node_reconnected_after(
    kc_fleet: Fleet, tmp_path: Path
) -> None:
    """No packet comes back (no reset, no close): the idle connection's keepalives go
    unanswered and it is dropped, so the next pass fails as fast as a new connection to
    a cut node would (not after the 45 s an in-use connection is given), and heals."""
    node = kc_fleet.nodes[NODE]
    infra = Infra(tmp_path / "infra")
    infra.commit(documents(kc_fleet, "n0\n"), "n0")
    infra.push()
    async with running(settings(tmp_path, infra)) as loop:
        worker = loop.controller.workers["infra"]
        await loop.until(lambda: worker.last_sync is not None, what="the first sync")
        await loop.idle()
        assert await settled(node, 1) == 1
        node.run(CUT)
        try:
            await asyncio.sleep(5)  # connectTimeout 3: keepalives every 1 s, 3 unanswered
            asked = time.monotonic()
            await loop.controller.trigger("infra")
            await loop.until(lambda: worker.error is not None, timeout=30, what="the failure")
            assert time.monotonic() - asked < 6, worker.error
            assert NODE in (worker.error or "")
        finally:
            node.run("nft delete table inet fzcut")
        before = logins(node)
        await commit(loop, infra, documents(kc_fleet, "n1\n"), "n1")
        assert content(node) == "n1\n"
        assert worker.error is None, worker.error
        assert logins(node) - before == 2


@pytest.fixture
def new_host_key(kc_fleet: Fleet) -> Iterator[FleetNode]:
    """The node gets a new host key (sshd restarted, sessions gone); the old one is put
    back afterwards."""
    node = kc_fleet.nodes[NODE]
    node.run(f"cp {HOST_KEY} /root/old_host_key && cp {HOST_KEY}.pub /root/old_host_key.pub")
    try:
        yield node
    finally:
        node.run(f"cp /root/old_host_key {HOST_KEY} && cp /root/old_host_key.pub {HOST_KEY}.pub")
        node.stop()
        node.start()


async def test_a_node_whose_host_key_changed_between_passes_is_refused(
    kc_fleet: Fleet, new_host_key: FleetNode, tmp_path: Path
) -> None:
    node = new_host_key
    infra = Infra(tmp_path / "infra")
    infra.commit(documents(kc_fleet, "k0\n"), "k0")
    infra.push()
    async with running(settings(tmp_path, infra)) as loop:
        worker = loop.controller.workers["infra"]
        await loop.until(lambda: worker.last_sync is not None, what="the first sync")
        await loop.idle()
        assert content(node) == "k0\n"
        node.run(f"rm -f {HOST_KEY} {HOST_KEY}.pub && ssh-keygen -q -t ed25519 -N '' -f {HOST_KEY}")
        node.stop()
        node.start()
        before = logins(node)
        revision = infra.commit(documents(kc_fleet, "k1\n"), "k1")
        infra.push()
        assert await loop.controller.notify_push(infra.url, "refs/heads/main", revision)
        await loop.until(lambda: worker.error is not None, what="the refusal")
        assert "host key" in (worker.error or "")
        assert content(node) == "k0\n"
        assert logins(node) == before  # refused before logging in, and never retried past it
        assert not [e for e in loop.of(EventType.RUN_STARTED) if e.data["command"] == "apply"][1:]


async def test_an_edited_known_hosts_file_means_a_new_checked_connection(
    kc_fleet: Fleet, tmp_path: Path
) -> None:
    """The operator revokes the node's key in known_hosts while its connection is kept:
    the next pass does not use the kept connection, and the new one is refused."""
    node = kc_fleet.nodes[NODE]
    known = tmp_path / "known_hosts"
    kc_fleet.write_known_hosts(known)
    infra = Infra(tmp_path / "infra")
    infra.commit(documents(kc_fleet, "h0\n", knownHostsFile=str(known)), "h0")
    infra.push()
    async with running(settings(tmp_path, infra)) as loop:
        worker = loop.controller.workers["infra"]
        await loop.until(lambda: worker.last_sync is not None, what="the first sync")
        await loop.idle()
        assert content(node) == "h0\n"
        assert await settled(node, 1) == 1
        other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBSnQhXhLRn3R1yxbCrdxe2dFXh4TfIzsWQhITd3rlTJ"
        kc_fleet.write_known_hosts(known, {NODE: other})
        await loop.controller.trigger("infra")
        await loop.until(lambda: worker.error is not None, what="the refusal")
        assert "host key" in (worker.error or "")
        # The kept connection was closed, not used: nothing trusts that key any more.
        assert await settled(node, 0) == 0


@pytest.fixture
def one_session(kc_fleet: Fleet) -> Iterator[FleetNode]:
    """The node's sshd takes one session per connection (MaxSessions 1)."""
    node = kc_fleet.nodes[NODE]
    config = "/etc/ssh/sshd_config"
    node.run(f"sed -i 's/^MaxSessions .*/MaxSessions 1/' {config}")
    node.stop()
    node.start()
    try:
        yield node
    finally:
        node.run(f"sed -i 's/^MaxSessions .*/MaxSessions 50/' {config}")
        node.stop()
        node.start()


def test_users_at_the_same_time_get_connections_of_their_own(
    kc_fleet: Fleet, one_session: FleetNode
) -> None:
    """One user at a time on a kept connection: it never opens a second session, which
    a node with MaxSessions 1 would refuse; the others get their own, closed after."""
    node = one_session
    target = ssh.SshTarget(
        NODE, node.address, 22, "root", kc_fleet.private_key_file, False,
        kc_fleet.known_hosts_file, 3.0, 30.0,
    )  # fmt: skip

    async def scenario() -> tuple[list[int | None], int, int, int]:
        async with pool.kept() as kept:
            together = await asyncio.gather(
                *(pool.read(target, "sleep 0.3; echo ok") for _ in range(3))
            )
            concurrent = kept.connects
            for _ in range(3):
                assert (await pool.read(target, "echo ok")).exit_status == 0
            return [r.exit_status for r in together], concurrent, kept.connects, kept.open()

    before = logins(node)
    statuses, concurrent, total, open_now = asyncio.run(scenario())
    assert statuses == [0, 0, 0]
    assert (concurrent, total, open_now) == (3, 3, 1)  # the later reads took the kept one
    assert logins(node) - before == 3


def test_an_apply_converges_over_one_kept_connection_on_a_one_session_node(
    kc_fleet: Fleet, one_session: FleetNode, tmp_path: Path
) -> None:
    """Plan, re-read, snapshot and write one after the other on one connection, each
    session opened as the one before closes (MaxSessions 1); verify's login is the second
    connection."""
    node = one_session
    folder = tmp_path / "desired"
    folder.mkdir()
    (folder / "state.yaml").write_text(yaml.safe_dump_all(documents(kc_fleet, "s1\n")))
    state = loader.load(open_source(str(folder)))

    async def scenario() -> tuple[NodeStatus, str, int]:
        async with pool.kept() as kept:
            plan = await planning.build(state)
            with StateStore(tmp_path / "state.db") as store:
                result = await applying.apply(state, plan, store)
            (outcome,) = result.nodes
            return outcome.status, outcome.message, kept.connects

    before = logins(node)
    status, message, connects = asyncio.run(scenario())
    assert status is NodeStatus.CONVERGED, message
    assert content(node) == "s1\n"
    assert connects == 2
    assert logins(node) - before == 2


def fleet_target(fleet: Fleet, **changes: Any) -> ssh.SshTarget:
    node = fleet.nodes[NODE]
    fields: dict[str, Any] = {
        "node": NODE, "address": node.address, "port": 22, "user": "root",
        "private_key_file": fleet.private_key_file, "use_agent": False,
        "known_hosts_file": fleet.known_hosts_file, "connect_timeout": 3.0,
        "command_timeout": 30.0,
    }  # fmt: skip
    return ssh.SshTarget(**{**fields, **changes})


def test_a_changed_node_document_means_a_new_connection_and_the_old_one_closed(
    kc_fleet: Fleet,
) -> None:
    node = kc_fleet.nodes[NODE]

    async def scenario() -> tuple[int, int, int, int]:
        async with pool.kept() as kept:
            await pool.read(fleet_target(kc_fleet), "true")
            await pool.read(fleet_target(kc_fleet), "true")
            same = kept.connects
            await pool.read(fleet_target(kc_fleet, command_timeout=31.0), "true")
            return same, kept.connects, kept.open(), await settled(node, 1)

    assert asyncio.run(scenario()) == (1, 2, 1, 1)


def test_an_idle_connection_is_closed_after_the_bound(kc_fleet: Fleet) -> None:
    node = kc_fleet.nodes[NODE]

    async def scenario() -> tuple[int, int, int]:
        async with pool.kept(idle=0.3) as kept:
            await pool.read(fleet_target(kc_fleet), "true")
            held = kept.open()
            await asyncio.sleep(0.8)
            left = kept.open()
            await pool.read(fleet_target(kc_fleet), "true")  # a new one, as at first
            return held, left, kept.connects

    assert asyncio.run(scenario()) == (1, 0, 2)
    assert asyncio.run(settled(node, 0)) == 0  # and the last one closed with the block


def test_outside_a_kept_block_no_pool_is_active() -> None:
    async def check() -> tuple[bool, bool, bool]:
        before = pool.current() is None
        async with pool.kept() as outer, pool.kept() as inner:
            same = outer is inner and pool.current() is outer
        return before, same, pool.current() is None

    assert asyncio.run(check()) == (True, True, True)
