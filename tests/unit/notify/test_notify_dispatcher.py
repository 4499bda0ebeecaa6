"""The notifier end to end: events on a real bus in, JSON and Slack webhooks out to real
HTTP servers; dedup across intervals and restarts; a failing target that neither blocks
the others nor the event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.events import EventBus, EventType
from controller.notify.dispatcher import Notifier
from controller.notify.settings import (
    NoticeKind,
    NotifySettings,
    Retry,
    SecretRef,
    SlackTarget,
    WebhookTarget,
)
from controller.store import StateStore
from tests.unit.notify.httpkit import HookServer
from tests.unit.reports.handlekit import Clock, FakeHandle, node_drift, recorded

REV = "0123456789abcdef0123456789abcdef01234567"


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore(tmp_path / "state.db", now=Clock()) as opened:
        yield opened


@pytest.fixture
def hooks(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[HookServer, HookServer]]:
    with HookServer() as json_hook, HookServer() as slack_hook:
        monkeypatch.setenv("FAZAI_TEST_JSON_HOOK", json_hook.url)
        monkeypatch.setenv("FAZAI_TEST_SLACK_HOOK", slack_hook.url)
        yield json_hook, slack_hook


def targets(**json_options: Any) -> NotifySettings:
    return NotifySettings(
        (
            WebhookTarget(name="json", url=SecretRef(env="FAZAI_TEST_JSON_HOOK"), **json_options),
            SlackTarget(
                name="slack",
                url=SecretRef(env="FAZAI_TEST_SLACK_HOOK"),
                events=frozenset({NoticeKind.DRIFT, NoticeKind.RESOLVED}),
            ),
        )
    )


class Running:
    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(notifier.run(self.stop))

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 10)


@pytest.fixture
async def start(store: StateStore) -> AsyncIterator[Callable[..., Any]]:
    started: list[Running] = []

    async def starter(handle: FakeHandle, settings: NotifySettings, **options: Any) -> Running:
        running = Running(Notifier(settings, handle, grace=1.0, **options))
        started.append(running)
        await asyncio.sleep(0.05)  # subscribed
        return running

    yield starter
    for running in started:
        if not running.task.done():
            await running.close()


def publish_drift(handle: FakeHandle, node: str, plan: str = "plan_1_drift") -> None:
    handle.events.publish(
        EventType.DRIFT_DETECTED,
        source="infra",
        node=node,
        revision=REV,
        mode="detect",
        items=[c for c in recorded(plan)["changes"] if c["node"] == node],
    )


def publish_finished(handle: FakeHandle) -> None:
    handle.events.publish(
        EventType.RUN_FINISHED, source="infra", run_id=1, status="succeeded", command="plan"
    )


async def test_drift_is_sent_once_per_interval_and_resolved_once(
    store: StateStore, hooks: tuple[HookServer, HookServer], start: Callable[..., Any]
) -> None:
    json_hook, slack_hook = hooks
    handle = FakeHandle(store, EventBus())
    running = await start(handle, targets())
    for _interval in range(3):  # the periodic drift check finds the same drift thrice
        publish_drift(handle, "rep-db-1")
        publish_finished(handle)
    await until(lambda: len(json_hook.received) == 1 and len(slack_hook.received) == 1)
    await asyncio.sleep(0.3)
    assert len(json_hook.received) == 1 and len(slack_hook.received) == 1
    body = json_hook.bodies()[0]
    assert (body["type"], body["node"], body["revision"]) == ("drift", "rep-db-1", REV)
    assert "blocks" in slack_hook.bodies()[0]

    handle.drift_entries = node_drift(recorded("plan_3_in_sync"))
    publish_finished(handle)
    await until(lambda: len(json_hook.received) == 2 and len(slack_hook.received) == 2)
    assert json_hook.bodies()[1]["type"] == "resolved"
    assert slack_hook.bodies()[1]["text"] == ":white_check_mark: Drift resolved on rep-db-1"
    await running.close()


async def test_a_restart_does_not_repeat_a_known_drift(
    store: StateStore, hooks: tuple[HookServer, HookServer], start: Callable[..., Any]
) -> None:
    json_hook, _ = hooks
    handle = FakeHandle(store, EventBus())
    first = await start(handle, targets())
    publish_drift(handle, "rep-web-1")
    await until(lambda: len(json_hook.received) == 1)
    await first.close()

    second = await start(handle, targets())  # the controller restarted
    publish_drift(handle, "rep-web-1")
    changed = [c for c in recorded("plan_1_drift")["changes"] if c["node"] == "rep-web-1"][:1]
    handle.events.publish(
        EventType.DRIFT_DETECTED, source="infra", node="rep-web-1", revision=REV, items=changed
    )
    await until(lambda: len(json_hook.received) == 2)
    await asyncio.sleep(0.3)
    bodies = json_hook.bodies()
    assert len(bodies) == 2 and bodies[1]["changed"] is True
    await second.close()


async def test_a_failing_target_is_retried_and_blocks_neither_the_others_nor_the_loop(
    store: StateStore, hooks: tuple[HookServer, HookServer], start: Callable[..., Any]
) -> None:
    json_hook, slack_hook = hooks
    json_hook.script.statuses = [503, 503]  # down for two attempts
    json_hook.script.delay = 0.4
    handle = FakeHandle(store, EventBus())
    settings = targets(timeout=5.0, retry=Retry(attempts=4, backoff=0.5))
    running = await start(handle, settings)
    began = time.monotonic()
    publish_drift(handle, "rep-db-1")
    await until(lambda: len(slack_hook.received) == 1)
    # The healthy target did not wait for the failing one (its first success takes 2.7 s).
    assert time.monotonic() - began < 2.0
    publish_drift(handle, "rep-web-1")
    await until(lambda: len(slack_hook.received) == 2)
    assert json_hook.received == []  # still retrying its first notice
    await until(lambda: len(json_hook.received) == 2)
    assert json_hook.attempts == 4  # 503, 503, then both notices
    assert [b["node"] for b in json_hook.bodies()] == ["rep-db-1", "rep-web-1"]
    json_target = next(d for d in running.notifier.deliveries if d.target.name == "json")
    await until(lambda: json_target.stats.sent == 2)
    assert json_target.stats.retried == 2 and json_target.stats.failed == 0
    await running.close()


async def test_stopping_gives_queued_notices_a_grace_period(
    store: StateStore, hooks: tuple[HookServer, HookServer], start: Callable[..., Any]
) -> None:
    json_hook, _ = hooks
    json_hook.script.delay = 0.3
    handle = FakeHandle(store, EventBus())
    running = await start(handle, targets())
    publish_drift(handle, "rep-db-1")
    publish_drift(handle, "rep-web-1")
    await asyncio.sleep(0.05)
    await running.close()
    assert len(json_hook.received) == 2
