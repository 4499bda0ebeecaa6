"""The REST routes against a fake controller over a real state store."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from controller.reconcile.handle import Mode, SourceStatus
from controller.secrets import Secret
from controller.server.settings import ServerSettings
from controller.store import Command, NodeStatus, RunStatus, StateStore, Trigger
from tests.unit.server.serverkit import T0, FakeHandle, asgi_client

OPEN = ServerSettings()  # no token: every route open (loopback); auth has its own tests


def record_runs(store: StateStore, count: int) -> list[int]:
    ids = []
    for i in range(count):
        run_id = store.start_run(
            Trigger.WEBHOOK,
            Command.APPLY,
            "infra",
            f"{i:040x}",
            {"items": [{"node": "edge-fw", "kind": "Node", "spec": {"apiKey": Secret("k3y")}}]},
        )
        store.record_node(run_id, "edge-fw", NodeStatus.CONVERGED, "2 change(s)", 1.5)
        store.record_node(run_id, "web-1", NodeStatus.ROLLED_BACK, "verify failed", 0.5)
        store.finish_run(run_id, RunStatus.PARTIAL)
        ids.append(run_id)
    return ids


async def test_runs_list_newest_first_with_paging(handle: FakeHandle, store: StateStore) -> None:
    ids = record_runs(store, 5)
    async with asgi_client(handle, OPEN) as client:
        page = (await client.get("/api/v1/runs", params={"limit": 2, "offset": 1})).json()
        everything = (await client.get("/api/v1/runs")).json()
    assert [r["id"] for r in page["runs"]] == [ids[3], ids[2]]
    assert (page["limit"], page["offset"]) == (2, 1)
    assert [r["id"] for r in everything["runs"]] == ids[::-1]
    first = everything["runs"][-1]
    assert first["status"] == "partial" and first["trigger"] == "webhook"
    assert first["command"] == "apply" and first["revision"] == f"{0:040x}"
    assert first["nodes"] == [
        {"node": "edge-fw", "status": "converged", "message": "2 change(s)", "seconds": 1.5},
        {"node": "web-1", "status": "rolled_back", "message": "verify failed", "seconds": 0.5},
    ]
    assert first["finished"] is not None and "plan" not in first


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=x", "offset=-1", "limit=1.5"])
async def test_bad_paging_is_a_400(handle: FakeHandle, query: str) -> None:
    async with asgi_client(handle, OPEN) as client:
        answer = await client.get(f"/api/v1/runs?{query}")
    assert answer.status_code == 400
    assert "must be a whole number" in answer.json()["error"]


async def test_run_detail_carries_the_redacted_plan(handle: FakeHandle, store: StateStore) -> None:
    [run_id] = record_runs(store, 1)
    async with asgi_client(handle, OPEN) as client:
        detail = (await client.get(f"/api/v1/runs/{run_id}")).json()
        missing = await client.get("/api/v1/runs/999")
        garbage = await client.get("/api/v1/runs/abc")
    assert detail["id"] == run_id and detail["source"] == "infra"
    assert detail["plan"]["items"][0]["spec"]["apiKey"] == "***"
    assert "k3y" not in str(detail)
    assert (missing.status_code, missing.json()) == (404, {"error": "no run 999"})
    assert garbage.status_code == 404


async def test_sources_and_readiness(handle: FakeHandle) -> None:
    handle.source_list.append(
        SourceStatus(
            "apps",
            "https://git.example/acme/apps.git",
            "prod",
            None,
            None,
            error="git fetch: connection refused",
            retry_at=T0 + timedelta(seconds=30),
        )
    )
    handle.is_ready = False
    async with asgi_client(handle, OPEN) as client:
        sources = (await client.get("/api/v1/sources")).json()["sources"]
        ready = await client.get("/readyz")
    assert [s["name"] for s in sources] == ["infra", "apps"]
    assert sources[0] == {
        "name": "infra",
        "location": "https://git.example/acme/infra.git",
        "branch": "main",
        "revision": "a" * 40,
        "lastSync": T0.isoformat(),
        "error": None,
        "retryAt": None,
        "busy": False,
        "up": True,
    }
    assert (
        sources[1]["up"] is False
        and sources[1]["retryAt"] == (T0 + timedelta(seconds=30)).isoformat()
    )
    assert ready.status_code == 503
    # Unauthenticated: names and booleans, no location, no error text.
    assert ready.json() == {
        "ready": False,
        "sources": [
            {"name": "infra", "synced": True, "up": True},
            {"name": "apps", "synced": False, "up": False},
        ],
    }


async def test_drift_per_node(handle: FakeHandle) -> None:
    handle.add_drift("edge-fw", ["update", "noop", "create"], Mode.DETECT)
    handle.drift_list.append(
        dataclasses.replace(handle.drift_list[0], node="web-1", items=(), error="unreachable")
    )
    async with asgi_client(handle, OPEN) as client:
        nodes = (await client.get("/api/v1/drift")).json()["nodes"]
    assert nodes[0]["node"] == "edge-fw" and nodes[0]["drifted"] == 2
    assert nodes[0]["mode"] == "detect" and len(nodes[0]["items"]) == 3
    assert nodes[1] == {**nodes[1], "node": "web-1", "drifted": 0, "error": "unreachable"}


async def test_reconcile_triggers_the_loop(handle: FakeHandle) -> None:
    async with asgi_client(handle, OPEN) as client:
        one = await client.post("/api/v1/reconcile", json={"source": "infra"})
        every = await client.post("/api/v1/reconcile", json={"source": None})
        empty = await client.post("/api/v1/reconcile")
        unknown = await client.post("/api/v1/reconcile", json={"source": "nope"})
        typo = await client.post("/api/v1/reconcile", json={"sauce": "infra"})
        not_json = await client.post("/api/v1/reconcile", content=b"{source")
        not_object = await client.post("/api/v1/reconcile", json=["infra"])
        wrong_type = await client.post("/api/v1/reconcile", json={"source": 3})
        huge = await client.post("/api/v1/reconcile", content=b" " * (65 * 1024))
    assert (one.status_code, one.json()) == (202, {"queued": True, "source": "infra"})
    assert every.status_code == 202 and empty.status_code == 202
    assert handle.triggers == [("infra", "api"), (None, "api"), (None, "api")]
    assert (unknown.status_code, unknown.json()) == (404, {"error": "no source named 'nope'"})
    assert (typo.status_code, typo.json()) == (400, {"error": "unknown field(s): sauce"})
    assert not_json.status_code == 400 and "not JSON" in not_json.json()["error"]
    assert not_object.status_code == 400 and wrong_type.status_code == 400
    assert huge.status_code == 413


async def test_approvals_list_approve_and_abort(handle: FakeHandle, store: StateStore) -> None:
    handle.add_approval("a1", ["edge-fw", "web-1"])
    handle.add_approval("a2")
    handle.pending["a2"] = dataclasses.replace(
        handle.pending["a2"], plan={"items": [{"password": "pl41n"}]}
    )
    async with asgi_client(handle, OPEN) as client:
        listed = (await client.get("/api/v1/approvals")).json()["approvals"]
        approved = await client.post("/api/v1/approvals/a1/approve")
        again = await client.post("/api/v1/approvals/a1/approve")
        aborted = await client.post("/api/v1/approvals/a2/abort")
        unknown = await client.post("/api/v1/approvals/zz/abort")
        left = (await client.get("/api/v1/approvals")).json()["approvals"]
    assert [a["id"] for a in listed] == ["a1", "a2"]
    assert listed[0]["nodes"] == ["edge-fw", "web-1"] and listed[0]["revision"] == "b" * 40
    assert listed[1]["plan"] == {"items": [{"password": "***"}]}  # redacted on the way out
    run_id = approved.json()["run_id"]
    assert approved.status_code == 200 and approved.json() == {"run_id": run_id, "approval": "a1"}
    assert store.get_run(run_id) is not None and handle.approved == ["a1"]
    assert (again.status_code, again.json()) == (404, {"error": "no pending approval 'a1'"})
    assert (aborted.status_code, aborted.json()) == (200, {"aborted": "a2"})
    assert unknown.status_code == 404 and handle.aborted == ["a2"]
    assert left == []


async def test_unknown_routes_and_methods_answer_json(handle: FakeHandle) -> None:
    async with asgi_client(handle, OPEN) as client:
        missing = await client.get("/api/v1/nothing")
        method = await client.delete("/api/v1/runs")
    assert (missing.status_code, missing.json()) == (404, {"error": "Not Found"})
    assert (method.status_code, method.json()) == (405, {"error": "Method Not Allowed"})


async def test_an_unexpected_failure_is_a_bare_500(
    handle: FakeHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> list[SourceStatus]:
        raise RuntimeError("internal detail: password=hunter2")

    monkeypatch.setattr(handle, "sources", broken)
    async with asgi_client(handle, OPEN, raise_app_exceptions=False) as client:
        answer = await client.get("/api/v1/sources")
    assert (answer.status_code, answer.json()) == (500, {"error": "internal error"})


async def test_webhook_routes_of_unconfigured_forges_are_404(handle: FakeHandle) -> None:
    async with asgi_client(handle, OPEN) as client:
        answer = await client.post("/hooks/github", content=b"{}")
        unknown = await client.post("/hooks/bitbucket", content=b"{}")
    assert answer.status_code == 404
    assert answer.json() == {
        "error": "webhooks from github are not configured (server.webhooks.github)"
    }
    assert unknown.status_code == 404 and handle.pushes == []
