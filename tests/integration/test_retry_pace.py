"""The loop retries at the pace the failure calls for, read off the exception tree.

A permanent failure (the firewall refuses the API key; an SSH node whose host key does
not match) backs off to the ceiling at once and is said once; a temporary one that names
its wait (503 with Retry-After) waits exactly that; a new commit is reconciled at once
even while backing off from a permanent failure. The worker's clock seam records each
wait instead of sleeping it, so the test drives the real loop without waiting.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncssh
import pytest

from controller.events import EventType
from controller.reconcile.config import ControllerConfig
from controller.reconcile.handle import Mode
from controller.reconcile.wanted import Request
from controller.reconcile.worker import SourceWorker
from controller.store import Trigger
from controller.testing.fleet import Fleet, NodeSpec, fleet_available
from controller.testing.opnsense import EmulatorServer
from tests.integration.servekit import Infra, firewall_node, linux_node, rule_doc, running, source

CEILING = 120.0
SUBNET = "10.242.1.0/24"


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
    nodes = (NodeSpec("web-1", "10.242.1.11"),)
    with Fleet(nodes, workdir=tmp_path_factory.mktemp("retry-fleet"), subnet=SUBNET) as fleet:
        yield fleet


async def test_a_changed_host_key_is_permanent_and_a_503_beside_it_sets_the_pace(
    one_node: Fleet, firewall: EmulatorServer, tmp_path: Path
) -> None:
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
        await reconcile(worker)
        assert clock.waits == [CEILING]
        assert worker.retry_decision is not None
        assert worker.retry_decision.reason == "HostKeyError"
        assert worker.error is not None and "host key" in worker.error

        # A second node failing temporarily beside it: the source keeps the faster pace.
        firewall.faults.fail(503, times=None, headers={"Retry-After": "4"})
        infra.commit([linux, firewall_node(firewall, tmp_path / "secrets")])
        infra.push()
        await reconcile(worker)
        assert clock.waits == [CEILING, 4.0]
