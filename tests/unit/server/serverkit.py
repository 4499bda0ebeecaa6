"""A controller handle for the HTTP API's tests, and ways to serve an app to them.

``FakeHandle`` satisfies ``ControllerHandle`` with a real EventBus and a real StateStore,
and records what the API asked of it. ``asgi_client`` talks to the app in process (with
its lifespan running); ``serving`` runs it on real uvicorn on a free loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets as stdlib_secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from controller.events import EventBus
from controller.plan.diff import Action
from controller.plan.items import PlanItem
from controller.reconcile.handle import (
    ControllerHandle,
    Mode,
    NodeDrift,
    PendingApproval,
    SourceStatus,
    UnknownApproval,
)
from controller.server import build_app, serve_http
from controller.server.settings import Role, SecretRef, ServerSettings, TokenSetting
from controller.store import Command, StateStore, Trigger

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


class FakeHandle:
    def __init__(self, store: StateStore, events: EventBus | None = None) -> None:
        self.events = events or EventBus()
        self.store = store
        self.is_ready = True
        self.source_list: list[SourceStatus] = [
            SourceStatus("infra", "https://git.example/acme/infra.git", "main", "a" * 40, T0)
        ]
        self.drift_list: list[NodeDrift] = []
        self.pending: dict[str, PendingApproval] = {}
        self.triggers: list[tuple[str | None, str]] = []
        self.trigger_actors: list[str] = []  # the token names trigger was given
        self.pushes: list[tuple[str, str, str | None]] = []
        self.followed: set[tuple[str, str]] = set()  # (location, branch) that match a source
        self.approved: list[str] = []
        self.approvers: list[str] = []  # the caller names approve was given
        self.aborted: list[str] = []

    def ready(self) -> bool:
        return self.is_ready

    def sources(self) -> Sequence[SourceStatus]:
        return list(self.source_list)

    def drift(self) -> Sequence[NodeDrift]:
        return list(self.drift_list)

    def approvals(self) -> Sequence[PendingApproval]:
        return list(self.pending.values())

    async def trigger(
        self, source: str | None = None, reason: str = "api", actor: str = ""
    ) -> None:
        self.triggers.append((source, reason))
        self.trigger_actors.append(actor)

    async def notify_push(self, location: str, branch: str, revision: str | None) -> bool:
        self.pushes.append((location, branch, revision))
        return (location, branch) in self.followed

    async def approve(
        self, approval_id: str, by: str, identities: Sequence[str] = ()
    ) -> int | None:
        pending = self.pending.get(approval_id)
        if pending is None:
            raise UnknownApproval(approval_id)
        self.approvers.append(by)
        names = tuple(dict.fromkeys((*pending.approved_by, by)))
        if len(names) < pending.required:  # as the controller counts (distinct names)
            self.pending[approval_id] = dataclasses.replace(pending, approved_by=names)
            return None
        del self.pending[approval_id]
        self.approved.append(approval_id)
        return self.store.start_run(
            Trigger.API, Command.APPLY, pending.source, pending.revision, pending.plan
        )

    async def abort(self, approval_id: str, by: str = "") -> None:
        if self.pending.pop(approval_id, None) is None:
            raise UnknownApproval(approval_id)
        self.aborted.append(approval_id)

    def add_approval(
        self,
        approval_id: str,
        nodes: Sequence[str] = ("edge-fw",),
        plan: Mapping[str, Any] | None = None,
        required: int = 1,
    ) -> None:
        self.pending[approval_id] = PendingApproval(
            approval_id,
            "infra",
            "b" * 40,
            T0,
            tuple(nodes),
            dict(plan or {"items": [{"node": nodes[0], "kind": "FirewallAlias", "name": "web"}]}),
            required=required,
        )

    def add_drift(self, node: str, actions: Sequence[str], mode: Mode = Mode.DETECT) -> None:
        items = tuple(PlanItem(node, "Sysctl", f"s{i}", Action(a)) for i, a in enumerate(actions))
        self.drift_list = [d for d in self.drift_list if d.node != node]
        self.drift_list.append(NodeDrift(node, "infra", mode, T0, "a" * 40, items))


def _typed(handle: FakeHandle) -> ControllerHandle:
    return handle  # mypy checks here that the fake satisfies the protocol


@dataclasses.dataclass(frozen=True)
class Tokens:
    read: str
    write: str


def with_tokens(monkeypatch: pytest.MonkeyPatch) -> Tokens:
    """Settings' tokens: a read one and a write one, given through the environment."""
    tokens = Tokens(stdlib_secrets.token_hex(16), stdlib_secrets.token_hex(16))
    monkeypatch.setenv("FAZAI_TEST_READ_TOKEN", tokens.read)
    monkeypatch.setenv("FAZAI_TEST_WRITE_TOKEN", tokens.write)
    return tokens


TOKEN_SETTINGS = (
    TokenSetting("dashboard", Role.VIEWER, SecretRef(env="FAZAI_TEST_READ_TOKEN")),
    TokenSetting("ci", Role.APPROVER, SecretRef(env="FAZAI_TEST_WRITE_TOKEN")),
)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def asgi_client(
    handle: FakeHandle, settings: ServerSettings, raise_app_exceptions: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(_typed(handle), settings)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    async with (
        app.router.lifespan_context(app),
        # As FazAI's own client: JSON bodies (an API without tokens takes writes only so).
        httpx.AsyncClient(
            transport=transport,
            base_url="http://127.0.0.1",
            headers={"content-type": "application/json"},
        ) as client,
    ):
        yield client


@contextlib.asynccontextmanager
async def serving(
    handle: FakeHandle, settings: ServerSettings, port: int = 0
) -> AsyncIterator[str]:
    """The app on real uvicorn; yields its base URL; stops it (gracefully) on exit."""
    app = build_app(_typed(handle), settings)
    stop = asyncio.Event()
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    settings = dataclasses.replace(settings, host="127.0.0.1", port=port)
    task = asyncio.create_task(
        serve_http(app, settings, stop, on_listen=lambda host, p: bound.set_result(p))
    )
    await asyncio.wait((bound, task), return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # raises what stopped it
    scheme = "https" if settings.tls else "http"
    try:
        yield f"{scheme}://127.0.0.1:{bound.result()}"
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def eventually(check: Any, timeout: float = 5.0) -> None:
    """Waits until ``check()`` is true (for work another task does)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def token_settings(**changes: Any) -> ServerSettings:
    return dataclasses.replace(ServerSettings(tokens=TOKEN_SETTINGS), **changes)
