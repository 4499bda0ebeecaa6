"""An API without tokens (loopback only) still refuses what a web page in the operator's
browser could send it: requests addressed to another host name (DNS rebinding) and writes
that are not JSON (a cross-site form or text POST needs no preflight)."""

from __future__ import annotations

import pytest

from controller.server.settings import ServerSettings
from tests.unit.server.serverkit import TOKEN_SETTINGS, FakeHandle, Tokens, asgi_client, bearer

OPEN = ServerSettings()


@pytest.mark.parametrize("host", ["127.0.0.1:8080", "localhost", "[::1]:8080"])
async def test_loopback_hosts_are_answered(handle: FakeHandle, host: str) -> None:
    async with asgi_client(handle, OPEN) as client:
        answer = await client.get("/api/v1/sources", headers={"host": host})
    assert answer.status_code == 200


@pytest.mark.parametrize("host", ["attacker.example:8080", "fazai.internal", "10.0.0.5"])
async def test_a_request_addressed_to_another_host_is_refused(
    handle: FakeHandle, host: str
) -> None:
    async with asgi_client(handle, OPEN) as client:
        read = await client.get("/api/v1/approvals", headers={"host": host})
        write = await client.post("/api/v1/reconcile", json={}, headers={"host": host})
    assert (read.status_code, write.status_code) == (403, 403)
    assert "loopback" in read.json()["error"]
    assert handle.triggers == []


@pytest.mark.parametrize(
    "kind", ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data", None]
)
async def test_a_write_that_is_not_json_is_refused(handle: FakeHandle, kind: str | None) -> None:
    async with asgi_client(handle, OPEN) as client:
        headers = {"content-type": kind} if kind else {}
        if kind is None:
            client.headers.pop("content-type")
        approve = await client.post("/api/v1/approvals/a1/approve", headers=headers)
        reconcile = await client.post("/api/v1/reconcile", content=b"", headers=headers)
    assert (approve.status_code, reconcile.status_code) == (415, 415)
    assert handle.triggers == [] and handle.approved == []


async def test_with_tokens_the_bearer_token_is_what_protects(
    handle: FakeHandle, tokens: Tokens
) -> None:
    settings = ServerSettings(tokens=TOKEN_SETTINGS)
    async with asgi_client(handle, settings) as client:
        client.headers.pop("content-type")
        answer = await client.post(
            "/api/v1/reconcile", headers={**bearer(tokens.write), "host": "fazai.internal:8080"}
        )
    assert answer.status_code == 202
