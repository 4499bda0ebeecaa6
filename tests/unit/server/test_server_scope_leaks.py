"""What a scoped token must not learn or be misled by: other nodes' summary and warnings
in a run's plan, run events of runs /runs hides, runs of another folder of its monorepo,
a reconcile that queues nothing, and id gaps taken for lost events."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from controller.events import EventBus, EventType
from controller.reconcile.handle import Mode, NodeDrift, SourceStatus
from controller.server import sse
from controller.server.settings import Role, ServerSettings, TokenScope
from controller.store import Command, NodeStatus, StateStore, Trigger
from tests.unit.server.serverkit import T0, FakeHandle, bearer, serving
from tests.unit.server.test_server_roles import LAB_URL, setting, token

LISBON = TokenScope(nodes=(("site", "lisbon"),))


def lisbon_lab(handle: FakeHandle) -> None:
    handle.source_list = [SourceStatus("lab", LAB_URL, "main", "c" * 40, T0)]
    handle.drift_list = [
        NodeDrift("lab-1", "lab", Mode.DETECT, T0, "c", (), None, {"site": "lisbon"}),
        NodeDrift("secret-vault", "lab", Mode.DETECT, T0, "c", (), None, {"site": "porto"}),
    ]


async def read_stream(client: httpx.AsyncClient, headers: dict[str, str], count: int) -> list[Any]:
    """The first ``count`` messages (events and stream notices) of the stream, as data."""
    seen: list[Any] = []
    async with client.stream("GET", "/api/v1/events?since=0", headers=headers) as stream:
        async for line in stream.aiter_lines():
            if line.startswith("data:"):
                seen.append(json.loads(line[5:]))
                if len(seen) == count:
                    break
    return seen


async def test_a_node_scoped_run_detail_shows_only_its_nodes_counts(
    handle: FakeHandle, store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = token(monkeypatch, "lisbon")
    settings = ServerSettings(tokens=(setting("lisbon", Role.VIEWER, LISBON),))
    lisbon_lab(handle)
    plan = {
        "apiVersion": "fazai.dev/v1alpha1",
        "kind": "Plan",
        "source": f"git::{LAB_URL}@main",
        "revision": "c",
        "summary": {"create": 0, "update": 1, "delete": 7, "nodes": 2, "nodesFailed": 1},
        "nodes": [
            {"node": "lab-1", "resources": 3, "error": None},
            {"node": "secret-vault", "resources": 9, "error": "auth failed on 10.9.9.9"},
        ],
        "changes": [{"node": "lab-1", "kind": "Sysctl", "name": "a", "action": "update"}]
        + [
            {"node": "secret-vault", "kind": "User", "name": f"u{i}", "action": "delete"}
            for i in range(7)
        ],
        "warnings": ["desired/vault.yaml:3:1: User 'breakglass' on secret-vault: ..."],
        "futureField": {"secret-vault": "whatever a later format adds"},
    }
    run_id = store.start_run(Trigger.SCHEDULE, Command.PLAN, f"git::{LAB_URL}@main", "c", plan)
    store.record_node(run_id, "lab-1", NodeStatus.CONVERGED)
    store.record_node(run_id, "secret-vault", NodeStatus.FAILED, "auth failed on 10.9.9.9")
    async with serving(handle, settings) as url, httpx.AsyncClient(base_url=url) as client:
        detail = (await client.get(f"/api/v1/runs/{run_id}", headers=bearer(value))).json()
    shown = detail["plan"]
    assert set(shown) == {
        "apiVersion",
        "kind",
        "source",
        "revision",
        "summary",
        "nodes",
        "changes",
    }
    assert shown["summary"] == {
        "create": 0,
        "update": 1,
        "delete": 0,
        "noop": 2,
        "error": 0,
        "unmanaged": 0,
        "nodes": 1,
        "nodesFailed": 0,
        "inSync": False,
        "exitCode": 1,
    }
    assert "secret-vault" not in json.dumps(detail)


async def test_run_events_of_a_run_out_of_node_scope_are_not_streamed(
    handle: FakeHandle, store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = token(monkeypatch, "lisbon")
    settings = ServerSettings(tokens=(setting("lisbon", Role.VIEWER, LISBON),))
    lisbon_lab(handle)
    source = f"git::{LAB_URL}@main"
    hidden = store.start_run(Trigger.SCHEDULE, Command.APPLY, source, "c", {})
    store.record_node(hidden, "secret-vault", NodeStatus.CONVERGED)
    mine = store.start_run(Trigger.SCHEDULE, Command.APPLY, source, "c", {})
    store.record_node(mine, "lab-1", NodeStatus.CONVERGED)
    bus = handle.events
    bus.publish(EventType.RUN_STARTED, source="lab", run_id=hidden, command="apply")
    bus.publish(EventType.RUN_FINISHED, source="lab", run_id=hidden, status="failed")
    bus.publish(EventType.RUN_STARTED, source="lab", run_id=mine, command="apply")
    bus.publish(EventType.RUN_FINISHED, source="lab", run_id=mine, status="succeeded")
    async with serving(handle, settings) as url, httpx.AsyncClient(base_url=url) as client:
        assert (
            await client.get(f"/api/v1/runs/{hidden}", headers=bearer(value))
        ).status_code == 404
        seen = await read_stream(client, bearer(value), 2)
    assert [(e["type"], e["data"]["run_id"]) for e in seen] == [
        ("run.started", mine),
        ("run.finished", mine),
    ]


async def test_the_label_table_is_built_once_for_many_events(
    handle: FakeHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = token(monkeypatch, "lisbon")
    settings = ServerSettings(tokens=(setting("lisbon", Role.VIEWER, LISBON),))
    lisbon_lab(handle)
    calls = []
    read = handle.drift

    def counted() -> Any:
        calls.append(1)
        return read()

    monkeypatch.setattr(handle, "drift", counted)
    for i in range(50):
        handle.events.publish(EventType.NODE_READ, source="lab", node="lab-1", changes=i)
    async with serving(handle, settings) as url, httpx.AsyncClient(base_url=url) as client:
        seen = await read_stream(client, bearer(value), 50)
    assert len(seen) == 50
    assert len(calls) == 1


async def test_a_monorepo_token_sees_the_runs_of_its_own_source_by_name(
    handle: FakeHandle, store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = token(monkeypatch, "lab-ops")
    settings = ServerSettings(
        tokens=(setting("lab-ops", Role.VIEWER, TokenScope(sources=frozenset({"lab"}))),)
    )
    mono = "https://git.example/acme/fleet.git"
    handle.source_list = [
        SourceStatus("lab", mono, "main", "c" * 40, T0),
        SourceStatus("prod", mono, "main", "c" * 40, T0),
    ]
    lab = store.start_run(
        Trigger.SCHEDULE, Command.PLAN, f"git::{mono}//lab@main", "c", {}, source_name="lab"
    )
    prod = store.start_run(Trigger.SCHEDULE, Command.PLAN, f"git::{mono}//prod@main", "c", {})
    store.name_run_source([prod], "prod")
    unnamed = store.start_run(Trigger.SCHEDULE, Command.PLAN, f"git::{mono}//lab@main", "c", {})
    async with serving(handle, settings) as url, httpx.AsyncClient(base_url=url) as client:
        runs = (await client.get("/api/v1/runs", headers=bearer(value))).json()["runs"]
        one = await client.get(f"/api/v1/runs/{lab}", headers=bearer(value))
        other = await client.get(f"/api/v1/runs/{prod}", headers=bearer(value))
        vague = await client.get(f"/api/v1/runs/{unnamed}", headers=bearer(value))
    assert [(r["id"], r["sourceName"]) for r in runs] == [(lab, "lab")]
    assert (one.status_code, other.status_code, vague.status_code) == (200, 404, 404)


async def test_a_scoped_operator_whose_sources_are_all_unknown_gets_a_404(
    handle: FakeHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = token(monkeypatch, "typo")
    settings = ServerSettings(
        tokens=(setting("typo", Role.OPERATOR, TokenScope(sources=frozenset({"infar"}))),)
    )
    async with serving(handle, settings) as url, httpx.AsyncClient(base_url=url) as client:
        r = await client.post("/api/v1/reconcile", headers=bearer(value), json={})
    assert r.status_code == 404 and "none of token 'typo'" in r.json()["error"]
    assert handle.triggers == []


async def test_a_reconcile_carries_the_caller_as_its_actor(
    handle: FakeHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = token(monkeypatch, "alice")
    settings = ServerSettings(tokens=(setting("alice", Role.OPERATOR),))
    async with serving(handle, settings) as url, httpx.AsyncClient(base_url=url) as client:
        r = await client.post("/api/v1/reconcile", headers=bearer(value), json={})
    assert r.status_code == 202
    assert handle.trigger_actors == ["alice"]


async def test_a_scoped_stream_has_gaps_but_says_no_loss(
    handle: FakeHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = token(monkeypatch, "lab-ops")
    settings = ServerSettings(
        tokens=(setting("lab-ops", Role.VIEWER, TokenScope(sources=frozenset({"lab"}))),)
    )
    bus = handle.events
    bus.publish(EventType.NODE_FAILED, source="lab", node="lab-1", reason="a")
    for _ in range(5):
        bus.publish(EventType.NODE_FAILED, source="infra", node="edge-fw", reason="x")
    bus.publish(EventType.NODE_FAILED, source="lab", node="lab-1", reason="b")
    async with serving(handle, settings) as url, httpx.AsyncClient(base_url=url) as client:
        seen = await read_stream(client, bearer(value), 2)
    assert [e["data"]["reason"] for e in seen] == ["a", "b"]
    assert seen[1]["id"] - seen[0]["id"] == 6  # a gap, and no stream.lost before b


async def test_a_resumed_stream_says_how_many_events_are_no_longer_kept(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = FakeHandle(store, EventBus(history=3))
    value = token(monkeypatch, "ops")
    settings = ServerSettings(tokens=(setting("ops", Role.VIEWER),))
    events = [
        handle.events.publish(EventType.NODE_READ, source="infra", node=f"n{i}") for i in range(6)
    ]
    async with serving(handle, settings) as url, httpx.AsyncClient(base_url=url) as client:
        lines = []
        path = f"/api/v1/events?since={events[0].id}"
        async with client.stream("GET", path, headers=bearer(value)) as stream:
            async for line in stream.aiter_lines():
                lines.append(line)
                if line.startswith("data:") and '"n5"' in line:
                    break
    notice = lines.index(f"event: {sse.LOST}")
    assert json.loads(lines[notice + 1][5:]) == {"type": sse.LOST, "data": {"missed": 2}}
    assert not lines[notice - 1].startswith("id:")  # no id: it moves no Last-Event-ID
    assert [
        json.loads(x[5:])["data"]["node"] for x in lines[notice + 2 :] if x.startswith("data:")
    ] == [
        "n3",
        "n4",
        "n5",
    ]


async def test_a_subscriber_too_slow_to_read_counts_what_it_lost() -> None:
    bus = EventBus(queue_size=2)
    async with bus.subscribe() as queue:
        for i in range(5):
            bus.publish(EventType.NODE_READ, source="infra", node=f"n{i}")
        assert queue.lost == 3
        assert [queue.get_nowait().data["node"] for _ in range(2)] == ["n3", "n4"]
    kept = EventBus(history=2)
    first = kept.publish(EventType.NODE_READ, source="infra", node="n0")
    for i in range(1, 4):
        kept.publish(EventType.NODE_READ, source="infra", node=f"n{i}")
    async with kept.subscribe(after=0) as replay:  # not an id of this bus: no loss to tell
        assert (replay.lost, replay.qsize()) == (0, 2)
    async with kept.subscribe(after=first.id) as resumed:  # n1 is no longer kept
        assert (resumed.lost, resumed.qsize()) == (1, 2)
