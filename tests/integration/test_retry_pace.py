"""The loop retries at the pace the failure calls for, read off the exception tree.

A permanent failure (the firewall refuses the API key; an SSH node whose host key does
not match) backs off to the ceiling at once and is said once; a temporary one that names
its wait (503 with Retry-After) waits exactly that; a new commit is reconciled at once
even while backing off from a permanent failure. The worker's clock seam records each
wait instead of sleeping it, so the test drives the real loop without waiting.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import http.server
import ipaddress
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import asyncssh
import pytest

from controller.events import EventType
from controller.reconcile import triggers
from controller.reconcile.config import ControllerConfig
from controller.reconcile.controller import Controller
from controller.reconcile.handle import Mode
from controller.reconcile.wanted import Request
from controller.reconcile.worker import SourceWorker
from controller.store import StateStore, Trigger
from controller.testing.fleet import Fleet, NodeSpec, fleet_available
from controller.testing.opnsense import EmulatorServer
from tests.integration.servekit import Infra, firewall_node, linux_node, rule_doc, running, source

CEILING = 120.0
# $FAZAI_FLEET_SUBNET moves this module's fleet too (sessions sharing a machine).
SUBNET = os.environ.get("FAZAI_FLEET_SUBNET") or "10.242.1.0/24"


class Clock:
    """The worker's schedule seam: records (seconds, callback), runs nothing."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.callbacks: list[Callable[[], None]] = []

    def __call__(self, delay: float, callback: Callable[[], None]) -> Clock:
        self.waits.append(delay)
        self.callbacks.append(callback)
        return self

    def cancel(self) -> None:
        pass


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
        settle=0.01,
        backoff_initial=0.5,
        backoff_max=CEILING,
    )


def waited(clock: Clock, count: int) -> bool:
    return len(clock.waits) == count


def seam(worker: SourceWorker) -> Clock:
    clock = Clock()
    worker.schedule = clock
    return clock


async def reconcile(worker: SourceWorker) -> None:
    await worker.reconcile(Request("test", Trigger.CLI, force=True))


async def test_a_refused_key_backs_off_to_the_ceiling_said_once_and_a_commit_goes_at_once(
    firewall: EmulatorServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="fazai.reconcile")
    infra = Infra(tmp_path / "infra")
    node = firewall_node(firewall, tmp_path / "secrets")
    (tmp_path / "secrets" / "edge-fw.secret").write_text("not-the-secret\n")
    infra.commit([node, rule_doc("first", 1000)])
    infra.push()
    async with running(settings(tmp_path, infra), start=False) as loop:
        controller = loop.controller
        worker = controller.workers["infra"]
        clock = seam(worker)
        await controller.start()
        try:
            await loop.until(lambda: len(clock.waits) == 1, what="the first failure")
            for waits in (2, 3):  # the retry timer fires (its real callback), twice
                clock.callbacks[-1]()
                await loop.until(functools.partial(waited, clock, waits), what="a retry")
            assert clock.waits == [CEILING, CEILING, CEILING]  # not 0.5, 1, 2
            (status,) = controller.sources()
            assert status.error is not None and "401" in status.error
            assert "permanent: retried every 2m, or at once on a new commit" in status.error
            errors = loop.of(EventType.SOURCE_ERROR)
            assert [e.data["permanent"] for e in errors] == [True, True, True]
            said = [r for r in caplog.records if "cannot succeed by retrying" in r.getMessage()]
            assert len(said) == 1, [r.getMessage() for r in said]
            assert "AuthenticationError" in said[0].getMessage()
            assert worker.backing_off and not worker.backing_off_fast  # the poller asks on

            # The fix arrives with a commit (the key rotated, its secret file with it): the
            # webhook's request is reconciled at once, not after the ceiling.
            (tmp_path / "secrets" / "edge-fw.secret").write_text(firewall.api_secret + "\n")
            infra.commit([node, rule_doc("first", 1000), rule_doc("second", 2000, sequence=2)])
            infra.push()
            assert await controller.notify_push(infra.url, "refs/heads/main", None)
            await loop.until(lambda: worker.error is None, timeout=20, what="converged")
            assert len(clock.waits) == 3  # no retry was waited for
            assert worker.backoff.failures == 0 and worker.retry_decision is None
            described = {r.get("description") for r in firewall.state.list("rule").values()}
            assert "second to 2000" in described
        finally:
            await controller.stop(grace=10)


async def test_a_503_with_retry_after_waits_that_long(
    firewall: EmulatorServer, tmp_path: Path
) -> None:
    infra = Infra(tmp_path / "infra")
    infra.commit([firewall_node(firewall, tmp_path / "secrets"), rule_doc("first", 1000)])
    infra.push()
    firewall.faults.fail(503, times=None, headers={"Retry-After": "9"})
    async with running(settings(tmp_path, infra), start=False) as loop:
        worker = loop.controller.workers["infra"]
        clock = seam(worker)
        await reconcile(worker)
        await reconcile(worker)
        assert clock.waits == [9.0, 9.0]
        assert worker.retry_decision is not None and worker.retry_decision.delay == 9.0
        (status,) = loop.controller.sources()
        assert status.error is not None and "503" in status.error
        assert "permanent" not in status.error
        assert worker.backing_off_fast

        firewall.faults.clear()  # back: the timer's retry converges
        clock.callbacks[-1]()
        await reconcile(worker)
        assert worker.error is None and worker.backoff.failures == 0


async def test_a_timeout_backs_off_exponentially(firewall: EmulatorServer, tmp_path: Path) -> None:
    infra = Infra(tmp_path / "infra")
    node = firewall_node(firewall, tmp_path / "secrets")
    node["spec"]["requestTimeout"] = 0.3
    infra.commit([node, rule_doc("first", 1000)])
    infra.push()
    firewall.faults.delay(2.0)
    async with running(settings(tmp_path, infra), start=False) as loop:
        worker = loop.controller.workers["infra"]
        worker.backoff._rand = lambda: 1.0  # no jitter, to compare
        clock = seam(worker)
        for _ in range(3):
            await reconcile(worker)
        assert clock.waits == [0.5, 1.0, 2.0]


# -- a real SSH node whose host key does not match (the fleet) ----------------------------


@pytest.fixture(scope="module")
def one_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    reason = fleet_available()
    if reason is not None:
        pytest.skip(f"no fleet: {reason}")
    address = str(ipaddress.ip_network(SUBNET)[11])
    nodes = (NodeSpec("web-1", address),)
    with Fleet(nodes, workdir=tmp_path_factory.mktemp("retry-fleet"), subnet=SUBNET) as fleet:
        yield fleet


async def test_a_changed_host_key_is_permanent_and_a_503_beside_it_sets_the_pace(
    one_node: Fleet, firewall: EmulatorServer, tmp_path: Path
) -> None:
    """The source retries at the 503's pace, but the node whose host key does not verify
    is not read again at that pace (each read one more refused login: a lockout risk).
    It is skipped and reported until its known_hosts changes, the ceiling passes, or a
    reconcile is asked by hand."""
    address = one_node.nodes["web-1"].address
    stranger = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"{address} {stranger}")
    linux = linux_node(one_node, "web-1", knownHostsFile=str(known_hosts))
    infra = Infra(tmp_path / "infra")
    infra.commit([linux])
    infra.push()
    async with running(settings(tmp_path, infra), start=False) as loop:
        worker = loop.controller.workers["infra"]
        clock = seam(worker)
        now = datetime.now(UTC)
        worker.clock = lambda: now
        await retry(worker)
        assert clock.waits == [CEILING]
        assert worker.retry_decision is not None
        assert worker.retry_decision.reason == "HostKeyError"
        assert worker.error is not None and "host key" in worker.error

        def reads() -> int:
            return len(loop.of(EventType.NODE_READ, node="web-1"))

        await loop.until(lambda: reads() == 1, what="web-1 read once")

        # A second node failing temporarily beside it: the source keeps the faster pace,
        # and web-1 is not read at that pace, only reported.
        firewall.faults.fail(503, times=None, headers={"Retry-After": "4"})
        infra.commit([linux, firewall_node(firewall, tmp_path / "secrets")])
        infra.push()
        await retry(worker)
        await retry(worker)
        assert clock.waits == [CEILING, 4.0, 4.0]  # Retry-After 4: a floor on the backoff
        await asyncio.sleep(0.1)
        assert reads() == 1
        assert worker.error is not None and "web-1: still refused: " in worker.error
        assert "host key" in worker.error and "retrying at" in worker.error

        # The ceiling passes: web-1 is tried once more (still refused).
        now += timedelta(seconds=CEILING)
        await retry(worker)
        await loop.until(lambda: reads() == 2, what="web-1 read at the ceiling")
        await retry(worker)
        await asyncio.sleep(0.1)
        assert reads() == 2

        # A reconcile asked by hand reads it at once.
        await worker.reconcile(Request("api", Trigger.API, force=True))
        await loop.until(lambda: reads() == 3, what="web-1 read on a manual trigger")

        # Its known_hosts fixed (what it references changed): read at once, and in sync.
        known_hosts.write_text(one_node.known_hosts_file.read_text())
        firewall.faults.clear()
        await retry(worker)
        await loop.until(lambda: reads() == 4, what="web-1 read after the fix")
        assert worker.error is None, worker.error
        assert "web-1" not in worker.refusals


async def retry(worker: SourceWorker) -> None:
    await worker.reconcile(Request("retry", Trigger.SCHEDULE, force=True))


# -- a failure no pass handles itself: the source is never left dead ----------------------


async def test_a_locked_state_store_is_reported_retried_and_recovers_when_released(
    firewall: EmulatorServer, tmp_path: Path
) -> None:
    infra = Infra(tmp_path / "infra")
    infra.commit([firewall_node(firewall, tmp_path / "secrets"), rule_doc("first", 1000)])
    infra.push()
    config = settings(tmp_path, infra)
    assert config.state is not None
    with StateStore(config.state, busy_timeout=0.3) as store:
        controller = Controller(config, store)
        worker = controller.workers["infra"]
        clock = seam(worker)
        # Another process (a `fazai apply`, a backup tool) holds the write lock.
        holder = sqlite3.connect(config.state, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            assert await worker.reconcile(Request("retry", Trigger.SCHEDULE, force=True)) is None
            assert worker.error is not None and "locked by another process" in worker.error
            assert worker.retry_decision is not None and worker.retry_decision.temporary
            assert worker.retry_decision.reason == "StoreLockedError"
            assert len(clock.waits) == 1 and worker.backing_off_fast  # retried, not dead
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        clock.callbacks[-1]()  # the retry timer fires: its request is queued
        assert worker.wanted.pending is not None
        outcome = await worker.reconcile(Request("retry", Trigger.SCHEDULE, force=True))
        assert outcome is not None and not outcome.problems
        assert worker.error is None and worker.backoff.failures == 0
        await controller.stop(grace=5)


async def test_a_crashed_worker_is_logged_shown_and_restarted(
    firewall: EmulatorServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    infra = Infra(tmp_path / "infra")
    infra.commit([firewall_node(firewall, tmp_path / "secrets"), rule_doc("first", 1000)])
    infra.push()
    async with running(settings(tmp_path, infra), start=False) as loop:
        controller = loop.controller
        worker = controller.workers["infra"]
        real = worker.wanted.take
        calls = []

        async def take() -> Request:
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("a bug in the loop")
            return await real()

        worker.wanted.take = take  # type: ignore[method-assign]
        await controller.start()
        try:
            await loop.until(lambda: worker.passes >= 1 and worker.error is None, what="restart")
            errors = [e.data["message"] for e in loop.of(EventType.SOURCE_ERROR)]
            assert any("worker failed (RuntimeError" in m for m in errors), errors
            assert any("restarting it" in r.getMessage() for r in caplog.records)
            assert not controller._worker_tasks["infra"].done()
        finally:
            await controller.stop(grace=10)


# -- the source itself refuses us: polling waits for the ceiling ---------------------------


class _Refusing(http.server.BaseHTTPRequestHandler):
    """A git server over HTTP that refuses every request (401), counting them."""

    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="git"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def refusing_remote() -> Iterator[tuple[str, list[str]]]:
    hits: list[str] = []
    handler = type("Handler", (_Refusing,), {"hits": hits})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/infra.git", hits
    finally:
        server.shutdown()
        server.server_close()


async def test_a_remote_refusing_our_credentials_is_not_polled_at_the_poll_pace(
    tmp_path: Path, refusing_remote: tuple[str, list[str]]
) -> None:
    url, hits = refusing_remote
    infra = Infra(tmp_path / "infra")
    config = settings(tmp_path, infra)
    config = dataclasses.replace(config, sources=(source(infra, url=url, poll=0.05),))
    async with running(config, start=False) as loop:
        worker = loop.controller.workers["infra"]
        clock = seam(worker)
        await reconcile(worker)
        assert worker.retry_decision is not None and worker.retry_decision.permanent
        assert clock.waits == [CEILING] and worker.backing_off_refused
        before = len(hits)
        poller = asyncio.create_task(triggers.poll(worker, 0.05))
        try:
            await asyncio.sleep(1.5)  # about 30 polls at 50 ms
        finally:
            poller.cancel()
        # One ls-remote may learn that the remote refuses it too; then none until the
        # retry at the ceiling (before: one per poll, each a refused login).
        assert len(hits) - before <= 2, hits[before:]
        assert worker.wanted.pending is None
