"""A GitOps loop under test: a bare "remote" with a working copy, the real controller
in-process, and its events recorded with their arrival times."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import git
import pytest
import yaml

from controller.events import Event, EventType
from controller.reconcile.config import ControllerConfig, SourceConfig
from controller.reconcile.controller import Controller
from controller.store import StateStore
from controller.testing.fleet import Fleet, NodeSpec, fleet_available
from controller.testing.opnsense import EmulatorServer

SUBNET = "10.231.20.0/24"
NODES = (
    NodeSpec("web-1", "10.231.20.11"),
    NodeSpec("web-2", "10.231.20.12"),
    NodeSpec("db-1", "10.231.20.13"),
)
AUTHOR = git.Actor("Test", "test@example.invalid")
API = "fazai.dev/v1alpha1"


@contextlib.contextmanager
def started_fleet(workdir: Path) -> Iterator[Fleet]:
    reason = fleet_available()
    if reason is not None:
        pytest.skip(f"no fleet: {reason}")
    with Fleet(NODES, workdir=workdir, subnet=SUBNET, subnet_wait=600) as fleet:
        yield fleet


def linux_node(fleet: Fleet, name: str, **spec: Any) -> dict[str, Any]:
    node = fleet.nodes[name]
    return {
        "apiVersion": API,
        "kind": "Node",
        "metadata": {"name": name, "labels": {"fleet": "serve"}},
        "spec": {
            "platform": "linux",
            "address": node.address,
            "auth": {"privateKeyFile": str(fleet.private_key_file)},
            "knownHostsFile": str(fleet.known_hosts_file),
            "connectTimeout": 3,
            **spec,
        },
    }


def firewall_node(emu: EmulatorServer, folder: Path, name: str = "edge-fw") -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.key").write_text(emu.api_key + "\n")
    (folder / f"{name}.secret").write_text(emu.api_secret + "\n")
    return {
        "apiVersion": API,
        "kind": "Node",
        "metadata": {"name": name},
        "spec": {
            "platform": "opnsense",
            "url": emu.url,
            "apiKeyRef": {"file": str(folder / f"{name}.key")},
            "apiSecretRef": {"file": str(folder / f"{name}.secret")},
            "requestTimeout": 3,
        },
    }


def resource(kind: str, doc_name: str, target: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": kind,
        "metadata": {"name": doc_name},
        "spec": {"target": target, **spec},
    }


def file_doc(name: str, target: dict[str, Any], path: str, content: str) -> dict[str, Any]:
    return resource("File", name, target, path=path, content=content, mode="0644")


def rule_doc(name: str, port: int, node: str = "edge-fw", sequence: int = 100) -> dict[str, Any]:
    return resource(
        "FirewallRule",
        name,
        {"node": node},
        interface="lan",
        protocol="TCP",
        destination={"port": port},
        sequence=sequence,
        description=f"{name} to {port}",
    )


class Infra:
    """A bare repository standing in for the forge, and a working copy pushing to it."""

    def __init__(self, root: Path) -> None:
        self.remote_path = root / "remote.git"
        git.Repo.init(self.remote_path, bare=True, initial_branch="main")
        self.work = git.Repo.init(root / "work", initial_branch="main")
        self.work.create_remote("origin", str(self.remote_path))
        self.root = Path(str(self.work.working_tree_dir))

    @property
    def url(self) -> str:
        return f"file://{self.remote_path}"

    def commit(self, documents: list[dict[str, Any]], message: str = "change") -> str:
        folder = self.root / "desired"
        folder.mkdir(exist_ok=True)
        (folder / "state.yaml").write_text(yaml.safe_dump_all(documents, sort_keys=False))
        self.work.git.add("--all")
        return str(self.work.index.commit(message, author=AUTHOR, committer=AUTHOR).hexsha)

    def push(self) -> None:
        self.work.git.push("origin", "main")


def source(infra: Infra, **overrides: Any) -> SourceConfig:
    base = SourceConfig(name="infra", url=infra.url, path="desired", poll=0)
    return dataclasses.replace(base, **overrides)


@dataclasses.dataclass
class Loop:
    controller: Controller
    events: list[tuple[float, Event]]

    def of(self, type: EventType, **match: Any) -> list[Event]:
        return [
            e
            for _, e in self.events
            if e.type is type and all(e.data.get(k) == v for k, v in match.items())
        ]

    def times(self, type: EventType, **match: Any) -> list[float]:
        return [
            t
            for t, e in self.events
            if e.type is type and all(e.data.get(k) == v for k, v in match.items())
        ]

    async def until(
        self, condition: Callable[[], bool], timeout: float = 30, what: str = "condition"
    ) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                seen = [f"{e.type.value} {dict(e.data)}" for _, e in self.events[-15:]]
                raise AssertionError(
                    f"timed out waiting for {what}; last events:\n" + "\n".join(seen)
                )
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)  # let the recorder take the events published meanwhile

    async def idle(self, name: str = "infra") -> None:
        """Until the source has nothing running or waiting."""
        worker = self.controller.workers[name]
        await self.until(
            lambda: not worker.busy and worker.wanted.pending is None, what=f"{name} idle"
        )


@contextlib.asynccontextmanager
async def running(config: ControllerConfig, start: bool = True) -> AsyncIterator[Loop]:
    assert config.state is not None
    with StateStore(config.state) as store:
        controller = Controller(config, store)
        events: list[tuple[float, Event]] = []
        ready = asyncio.Event()

        async def record() -> None:
            async with controller.events.subscribe() as queue:
                ready.set()
                while True:
                    event = await queue.get()
                    events.append((time.monotonic(), event))

        recorder = asyncio.create_task(record())
        await ready.wait()
        loop = Loop(controller, events)
        try:
            if start:
                await controller.start()
            yield loop
        finally:
            if start:
                await controller.stop(grace=30)
            recorder.cancel()
