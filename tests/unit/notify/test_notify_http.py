"""Webhook senders against a real HTTP server on loopback: shapes, statuses, timeouts, and
errors that never show the URL (it carries the hook's token)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime

import jsonschema
import pytest

from controller.notify import formats
from controller.notify.notice import Notice
from controller.notify.senders import DeliveryError, sender_for
from controller.notify.settings import NoticeKind, SecretRef, SlackTarget, WebhookTarget
from controller.reports.build import drifted_resources
from tests.unit.notify.httpkit import HookServer
from tests.unit.reports.handlekit import recorded_items


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[HookServer]:
    with HookServer() as running:
        monkeypatch.setenv("FAZAI_TEST_HOOK", running.url)
        yield running


def drift() -> Notice:
    found = recorded_items("plan_1_drift", "rep-db-1")
    return Notice(
        NoticeKind.DRIFT,
        "Drift on rep-db-1: 1 to create, 1 to update",
        "rep-db-1 differs",
        datetime(2025, 3, 1, 6, tzinfo=UTC),
        event_id=5,
        source="infra",
        node="rep-db-1",
        revision="0123456789abcdef",
        mode="detect",
        resources=drifted_resources("rep-db-1", "infra", found),
    )


def webhook(timeout: float = 5.0, env: str = "FAZAI_TEST_HOOK") -> WebhookTarget:
    return WebhookTarget(name="hook", url=SecretRef(env=env), timeout=timeout)


async def test_the_json_webhook_posts_the_documented_document(server: HookServer) -> None:
    sender = sender_for(webhook())
    await sender.send(drift())
    await sender.close()
    (got,) = server.received
    assert got.path == "/hooks/T000/B000/SECRETTOKEN"
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["X-FazAI-Notice"] == "drift"
    assert got.headers["User-Agent"].startswith("fazai/")
    jsonschema.validate(got.body, formats.webhook_schema())
    assert got.body["node"] == "rep-db-1" and got.body["revision"] == "0123456789abcdef"
    sysctl = next(r for r in got.body["resources"] if r["kind"] == "Sysctl")
    assert sysctl["action"] == "update"
    assert {c["field"] for c in sysctl["changes"]} == {"persisted", "value"}


async def test_the_slack_webhook_posts_text_and_blocks(server: HookServer) -> None:
    sender = sender_for(SlackTarget(name="slack", url=SecretRef(env="FAZAI_TEST_HOOK")))
    await sender.send(drift())
    await sender.close()
    (got,) = server.received
    assert set(got.body) == {"text", "blocks"}
    assert got.body["text"] == ":warning: Drift on rep-db-1: 1 to create, 1 to update"
    assert got.body["blocks"][0]["text"]["text"] == "*Drift on rep-db-1: 1 to create, 1 to update*"
    assert any("`Sysctl/fwd-db`" in json.dumps(b) for b in got.body["blocks"])


@pytest.mark.parametrize(
    ("status", "retryable"), [(503, True), (500, True), (429, True), (404, False), (400, False)]
)
async def test_statuses_map_to_retryable_or_not(
    server: HookServer, status: int, retryable: bool
) -> None:
    server.script.statuses = [status]
    server.script.retry_after = "7"
    sender = sender_for(webhook())
    with pytest.raises(DeliveryError) as caught:
        await sender.send(drift())
    await sender.close()
    assert caught.value.retryable is retryable
    assert caught.value.message.startswith(f"HTTP {status}")
    assert caught.value.retry_after == 7.0
    assert "SECRETTOKEN" not in str(caught.value) and "127.0.0.1" not in str(caught.value)


async def test_a_slow_target_times_out_as_retryable(server: HookServer) -> None:
    server.script.delay = 1.0
    sender = sender_for(webhook(timeout=0.2))
    with pytest.raises(DeliveryError, match=r"no answer within 0\.2s") as caught:
        await sender.send(drift())
    await sender.close()
    assert caught.value.retryable


async def test_a_refused_connection_is_retryable_and_hides_the_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("FAZAI_TEST_HOOK", f"http://127.0.0.1:{port}/hooks/SECRETTOKEN")
    sender = sender_for(webhook())
    with pytest.raises(DeliveryError, match="cannot connect") as caught:
        await sender.send(drift())
    await sender.close()
    assert caught.value.retryable and "SECRETTOKEN" not in str(caught.value)


async def test_a_missing_secret_is_a_permanent_failure_naming_the_reference() -> None:
    sender = sender_for(webhook(env="FAZAI_TEST_NOT_SET"))
    with pytest.raises(DeliveryError) as caught:
        await sender.send(drift())
    await sender.close()
    assert not caught.value.retryable
    assert "environment variable FAZAI_TEST_NOT_SET is not set" in str(caught.value)
