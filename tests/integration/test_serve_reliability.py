"""The loop keeps running through a git remote, a node or a firewall down: the source
shows the error and backs off, the healthy nodes converge, and it heals on return."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.events import EventType
from controller.reconcile.config import ControllerConfig
from controller.reconcile.handle import Mode
from controller.store import TransactionStatus
from controller.testing.fleet import Fleet
from controller.testing.opnsense import EmulatorServer
from tests.integration.servekit import (
    Infra,
    file_doc,
    firewall_node,
    linux_node,
    rule_doc,
    running,
    source,
    started_fleet,
)


@pytest.fixture(scope="module")
def serve_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with started_fleet(tmp_path_factory.mktemp("serve-fleet")) as fleet:
        yield fleet


@pytest.fixture
def firewall() -> Iterator[EmulatorServer]:
    with EmulatorServer(version="26.1") as emu:
        yield emu


def settings(tmp_path: Path, infra: Infra) -> ControllerConfig:
    return ControllerConfig(
        sources=(source(infra, mode=Mode.AUTO, timeout=10),),
        state=tmp_path / "state.db",
        cache_dir=tmp_path / "cache",
        drift_check=0,
        settle=0.05,
        backoff_initial=0.3,
        backoff_max=1.0,
    )


def descriptions(emu: EmulatorServer) -> set[str]:
    return {item.get("description", "") for item in emu.state.list("rule").values()}


async def test_a_git_remote_that_disappears_is_retried_with_backoff(
    firewall: EmulatorServer, tmp_path: Path
) -> None:
    infra = Infra(tmp_path / "infra")
    node = firewall_node(firewall, tmp_path / "secrets")
    infra.commit([node, rule_doc("first", 1000)])
    infra.push()
    async with running(settings(tmp_path, infra)) as loop:
        controller = loop.controller
        worker = controller.workers["infra"]
        await loop.until(lambda: worker.last_sync is not None, what="first sync")
        await loop.idle()

        gone = infra.remote_path.with_name("moved-away.git")
        infra.remote_path.rename(gone)
        await controller.trigger("infra")
        await loop.until(lambda: len(loop.of(EventType.SOURCE_ERROR)) >= 3, what="3 retries")
        errors = loop.of(EventType.SOURCE_ERROR)
        retries = [e.data["retry_in"] for e in errors]
        assert all(0.15 <= r <= 1.0 for r in retries), retries
        assert "git failed" in errors[0].data["message"]
        (status,) = controller.sources()
        assert status.error is not None and status.retry_at is not None
        assert controller.ready()  # failed and backing off counts as read
        assert not controller._worker_tasks["infra"].done()  # the loop is alive
        assert len(loop.of(EventType.RECONCILE_QUEUED, reason="retry")) >= 2

        # Back, with a new commit pushed meanwhile: the next retry picks it up.
        gone.rename(infra.remote_path)
        newer = infra.commit([node, rule_doc("first", 1000), rule_doc("second", 2000, sequence=2)])
        infra.push()
        await loop.until(lambda: worker.revision == newer and worker.error is None, what="heal")
        (status,) = controller.sources()
        assert (status.error, status.retry_at) == (None, None)
        assert "second to 2000" in descriptions(firewall)
        assert worker.backoff.failures == 0


async def test_a_node_down_beside_healthy_ones(
    serve_fleet: Fleet, firewall: EmulatorServer, tmp_path: Path
) -> None:
    infra = Infra(tmp_path / "infra")
    path = "/etc/fazai-serve/down"
    for name in ("web-1", "web-2"):
        serve_fleet.nodes[name].run(f"mkdir -p /etc/fazai-serve && rm -f {path}")
    serve_fleet.nodes["web-1"].run(f"printf 'up\\n' > {path} && chmod 0644 {path}")
    docs = [
        linux_node(serve_fleet, "web-1"),
        linux_node(serve_fleet, "web-2"),
        firewall_node(firewall, tmp_path / "secrets"),
        file_doc("down", {"matchLabels": {"fleet": "serve"}}, path, "up\n"),
        rule_doc("still-served", 8000),
    ]
    infra.commit(docs)
    infra.push()
    serve_fleet.nodes["web-2"].stop()
    try:
        async with running(settings(tmp_path, infra)) as loop:
            worker = loop.controller.workers["infra"]
            await loop.until(lambda: bool(loop.of(EventType.SOURCE_ERROR)), what="an error")
            # The healthy nodes converged; the one down is reported and retried.
            assert "still-served to 8000" in descriptions(firewall)
            read = {e.data["node"]: e.data["error"] for e in loop.of(EventType.NODE_READ)}
            assert read["web-1"] is None and read["edge-fw"] is None
            assert read["web-2"] is not None
            (status,) = loop.controller.sources()
            assert status.error is not None and "web-2" in status.error
            assert status.retry_at is not None
            drift = {d.node: d for d in loop.controller.drift()}
            assert drift["web-2"].error is not None and drift["web-1"].error is None
            assert loop.of(EventType.SOURCE_ERROR)[0].data["retry_in"] > 0

            serve_fleet.nodes["web-2"].start()
            await loop.until(lambda: worker.error is None, timeout=60, what="web-2 healed")
            assert serve_fleet.nodes["web-2"].run(f"cat {path}").stdout == b"up\n"
            assert loop.of(EventType.NODE_VERIFIED, node="web-2")
    finally:
        serve_fleet.nodes["web-2"].start()


async def test_a_firewall_down_is_retried_until_it_returns(
    firewall: EmulatorServer, tmp_path: Path
) -> None:
    infra = Infra(tmp_path / "infra")
    node = firewall_node(firewall, tmp_path / "secrets")
    infra.commit([node, rule_doc("before", 1)])
    infra.push()
    config = dataclasses.replace(settings(tmp_path, infra), backoff_initial=0.5, backoff_max=2.0)
    async with running(config) as loop:
        worker = loop.controller.workers["infra"]
        await loop.until(lambda: worker.last_sync is not None, what="first sync")
        await loop.idle()
        port, state = firewall.port, firewall.state
        firewall.stop()
        after = infra.commit([node, rule_doc("before", 1), rule_doc("after", 2, sequence=2)])
        infra.push()
        await loop.controller.notify_push(infra.url, "main", after)
        await loop.until(lambda: bool(loop.of(EventType.SOURCE_ERROR)), what="the firewall error")
        (failed,) = [e for e in loop.of(EventType.NODE_READ) if e.data["error"]][:1]
        assert failed.data["node"] == "edge-fw"
        assert worker.error is not None and "edge-fw" in worker.error
        back = EmulatorServer(
            api_key=firewall.api_key, api_secret=firewall.api_secret, state=state, port=port
        ).start()
        try:
            await loop.until(lambda: worker.error is None, timeout=60, what="firewall healed")
            assert "after to 2" in descriptions(back)
        finally:
            back.stop()


async def test_a_failed_rollback_is_finished_before_the_node_is_written_again(
    firewall: EmulatorServer, tmp_path: Path
) -> None:
    # Every write and every rollback request fails: the transaction stays open with its
    # owner (this serve) alive. The next pass must roll it back before writing anew, and
    # nothing may restore that old snapshot over the commit that follows.
    infra = Infra(tmp_path / "infra")
    node = firewall_node(firewall, tmp_path / "secrets")
    infra.commit([node, rule_doc("before", 1)])
    infra.push()
    firewall.faults.fail(500, method="POST", nth=2, times=None)  # after the savepoint
    config = dataclasses.replace(settings(tmp_path, infra), backoff_initial=0.5, backoff_max=1.0)
    async with running(config) as loop:
        worker = loop.controller.workers["infra"]
        store = loop.controller.store
        failed = lambda: loop.of(EventType.NODE_FAILED)  # noqa: E731
        await loop.until(
            lambda: any("ROLLBACK FAILED" in e.data.get("reason", "") for e in failed()),
            what="a rollback that failed",
        )
        (left,) = store.open_transactions()
        firewall.faults.clear()
        await loop.until(lambda: worker.error is None, timeout=60, what="healed")
        await loop.idle()
        assert store.open_transactions() == []
        closed = store.transaction(left.id)
        assert closed is not None and closed.status is TransactionStatus.ROLLED_BACK
        # Converged since, and nothing open that a CLI apply's recovery could restore.
        assert store.later_commit("edge-fw", left.id) is not None
    assert "before to 1" in descriptions(firewall)
