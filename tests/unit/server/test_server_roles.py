"""Roles and scopes over real HTTP (uvicorn): what each role may call, and what a scoped
token sees and may act on."""

from __future__ import annotations

import logging
import secrets as stdlib_secrets
from collections.abc import Mapping, Sequence

import httpx
import pytest

from controller.events import EventType
from controller.reconcile.handle import Mode, NodeDrift, PendingApproval, SourceStatus
from controller.server.settings import Role, SecretRef, ServerSettings, TokenScope, TokenSetting
from controller.store import Command, NodeStatus, StateStore, Trigger
from tests.unit.server.serverkit import T0, FakeHandle, bearer, serving

INFRA_URL = "https://git.example/acme/infra.git"
LAB_URL = "https://git.example/acme/lab.git"


def token(monkeypatch: pytest.MonkeyPatch, name: str) -> str:
    value = stdlib_secrets.token_hex(16)
    monkeypatch.setenv(f"FAZAI_T_{name.upper().replace('-', '_')}", value)
    return value


def setting(name: str, role: Role, scope: TokenScope | None = None) -> TokenSetting:
    ref = SecretRef(env=f"FAZAI_T_{name.upper().replace('-', '_')}")
    return TokenSetting(name, role, ref, scope or TokenScope())


def pending(
    approval_id: str,
    source: str = "infra",
    nodes: Mapping[str, Mapping[str, str]] | None = None,
    required: int = 1,
) -> PendingApproval:
    labels = dict(nodes or {"edge-fw": {"site": "porto"}})
    return PendingApproval(
        approval_id,
        source,
        "b" * 40,
        T0,
        tuple(labels),
        {"changes": [{"node": n, "kind": "Sysctl", "name": "x"} for n in labels]},
        required=required,
        labels=labels,
        settled=labels,  # the nodes had these labels when last in sync too
    )


# route -> the status each role gets (viewer, operator, approver, admin)
MATRIX: Sequence[tuple[str, str, tuple[int, int, int, int]]] = (
    ("GET", "/api/v1/sources", (200, 200, 200, 200)),
    ("GET", "/api/v1/runs", (200, 200, 200, 200)),
    ("GET", "/api/v1/drift", (200, 200, 200, 200)),
    ("GET", "/api/v1/approvals", (200, 200, 200, 200)),
    ("GET", "/api/v1/events", (200, 200, 200, 200)),
    ("GET", "/metrics", (200, 200, 200, 200)),
    ("POST", "/api/v1/reconcile", (403, 202, 202, 202)),
    ("POST", "/api/v1/approvals/{role}-ok/approve", (403, 403, 200, 200)),
    ("POST", "/api/v1/approvals/{role}-no/abort", (403, 403, 200, 200)),
)
ROLES = (Role.VIEWER, Role.OPERATOR, Role.APPROVER, Role.ADMIN)


async def test_each_role_may_call_its_routes_and_no_more(
    handle: FakeHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {role: token(monkeypatch, role.value) for role in ROLES}
    settings = ServerSettings(tokens=tuple(setting(r.value, r) for r in ROLES))
    for role in ROLES:
        handle.pending[f"{role.value}-ok"] = pending(f"{role.value}-ok")
        handle.pending[f"{role.value}-no"] = pending(f"{role.value}-no")
    got: dict[tuple[str, Role], int] = {}
    async with serving(handle, settings) as url, httpx.AsyncClient(base_url=url) as client:
        for method, path, _ in MATRIX:
            for role in ROLES:
                target = path.format(role=role.value)
                headers = {**bearer(values[role]), "content-type": "application/json"}
                if target.endswith("/events"):
                    async with client.stream("GET", target, headers=headers) as answer:
                        got[(path, role)] = answer.status_code
                    continue
                answer = await client.request(method, target, headers=headers, json={})
                got[(path, role)] = answer.status_code
                if answer.status_code == 403:
                    needs = "operator" if "reconcile" in path else "approver"
                    assert answer.json() == {
                        "error": f"token {role.value!r} has the {role.value} role; "
                        f"this route needs {needs}"
                    }
    expected = {(p, r): codes[i] for _, p, codes in MATRIX for i, r in enumerate(ROLES)}
    assert got == expected
    assert handle.triggers == [(None, "api")] * 3
    assert sorted(handle.approved) == ["admin-ok", "approver-ok"]
    assert sorted(handle.approvers) == ["admin", "approver"]  # approvals carry the token name
    assert sorted(handle.aborted) == ["admin-no", "approver-no"]


@pytest.fixture
def two_sources(handle: FakeHandle, store: StateStore) -> dict[str, int]:
    """Sources infra (edge-fw, porto) and lab (lab-1 lisbon, lab-2 porto), with drift, a
    pending approval and a run each; returns the run ids."""
    handle.source_list = [
        SourceStatus("infra", INFRA_URL, "main", "a" * 40, T0),
        SourceStatus("lab", LAB_URL, "main", "c" * 40, T0),
    ]
    secret_drift = [{"kind": "Sysctl", "name": "infra-only", "action": "update"}]
    handle.drift_list = [
        NodeDrift("edge-fw", "infra", Mode.DETECT, T0, "a", secret_drift, None, {"site": "porto"}),
        NodeDrift("lab-1", "lab", Mode.DETECT, T0, "c", (), None, {"site": "lisbon"}),
        NodeDrift("lab-2", "lab", Mode.DETECT, T0, "c", (), None, {"site": "porto"}),
    ]
    handle.pending["infra-a"] = pending("infra-a")
    handle.pending["lab-a"] = pending("lab-a", "lab", {"lab-1": {"site": "lisbon"}})
    handle.pending["lab-both"] = pending(
        "lab-both", "lab", {"lab-1": {"site": "lisbon"}, "lab-2": {"site": "porto"}}
    )
    runs = {}
    for name, url, nodes in (
        ("infra", INFRA_URL, ["edge-fw"]),
        ("lab", LAB_URL, ["lab-1", "lab-2"]),
        ("cli", "/srv/desired", ["edge-fw"]),
    ):
        described = f"git::{url}@refs/heads/main" if name != "cli" else url
        plan = {
            "nodes": [{"node": n} for n in nodes],
            "changes": [{"node": n, "kind": "Sysctl", "name": f"{n}-change"} for n in nodes],
        }
        run_id = store.start_run(Trigger.SCHEDULE, Command.PLAN, described, "a" * 40, plan)
        for node in nodes:
            store.record_node(run_id, node, NodeStatus.CONVERGED)
        runs[name] = run_id
    return runs


async def test_a_source_scoped_token_sees_and_acts_only_on_its_sources(
    handle: FakeHandle, two_sources: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    value = token(monkeypatch, "lab-ops")
    lab_only = TokenScope(sources=frozenset({"lab"}))
    settings = ServerSettings(tokens=(setting("lab-ops", Role.APPROVER, lab_only),))
    headers = {**bearer(value), "content-type": "application/json"}
    async with serving(handle, settings) as url, httpx.AsyncClient(base_url=url) as client:

        async def get(path: str) -> httpx.Response:
            return await client.get(path, headers=headers)

        assert [s["name"] for s in (await get("/api/v1/sources")).json()["sources"]] == ["lab"]
        drift = (await get("/api/v1/drift")).json()["nodes"]
        assert [d["node"] for d in drift] == ["lab-1", "lab-2"]
        listed = (await get("/api/v1/approvals")).json()["approvals"]
        assert [a["id"] for a in listed] == ["lab-a", "lab-both"]
        assert [r["id"] for r in (await get("/api/v1/runs")).json()["runs"]] == [two_sources["lab"]]
        # Another source's run, or one of a folder, reads as absent; nothing of it shows.
        for other in ("infra", "cli"):
            answer = await get(f"/api/v1/runs/{two_sources[other]}")
            assert (answer.status_code, answer.json()) == (
                404,
                {"error": f"no run {two_sources[other]}"},
            )
        assert (await get(f"/api/v1/runs/{two_sources['lab']}")).status_code == 200
        metrics = await get("/metrics")
        assert metrics.status_code == 403 and "scoped" in metrics.json()["error"]

        refused = await client.post("/api/v1/approvals/infra-a/approve", headers=headers)
        assert (refused.status_code, refused.json()) == (
            403,
            {
                "error": "approval infra-a is outside token 'lab-ops''s scope: "
                "its source is not one of the token's sources"
            },
        )
        refused = await client.post("/api/v1/approvals/infra-a/abort", headers=headers)
        assert refused.status_code == 403
        assert (
            await client.post("/api/v1/approvals/lab-a/approve", headers=headers)
        ).status_code == 200

        other = await client.post("/api/v1/reconcile", headers=headers, json={"source": "infra"})
        assert (other.status_code, other.json()) == (404, {"error": "no source named 'infra'"})
        every = await client.post("/api/v1/reconcile", headers=headers, json={})
        assert every.status_code == 202
    assert handle.approved == ["lab-a"] and handle.aborted == []
    assert "infra-a" in handle.pending
    assert handle.triggers == [("lab", "api")]  # "every source" it sees: lab only


async def test_a_node_scoped_token_sees_only_matching_nodes(
    handle: FakeHandle, two_sources: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    value = token(monkeypatch, "lisbon")
    lisbon = TokenScope(nodes=(("site", "lisbon"),))
    settings = ServerSettings(tokens=(setting("lisbon", Role.APPROVER, lisbon),))
    headers = {**bearer(value), "content-type": "application/json"}
    handle.events.publish(EventType.NODE_FAILED, source="infra", node="edge-fw", reason="x")
    handle.events.publish(EventType.NODE_FAILED, source="lab", node="lab-2", reason="x")
    handle.events.publish(EventType.NODE_FAILED, source="lab", node="lab-1", reason="mine")
    async with serving(handle, settings) as url, httpx.AsyncClient(base_url=url) as client:

        async def get(path: str) -> httpx.Response:
            return await client.get(path, headers=headers)

        drift = (await get("/api/v1/drift")).json()["nodes"]
        assert [(d["source"], d["node"]) for d in drift] == [("lab", "lab-1")]
        assert "infra-only" not in (await get("/api/v1/drift")).text
        listed = (await get("/api/v1/approvals")).json()["approvals"]
        assert [a["id"] for a in listed] == ["lab-a"]  # lab-both also touches lab-2
        runs = (await get("/api/v1/runs")).json()["runs"]
        assert [(r["id"], [n["node"] for n in r["nodes"]]) for r in runs] == [
            (two_sources["lab"], ["lab-1"])
        ]
        detail = (await get(f"/api/v1/runs/{two_sources['lab']}")).json()
        assert [c["name"] for c in detail["plan"]["changes"]] == ["lab-1-change"]
        assert (await get(f"/api/v1/runs/{two_sources['infra']}")).status_code == 404

        both = await client.post("/api/v1/approvals/lab-both/approve", headers=headers)
        assert (both.status_code, both.json()) == (
            403,
            {
                "error": "approval lab-both is outside token 'lisbon''s scope: "
                "node(s) lab-2 do not match the token's node selector (both with the plan's "
                "labels and with those they had when last in sync)"
            },
        )
        reconcile = await client.post("/api/v1/reconcile", headers=headers, json={})
        assert reconcile.status_code == 403 and "every node of a source" in reconcile.text

        seen = []
        async with client.stream("GET", "/api/v1/events?since=0", headers=headers) as stream:
            async for line in stream.aiter_lines():
                if line.startswith("data:"):
                    seen.append(line)
                    break
    assert len(seen) == 1 and '"reason":"mine"' in seen[0]
    assert handle.approved == [] and handle.triggers == []


async def test_a_scope_naming_an_unknown_source_is_warned_of_at_start(
    handle: FakeHandle, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    token(monkeypatch, "typo")
    scope = TokenScope(sources=frozenset({"infra", "infar"}))
    settings = ServerSettings(tokens=(setting("typo", Role.VIEWER, scope),))
    with caplog.at_level(logging.WARNING, "fazai.server"):
        async with serving(handle, settings):
            pass
    assert [r.getMessage() for r in caplog.records if "scope names" in r.getMessage()] == [
        "server.tokens[0] (typo): scope names source 'infar', which is not configured"
    ]
