"""Approve and abort refused by the controller: answered with a status and the reason,
never a bare 500."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from controller.errors import FazaiError, StoreError
from controller.reconcile.config import ControllerConfig
from controller.reconcile.controller import Controller
from controller.store import StateStore
from tests.unit.server.serverkit import FakeHandle, asgi_client
from tests.unit.server.test_server_api import OPEN


async def test_approving_while_the_real_controller_stops_is_a_503(
    store: StateStore, tmp_path: Path
) -> None:
    controller = Controller(ControllerConfig(sources=(), cache_dir=tmp_path / "cache"), store)
    await controller.start()
    await controller.stop(grace=1)
    async with asgi_client(controller, OPEN, raise_app_exceptions=False) as client:  # type: ignore[arg-type]
        answer = await client.post("/api/v1/approvals/a1b2c3/approve")
        unknown = await client.post("/api/v1/approvals/a1b2c3/abort")
    assert answer.status_code == 503
    assert answer.json() == {"error": "the controller is stopping; approve again after it restarts"}
    assert answer.headers["retry-after"] == "5"
    assert (unknown.status_code, unknown.json()) == (404, {"error": "no pending approval 'a1b2c3'"})


async def test_a_reconcile_asked_while_the_real_controller_stops_is_a_503_not_queued(
    store: StateStore, tmp_path: Path
) -> None:
    controller = Controller(ControllerConfig(sources=(), cache_dir=tmp_path / "cache"), store)
    await controller.start()
    await controller.stop(grace=1)
    async with asgi_client(controller, OPEN, raise_app_exceptions=False) as client:  # type: ignore[arg-type]
        answer = await client.post("/api/v1/reconcile", json={})
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "5"
    assert "stopping" in answer.json()["error"]


async def test_other_fazai_errors_of_approve_and_abort_are_a_409_with_the_message(
    handle: FakeHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def approve(approval_id: str, by: str, identities: Sequence[str] = ()) -> int:
        raise FazaiError(f"approval {approval_id} cannot be applied: edge-fw is blocked")

    async def abort(approval_id: str, by: str = "") -> None:
        raise FazaiError(f"approval {approval_id} is being applied")

    monkeypatch.setattr(handle, "approve", approve)
    monkeypatch.setattr(handle, "abort", abort)
    async with asgi_client(handle, OPEN, raise_app_exceptions=False) as client:
        approved = await client.post("/api/v1/approvals/a1/approve")
        aborted = await client.post("/api/v1/approvals/a1/abort")
    assert (approved.status_code, approved.json()) == (
        409,
        {"error": "approval a1 cannot be applied: edge-fw is blocked"},
    )
    assert (aborted.status_code, aborted.json()) == (
        409,
        {"error": "approval a1 is being applied"},
    )


async def test_a_store_failure_while_approving_is_a_503(
    handle: FakeHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def approve(approval_id: str, by: str, identities: Sequence[str] = ()) -> int:
        raise StoreError("/var/lib/fazai/state.db", "database is locked")

    monkeypatch.setattr(handle, "approve", approve)
    async with asgi_client(handle, OPEN, raise_app_exceptions=False) as client:
        answer = await client.post("/api/v1/approvals/a1/approve")
    assert answer.status_code == 503
    assert answer.json() == {"error": "the state store cannot be read: database is locked"}
