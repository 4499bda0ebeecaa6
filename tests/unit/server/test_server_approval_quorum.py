"""Approvals that need several approvers, on the real controller's approvals over real
HTTP: distinct token names count, the same one twice counts once, the actor who triggered
the change cannot approve it, and approvals racing apply the plan exactly once."""

from __future__ import annotations

import asyncio
import secrets as stdlib_secrets
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from controller.events import EventType
from controller.model.document import Document
from controller.model.state import DesiredState
from controller.plan.items import NodePlan, Plan
from controller.reconcile.approvals import is_actor
from controller.reconcile.config import ControllerConfig
from controller.reconcile.controller import Controller
from controller.reconcile.handle import PendingApproval
from controller.server.settings import Role, SecretRef, ServerSettings, TokenSetting
from controller.source.tree import SourceTree
from controller.store import Command, StateStore
from tests.unit.server.serverkit import bearer, serving

NAMES = ("alice", "bob", "carol", "dave")


@pytest.fixture
def values(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    found = {}
    for name in NAMES:
        found[name] = stdlib_secrets.token_hex(16)
        monkeypatch.setenv(f"FAZAI_Q_{name.upper()}", found[name])
    return found


SETTINGS = ServerSettings(
    tokens=tuple(
        TokenSetting(n, Role.APPROVER, SecretRef(env=f"FAZAI_Q_{n.upper()}")) for n in NAMES
    )
)


@pytest.fixture
async def controller(store: StateStore, tmp_path: Path) -> AsyncIterator[Controller]:
    running = Controller(ControllerConfig(sources=(), cache_dir=tmp_path / "cache"), store)
    await running.start()
    try:
        yield running
    finally:
        await running.stop(grace=5)


def offer(controller: Controller, required: int, actor: str = "alice") -> PendingApproval:
    """A plan for one node whose read failed: applying it records a run (the node
    failed, nothing is written), which is what these tests count."""
    # Port 1 on loopback refuses at once: the fresh read before applying fails fast.
    spec = {"platform": "linux", "address": "127.0.0.1", "port": 1, "user": "root"}
    node = Document("Node", "web-1", spec, {"site": "lisbon"})
    state = DesiredState(SourceTree("git::/srv/infra@main", "c0ffee", {}, {}), {"web-1": node}, [])
    plan = Plan("infra", "c0ffee", (NodePlan("web-1", "linux", error="unreachable (test)"),))
    return controller.approvals_registry.offer(
        "infra",
        state,
        plan,
        None,
        required=required,
        reasons=("a FirewallRule delete needs two people",),
        actor=actor,
    )


def applies(store: StateStore) -> int:
    return sum(1 for r in store.list_runs(100, 0) if r.command is Command.APPLY)


async def test_two_approvals_from_distinct_tokens_apply_and_the_same_twice_counts_once(
    controller: Controller, store: StateStore, values: dict[str, str]
) -> None:
    pending = offer(controller, required=2)
    async with serving(controller, SETTINGS) as url, httpx.AsyncClient(base_url=url) as client:  # type: ignore[arg-type]
        path = f"/api/v1/approvals/{pending.id}/approve"
        first = await client.post(path, headers=bearer(values["bob"]), json={})
        assert first.status_code == 202
        assert first.json() == {
            "run_id": None,
            "approval": pending.id,
            "counted": True,
            "required": 2,
            "approvals": 1,
            "approvedBy": ["bob"],
        }
        again = await client.post(path, headers=bearer(values["bob"]), json={})
        assert again.status_code == 202
        assert (again.json()["counted"], again.json()["approvedBy"]) == (False, ["bob"])
        assert applies(store) == 0
        (listed,) = (await client.get("/api/v1/approvals", headers=bearer(values["dave"]))).json()[
            "approvals"
        ]
        assert (listed["required"], listed["approvals"], listed["approvedBy"]) == (2, 1, ["bob"])
        assert listed["reasons"] == ["a FirewallRule delete needs two people"]
        assert listed["actors"] == ["alice"]

        second = await client.post(path, headers=bearer(values["carol"]), json={})
        assert second.status_code == 200, second.text
        run_id = second.json()["run_id"]
        assert isinstance(run_id, int)
        gone = await client.post(path, headers=bearer(values["dave"]), json={})
        assert gone.status_code == 404
    assert applies(store) == 1 and controller.approvals() == []
    assert store.get_run(run_id) is not None


async def test_the_actor_who_triggered_a_change_cannot_approve_it(
    controller: Controller, store: StateStore, values: dict[str, str]
) -> None:
    pending = offer(controller, required=1, actor="alice")
    async with serving(controller, SETTINGS) as url, httpx.AsyncClient(base_url=url) as client:  # type: ignore[arg-type]
        path = f"/api/v1/approvals/{pending.id}/approve"
        refused = await client.post(path, headers=bearer(values["alice"]), json={})
        assert (refused.status_code, refused.json()) == (
            403,
            {
                "error": f"approval {pending.id}: 'alice' triggered this change (asked for its "
                "pass, or authored or committed its commit) and cannot approve it; another "
                "approver must"
            },
        )
        assert applies(store) == 0
        (still,) = controller.approvals()
        assert still.approved_by == ()  # the refusal recorded nothing
        accepted = await client.post(path, headers=bearer(values["bob"]), json={})
        assert accepted.status_code == 200
    assert applies(store) == 1


@pytest.mark.parametrize("required", [1, 2])
async def test_approvals_racing_apply_the_plan_exactly_once(
    controller: Controller, store: StateStore, values: dict[str, str], required: int
) -> None:
    pending = offer(controller, required=required)
    started = []
    async with controller.events.subscribe() as queue:
        async with (
            serving(controller, SETTINGS) as url,  # type: ignore[arg-type]
            httpx.AsyncClient(base_url=url) as client,
        ):
            path = f"/api/v1/approvals/{pending.id}/approve"
            answers = await asyncio.gather(
                *(
                    client.post(path, headers=bearer(values[n]), json={})
                    for n in ("bob", "carol", "dave", "bob", "carol", "dave")
                )
            )
        while not queue.empty():
            event = queue.get_nowait()
            if event.type is EventType.RUN_STARTED and event.data.get("approval_id"):
                started.append(event)
    codes = sorted(a.status_code for a in answers)
    applied = [a for a in answers if a.status_code == 200]
    assert len(applied) == 1, codes
    # The others: counted (202), or the plan is gone (404) or already being applied (409).
    assert all(a.status_code in (200, 202, 404, 409) for a in answers), codes
    assert applies(store) == 1 and len(started) == 1
    assert started[0].data["run_id"] == applied[0].json()["run_id"]


@pytest.mark.parametrize(
    ("actor", "name", "same"),
    [
        ("alice", "alice", True),
        ("Alice", "alice", True),
        ("Alice Doe <alice@example.com>", "alice", True),
        ("alice@example.com", "alice", True),
        ("Alice Doe <adoe@example.com>", "alice doe", True),
        ("Alice Doe <adoe@example.com>", "alice", False),
        ("", "alice", False),
        ("bob", "alice", False),
    ],
)
def test_how_an_actor_is_matched_to_a_token_name(actor: str, name: str, same: bool) -> None:
    assert is_actor(actor, name) is same


async def test_a_commit_author_cannot_approve_with_a_token_of_their_name(
    controller: Controller, store: StateStore, values: dict[str, str]
) -> None:
    pending = offer(controller, required=1, actor="Alice Doe <alice@example.com>")
    async with serving(controller, SETTINGS) as url, httpx.AsyncClient(base_url=url) as client:  # type: ignore[arg-type]
        path = f"/api/v1/approvals/{pending.id}/approve"
        refused = await client.post(path, headers=bearer(values["alice"]), json={})
        assert refused.status_code == 403 and "triggered this change" in refused.text
    assert applies(store) == 0
