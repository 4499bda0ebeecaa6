"""The HTTP API on real uvicorn over loopback: auth, the event stream, start and stop."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from controller.events import EventBus, EventType
from controller.server import build_app, serve_http, sse
from controller.server.errors import ServerBindError, ServerConfigError
from controller.server.settings import ServerSettings, TlsSetting
from controller.store import StateStore
from tests.unit.server.serverkit import (
    FakeHandle,
    Tokens,
    bearer,
    eventually,
    serving,
    token_settings,
    with_tokens,
)


@pytest.fixture
def handle(tmp_path: Path) -> Iterator[FakeHandle]:
    with StateStore(tmp_path / "state.db") as store:
        yield FakeHandle(store)


@pytest.fixture
def tokens(monkeypatch: pytest.MonkeyPatch) -> Tokens:
    return with_tokens(monkeypatch)


async def messages(response: httpx.Response) -> AsyncIterator[sse.Message | str]:
    """The stream's messages, and its comments as plain strings."""
    parser = sse.Parser()
    async for line in response.aiter_lines():
        if line.startswith(":"):
            yield line
            continue
        message = parser.line(line)
        if message is not None:
            yield message


async def take_events(
    stream: AsyncIterator[sse.Message | str], count: int
) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    async for item in stream:
        if isinstance(item, sse.Message):
            out.append(json.loads(item.data))
            if len(out) == count:
                break
    return out


async def test_auth_over_http(handle: FakeHandle, tokens: Tokens) -> None:
    async with serving(handle, token_settings()) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/api/v1/runs")).status_code == 401
        assert (await client.get("/api/v1/runs", headers=bearer(tokens.read))).status_code == 200
        refused = await client.post("/api/v1/reconcile", headers=bearer(tokens.read))
        assert refused.status_code == 403
        async with client.stream("GET", "/api/v1/events") as stream:
            assert stream.status_code == 401
        accepted = await client.post(
            "/api/v1/reconcile", json={"source": "infra"}, headers=bearer(tokens.write)
        )
        assert accepted.status_code == 202
    assert handle.triggers == [("infra", "api")]


async def test_events_stream_in_order_and_resume_after_last_event_id(
    handle: FakeHandle, tokens: Tokens
) -> None:
    bus = handle.events
    async with serving(handle, token_settings()) as url, httpx.AsyncClient(base_url=url) as client:
        headers = bearer(tokens.read)
        async with client.stream("GET", "/api/v1/events", headers=headers) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"] == "no-cache"
            stream = messages(response)
            published = [
                bus.publish(EventType.RUN_STARTED, source="infra", run_id=1, command="apply"),
                bus.publish(EventType.NODE_READ, source="infra", run_id=1, node="fw", changes=1),
                bus.publish(
                    EventType.CHANGE_APPLIED,
                    source="infra",
                    run_id=1,
                    node="fw",
                    kind="FirewallAlias",
                    name="web",
                    action="update",
                ),
                bus.publish(EventType.NODE_VERIFIED, source="infra", run_id=1, node="fw"),
                bus.publish(
                    EventType.RUN_FINISHED,
                    source="infra",
                    run_id=1,
                    status="succeeded",
                    seconds=0.4,
                ),
            ]
            got = await asyncio.wait_for(take_events(stream, 5), 10)
        assert got == [e.to_dict() for e in published]
        # Disconnected; more happens; the client resumes after the last id it saw.
        missed = [
            bus.publish(EventType.RECONCILE_QUEUED, source="infra", reason="webhook"),
            bus.publish(EventType.RUN_STARTED, source="infra", run_id=2, command="apply"),
        ]
        resume = {**headers, "Last-Event-ID": str(published[-1].id)}
        async with client.stream("GET", "/api/v1/events", headers=resume) as response:
            stream = messages(response)
            first_two = await asyncio.wait_for(take_events(stream, 2), 10)
            live = bus.publish(
                EventType.RUN_FINISHED, source="infra", run_id=2, status="failed", seconds=1.0
            )
            third = await asyncio.wait_for(take_events(stream, 1), 10)
        assert first_two == [e.to_dict() for e in missed]
        assert third == [live.to_dict()]
        # ?since= does the same for clients that cannot set headers.
        async with client.stream(
            "GET", "/api/v1/events", params={"since": str(missed[0].id)}, headers=headers
        ) as response:
            assert [e["id"] for e in await take_events(messages(response), 2)] == [
                missed[1].id,
                live.id,
            ]
        bad = await client.get("/api/v1/events", headers={**headers, "Last-Event-ID": "x"})
        assert bad.status_code == 400
        # Every stream that ended has let go of its subscription (the metrics' one stays).
        await eventually(lambda: len(bus._subscribers) == 1)


async def test_event_streams_are_limited(handle: FakeHandle) -> None:
    settings = ServerSettings(max_streams=1)
    async with (
        serving(handle, settings) as url,
        httpx.AsyncClient(base_url=url) as client,
        client.stream("GET", "/api/v1/events") as first,
    ):
        assert first.status_code == 200
        await anext(first.aiter_lines())
        second = await client.get("/api/v1/events")
        assert second.status_code == 503 and second.headers["retry-after"] == "5"


async def test_a_quiet_stream_carries_keepalive_comments(handle: FakeHandle) -> None:
    settings = ServerSettings(keepalive=0.2)
    async with (
        serving(handle, settings) as url,
        httpx.AsyncClient(base_url=url) as client,
        client.stream("GET", "/api/v1/events") as stream,
    ):
        seen: list[str] = []
        started = time.monotonic()
        async for item in messages(stream):
            assert isinstance(item, str)
            seen.append(item)
            if len(seen) == 3:
                break
    assert seen == [": keep-alive"] * 3
    assert time.monotonic() - started >= 0.4


async def test_a_slow_subscriber_never_blocks_the_publisher(tmp_path: Path) -> None:
    """A client that stops reading: the TCP buffers fill, its queue on the bus then drops
    its oldest events; publishing stays instant and the client later reads the newest
    events, in order, after a stream.lost message counting exactly what it missed."""
    with StateStore(tmp_path / "state.db") as store:
        handle = FakeHandle(store, EventBus(history=100, queue_size=50))
        async with (
            serving(handle, ServerSettings()) as url,
            httpx.AsyncClient(base_url=url) as client,
            client.stream("GET", "/api/v1/events") as stream,
        ):
            lines = stream.aiter_lines()
            assert (await anext(lines)).startswith("retry:")
            await eventually(lambda: len(handle.events._subscribers) == 2)  # metrics + us
            padding = "x" * 2000  # ~2 KB per event: 20 000 of them overflow any TCP buffer
            started = time.monotonic()
            for i in range(20_000):
                handle.events.publish(EventType.AGENT_TOKEN, session="s", text=padding, n=i)
                if i % 500 == 0:
                    await asyncio.sleep(0)  # let the server write what it can
            publishing = time.monotonic() - started
            last = handle.events.history()[-1].id
            parser = sse.Parser()
            ids: list[int] = []
            lost: list[int] = []

            async def read_to_end() -> None:
                async for line in lines:
                    message = parser.line(line)
                    if message is not None and message.event == sse.LOST:
                        lost.append(json.loads(message.data)["data"]["missed"])
                    elif message is not None:
                        ids.append(json.loads(message.data)["id"])
                        if ids[-1] == last:
                            return

            await asyncio.wait_for(read_to_end(), 30)
    assert publishing < 5.0
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert len(ids) < 20_000  # some were dropped for this subscriber...
    assert ids[-50:] == list(range(last - 49, last + 1))  # ...the oldest, not the newest
    assert lost and sum(lost) == 20_000 - len(ids)  # and the stream said how many


async def test_stop_ends_open_streams_and_the_server(handle: FakeHandle) -> None:
    app = build_app(handle, ServerSettings())
    stop = asyncio.Event()
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    settings = ServerSettings(port=0)
    server = asyncio.create_task(
        serve_http(app, settings, stop, on_listen=lambda h, p: bound.set_result(p))
    )
    port = await bound
    async with (
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
        client.stream("GET", "/api/v1/events") as stream,
    ):
        lines = stream.aiter_lines()
        await anext(lines)
        stop.set()
        started = time.monotonic()
        rest = [line async for line in lines]  # ends: the server closed the stream
        await asyncio.wait_for(server, 10)
    assert time.monotonic() - started < 5
    assert all(not line or line.startswith(":") for line in rest)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


async def test_a_reachable_address_without_token_is_refused_before_binding(
    handle: FakeHandle,
) -> None:
    app = build_app(handle, ServerSettings())
    with pytest.raises(ServerConfigError, match="no token is configured"):
        await serve_http(app, ServerSettings(host="0.0.0.0", port=0), asyncio.Event())


async def test_a_busy_port_is_a_bind_error(handle: FakeHandle) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        app = build_app(handle, ServerSettings())
        with pytest.raises(ServerBindError, match=f"cannot listen on 127.0.0.1:{port}"):
            await serve_http(app, ServerSettings(port=port), asyncio.Event())


async def test_an_unreadable_certificate_stops_the_start(
    handle: FakeHandle, tmp_path: Path
) -> None:
    app = build_app(handle, ServerSettings())
    settings = ServerSettings(port=0, tls=TlsSetting(tmp_path / "no.crt", tmp_path / "no.key"))
    with pytest.raises(ServerConfigError, match=r"server\.tls: cannot load the certificate"):
        await serve_http(app, settings, asyncio.Event())
