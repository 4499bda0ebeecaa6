"""Bearer tokens: who may call which route, and how tokens are compared."""

from __future__ import annotations

import hmac
import logging
from pathlib import Path

import pytest

from controller.errors import SecretError
from controller.secrets import Secret
from controller.server import auth
from controller.server.auth import TokenTable
from controller.server.errors import ServerConfigError
from controller.server.settings import Role, SecretRef, ServerSettings, TokenSetting
from tests.unit.server.serverkit import FakeHandle, Tokens, asgi_client, bearer, token_settings

READ_ROUTES = [
    "/api/v1/sources",
    "/api/v1/runs",
    "/api/v1/drift",
    "/api/v1/approvals",
    "/metrics",
]
WRITE_ROUTES = [
    "/api/v1/reconcile",
    "/api/v1/approvals/x/approve",
    "/api/v1/approvals/x/abort",
]


def table(*tokens: tuple[str, Role, str]) -> TokenTable:
    return TokenTable([(auth.Caller(name, role), Secret(value)) for name, role, value in tokens])


def test_a_token_names_its_caller_and_scope() -> None:
    tokens = table(("grafana", Role.VIEWER, "r" * 32), ("ci", Role.APPROVER, "w" * 32))
    assert tokens.authenticate("Bearer " + "r" * 32) == auth.Caller("grafana", Role.VIEWER)
    assert tokens.authenticate("bearer " + "w" * 32) == auth.Caller("ci", Role.APPROVER)
    for header in (
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic " + "r" * 32,
        "r" * 32,
        "Bearer " + "r" * 31,
    ):
        assert tokens.authenticate(header) is None


def test_write_implies_read() -> None:
    assert auth.Caller("ci", Role.APPROVER).may(Role.VIEWER)
    assert auth.Caller("ci", Role.APPROVER).may(Role.APPROVER)
    assert auth.Caller("grafana", Role.VIEWER).may(Role.VIEWER)
    assert not auth.Caller("grafana", Role.VIEWER).may(Role.APPROVER)


def test_tokens_are_compared_in_constant_time_against_every_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """compare_digest on fixed-length digests, and no early exit on the first match: the
    time taken does not depend on which token matched or how much of a guess was right."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # the function auth.py calls
    tokens = table(
        ("a", Role.VIEWER, "a" * 20), ("b", Role.VIEWER, "b" * 20), ("c", Role.APPROVER, "c" * 40)
    )
    assert tokens.authenticate("Bearer " + "a" * 20) == auth.Caller("a", Role.VIEWER)
    assert len(calls) == 3  # the first token matched; the other two were compared anyway
    assert {len(a) for a, _ in calls} == {32} and {len(b) for _, b in calls} == {32}
    calls.clear()
    assert tokens.authenticate("Bearer " + "x" * 5) is None
    assert len(calls) == 3


def test_no_token_configured_means_open(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = TokenTable.from_settings(ServerSettings())
    assert tokens.open
    assert tokens.authenticate(None) == auth.Caller(auth.ANONYMOUS, Role.APPROVER)


def test_tokens_are_read_from_their_references(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "token").write_text("f" * 24 + "\n")
    monkeypatch.setenv("FAZAI_T", "e" * 24)
    settings = ServerSettings(
        tokens=(
            TokenSetting("fromfile", Role.VIEWER, SecretRef(file=str(tmp_path / "token"))),
            TokenSetting("fromenv", Role.APPROVER, SecretRef(env="FAZAI_T")),
        )
    )
    tokens = TokenTable.from_settings(settings)
    assert tokens.authenticate("Bearer " + "f" * 24) == auth.Caller("fromfile", Role.VIEWER)
    assert tokens.authenticate("Bearer " + "e" * 24) == auth.Caller("fromenv", Role.APPROVER)


def test_a_missing_or_weak_token_stops_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = ServerSettings(tokens=(TokenSetting("ci", Role.VIEWER, SecretRef(env="FAZAI_NOPE")),))
    monkeypatch.delenv("FAZAI_NOPE", raising=False)
    with pytest.raises(SecretError, match="FAZAI_NOPE is not set"):
        TokenTable.from_settings(missing)
    monkeypatch.setenv("FAZAI_SHORT", "hunter2")
    weak = ServerSettings(tokens=(TokenSetting("ci", Role.VIEWER, SecretRef(env="FAZAI_SHORT")),))
    with pytest.raises(ServerConfigError, match="shorter than 16") as caught:
        TokenTable.from_settings(weak)
    assert "hunter2" not in str(caught.value)
    monkeypatch.setenv("FAZAI_SAME", "s" * 20)
    same = ServerSettings(
        tokens=(
            TokenSetting("a", Role.VIEWER, SecretRef(env="FAZAI_SAME")),
            TokenSetting("b", Role.APPROVER, SecretRef(env="FAZAI_SAME")),
        )
    )
    with pytest.raises(ServerConfigError, match="another token's value"):
        TokenTable.from_settings(same)


async def test_routes_need_a_token(handle: FakeHandle, tokens: Tokens) -> None:
    async with asgi_client(handle, token_settings()) as client:
        for path in READ_ROUTES:
            answer = await client.get(path)
            assert answer.status_code == 401, path
            assert answer.json() == {"error": "a valid bearer token is needed"}
            assert answer.headers["www-authenticate"] == 'Bearer realm="fazai"'
            wrong = await client.get(path, headers=bearer("0" * 32))
            assert wrong.status_code == 401
            assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
        for path in WRITE_ROUTES:
            assert (await client.post(path)).status_code == 401, path
        assert (await client.get("/api/v1/events", headers=bearer("0" * 32))).status_code == 401


async def test_scopes(handle: FakeHandle, tokens: Tokens) -> None:
    handle.add_approval("x")
    async with asgi_client(handle, token_settings()) as client:
        for path in READ_ROUTES:
            assert (await client.get(path, headers=bearer(tokens.read))).status_code == 200
            assert (await client.get(path, headers=bearer(tokens.write))).status_code == 200
        for path in WRITE_ROUTES:
            refused = await client.post(path, headers=bearer(tokens.read))
            assert refused.status_code == 403, path
            needs = "operator" if path.endswith("reconcile") else "approver"
            assert refused.json() == {
                "error": f"token 'dashboard' has the viewer role; this route needs {needs}"
            }
            assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
        assert handle.triggers == [] and handle.approved == [] and handle.aborted == []
        answer = await client.post("/api/v1/reconcile", headers=bearer(tokens.write))
        assert answer.status_code == 202
        answer = await client.post("/api/v1/approvals/x/approve", headers=bearer(tokens.write))
        assert answer.status_code == 200
    assert handle.triggers == [(None, "api")] and handle.approved == ["x"]


async def test_probes_are_open(handle: FakeHandle, tokens: Tokens) -> None:
    async with asgi_client(handle, token_settings()) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        assert (await client.get("/readyz")).status_code == 200


async def test_without_tokens_every_route_is_open_on_loopback(handle: FakeHandle) -> None:
    async with asgi_client(handle, ServerSettings()) as client:
        assert (await client.get("/api/v1/sources")).status_code == 200
        assert (await client.post("/api/v1/reconcile", json={"source": "infra"})).status_code == 202
    assert handle.triggers == [("infra", "api")]


async def test_no_token_reaches_a_response_or_the_log(
    handle: FakeHandle, tokens: Tokens, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with asgi_client(handle, token_settings()) as client:
        bodies = [
            (await client.post("/api/v1/reconcile", headers=bearer(tokens.write))).text,
            (await client.post("/api/v1/reconcile", headers=bearer(tokens.read))).text,
            (await client.get("/api/v1/sources", headers=bearer(tokens.read))).text,
            (await client.get("/metrics", headers=bearer(tokens.read))).text,
        ]
    everything = "\n".join(bodies) + caplog.text
    assert "requested by ci" in caplog.text  # the token's name is what is logged
    assert tokens.read not in everything and tokens.write not in everything
