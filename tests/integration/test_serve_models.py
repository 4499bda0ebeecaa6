"""``fazai serve``'s model runtime, put together as ``controller.daemon`` does it: its
metrics on the API's /metrics, the tokens of a generation as ``model.token`` events on
/api/v1/events, over the real worker serving the embedded SmolLM2 and real uvicorn. A
scrape before any completion does not start the worker; a scoped token's stream never
shows model events (they name no source)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from controller import daemon
from controller.events import Event, EventType
from controller.llm.completion import Answer, Budget, Completion, Message, Role
from controller.llm.runtime import ModelRuntime
from controller.reconcile.config import ControllerConfig, SourceConfig
from controller.reconcile.controller import Controller
from controller.server import sse
from controller.server.app import build_app
from controller.server.metrics import Metrics
from controller.server.run import serve_http
from controller.server.scoping import event_visible
from controller.server.settings import ServerSettings, TokenScope
from controller.store import StateStore
from tests.integration.gateway.gatewaykit import smollm2_settings

ASK = Completion(Role.BRAIN, messages=(Message("user", "Say hello."),), budget=Budget(8))


def config(tmp_path: Path) -> ControllerConfig:
    models = smollm2_settings(tmp_path / "models")
    (tmp_path / "models").mkdir(mode=0o700)
    return ControllerConfig(
        sources=(SourceConfig(name="infra", url=f"file://{tmp_path}/none.git", path="."),),
        state=tmp_path / "state.db",
        sections={"models": models},
    )


def sample(exposition: str, name: str, labels: dict[str, str]) -> float | None:
    for family in text_string_to_metric_families(exposition):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return None


@contextlib.asynccontextmanager
async def served(tmp_path: Path) -> AsyncIterator[tuple[str, ModelRuntime, Controller]]:
    """The API and the runtime as ``daemon.Services`` builds them, on a free port."""
    conf = config(tmp_path)
    assert conf.state is not None
    with StateStore(conf.state) as store:
        controller = Controller(conf, store)
        metrics = Metrics()
        runtime = daemon.model_runtime(controller, conf, metrics)
        app = build_app(
            controller,
            ServerSettings(port=0),
            metrics=metrics,
            before_scrape=[runtime.refresh_metrics],
        )
        stop = asyncio.Event()
        bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        server = asyncio.create_task(
            serve_http(
                app, ServerSettings(port=0), stop, on_listen=lambda h, p: bound.set_result(p)
            )
        )
        try:
            port = await asyncio.wait_for(bound, 30)
            yield f"http://127.0.0.1:{port}", runtime, controller
        finally:
            stop.set()
            await asyncio.wait_for(server, 30)
            await runtime.close()


async def test_tokens_stream_as_events_and_metrics_are_on_the_api(tmp_path: Path) -> None:
    async with served(tmp_path) as (url, runtime, _), httpx.AsyncClient(base_url=url) as client:
        before = (await client.get("/metrics")).text
        # Looking at the metrics started nothing: no worker, no socket.
        assert not (tmp_path / "models" / "worker.sock").exists()
        assert "fazai_model_answers_total{" not in before

        tokens: list[dict[str, object]] = []
        answers: list[dict[str, object]] = []
        listening = asyncio.Event()

        async def listen() -> None:
            parser = sse.Parser()
            async with client.stream("GET", "/api/v1/events", timeout=120) as stream:
                listening.set()
                async for line in stream.aiter_lines():
                    message = parser.line(line)
                    if message is None or not message.data:
                        continue
                    event = json.loads(message.data)
                    if event["type"] == EventType.MODEL_TOKEN.value:
                        tokens.append(event["data"])
                    elif event["type"] == EventType.MODEL_ANSWER.value:
                        answers.append(event["data"])
                        return

        listener = asyncio.create_task(listen())
        await asyncio.wait_for(listening.wait(), 30)
        await asyncio.sleep(0.2)  # the stream's subscription is made once its head is sent
        made = [item async for item in runtime.stream(ASK)]
        answer = made[-1]
        assert isinstance(answer, Answer)
        await asyncio.wait_for(listener, 60)

        assert tokens and "".join(str(t["text"]) for t in tokens) == answer.text
        assert {t["backend"] for t in tokens} == {"smollm2"}
        assert answers[0]["backend"] == "smollm2"

        after = (await client.get("/metrics")).text
        labels = {"backend": "smollm2", "model": "smollm2-135m"}
        finished = {**labels, "role": "brain", "finish_reason": answer.finish_reason}
        assert sample(after, "fazai_model_answers_total", finished) == 1
        completion = sample(after, "fazai_model_tokens_total", {**labels, "kind": "completion"})
        assert completion == answer.usage.completion_tokens
        # The worker is running now: the scrape read its stats.
        assert sample(after, "fazai_model_queue_depth", {"backend": "smollm2"}) == 0


def test_a_scoped_token_never_sees_model_events() -> None:
    scoped = TokenScope(sources=frozenset({"infra"}))
    token = Event(
        1,
        EventType.MODEL_TOKEN,
        datetime.now(UTC),
        {"request": "r1", "role": "brain", "backend": "smollm2", "index": 0, "text": "secret"},
    )
    assert not event_visible(scoped, {}, token)
    assert event_visible(TokenScope(), {}, token)


async def test_the_runtime_outlives_the_services_until_closed(tmp_path: Path) -> None:
    conf = config(tmp_path)
    assert conf.state is not None
    with StateStore(conf.state) as store:
        controller = Controller(conf, store)
        services = daemon.Services()
        # No service of its own: one that ended at the stop signal would fail the serve.
        assert services(controller, conf, asyncio.Event(), api=False) == {}
        runtime = services.models
        assert runtime is not None
        stream = runtime.stream(ASK)
        await anext(stream)  # the first completion starts the worker
        await stream.aclose()  # type: ignore[attr-defined]
        socket = tmp_path / "models" / "worker.sock"
        assert socket.exists()
        await services.close()
        assert not socket.exists()  # the worker stopped with it
