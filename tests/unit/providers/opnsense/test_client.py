"""The OPNsense API client against the emulator over real HTTP(S).

Every failure must map to its FazAI error, reads must be retried and writes never, and
the API secret must not leak into a message, a repr or a log line on any of those paths.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.errors import (
    ApiError,
    AuthenticationError,
    EndpointMissingError,
    FazaiError,
    ForbiddenError,
    ServerError,
    UnreachableError,
    ValidationFailedError,
)
from controller.providers.opnsense.client import ApiTarget, OpnsenseClient
from controller.secrets import Secret
from controller.testing.opnsense import EmulatorServer, generate_credential

STATUS = "core/firmware/status"
STATUS_PATH = "/api/core/firmware/status"


@pytest.fixture
def emu() -> Iterator[EmulatorServer]:
    with EmulatorServer(version="26.1") as server:
        yield server


@pytest.fixture(autouse=True)
def debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    # Everything httpx, httpcore and FazAI log, down to DEBUG, lands in caplog.text.
    caplog.set_level(logging.DEBUG)


def target(emu: EmulatorServer, **changes: Any) -> ApiTarget:
    options: dict[str, Any] = {
        "node": "edge-fw",
        "url": emu.url,
        "key": Secret(emu.api_key),
        "secret": Secret(emu.api_secret),
        "backoff": 0.01,
        "timeout": 5.0,
        **changes,
    }
    return ApiTarget(**options)


def assert_hidden(error: BaseException, used: ApiTarget, caplog: pytest.LogCaptureFixture) -> None:
    """Neither the secret nor the Authorization header built from it shows anywhere."""
    secret = used.secret.reveal()
    header = base64.b64encode(f"{used.key.reveal()}:{secret}".encode()).decode()
    texts = [str(error), repr(error), repr(used), str(used), caplog.text]
    texts += [str(a) for a in error.args]
    cause = error.__cause__
    while cause is not None:
        texts += [str(cause), repr(cause)]
        cause = cause.__cause__
    for text in texts:
        assert secret not in text
        assert header not in text


async def test_get_answers_the_json(emu: EmulatorServer, caplog: pytest.LogCaptureFixture) -> None:
    used = target(emu)
    async with OpnsenseClient(used) as api:
        status = await api.get(STATUS)
        assert status["product"]["product_version"].startswith("26.1")
        assert api.requests == 1
    assert emu.requests.count(path=STATUS_PATH, status=200) == 1
    assert used.secret.reveal() not in caplog.text
    assert "Secret('***')" in repr(used)
    assert "HTTP Request: GET" in caplog.text  # httpx logs reach caplog


async def test_wrong_secret_is_an_authentication_error_not_retried(
    emu: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    used = target(emu, secret=Secret(generate_credential()))
    async with OpnsenseClient(used) as api:
        with pytest.raises(AuthenticationError) as caught:
            await api.get(STATUS)
    assert caught.value.node == "edge-fw"
    assert "the API key and secret were refused (401)" in caught.value.message
    assert not caught.value.retryable
    assert emu.requests.count(status=401) == 1
    assert len(emu.requests) == 1
    assert_hidden(caught.value, used, caplog)


async def test_key_without_the_privilege_is_forbidden(
    emu: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    key, secret = generate_credential(), generate_credential()
    emu.add_key(key, secret, privileges=("/api/core/",))
    used = ApiTarget("edge-fw", emu.url, Secret(key), Secret(secret), backoff=0.01)
    async with OpnsenseClient(used) as api:
        assert (await api.get(STATUS))["product"]  # within its privileges
        with pytest.raises(ForbiddenError) as caught:
            await api.get("firewall/alias/get")
    error = caught.value
    assert (error.status, error.path) == (403, "firewall/alias/get")
    assert "lacks the privilege" in error.message
    assert emu.requests.count(path="alias/get", status=403) == 1
    assert_hidden(error, used, caplog)


async def test_unknown_endpoint_is_missing(
    emu: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    used = target(emu)
    async with OpnsenseClient(used) as api:
        with pytest.raises(EndpointMissingError) as caught:
            await api.get("nothing/here/at_all")
    assert caught.value.status == 404
    assert caught.value.message == (
        "GET /api/nothing/here/at_all: endpoint not found on this firmware (404)"
    )
    assert len(emu.requests) == 1  # a 404 is not retried
    assert_hidden(caught.value, used, caplog)


async def test_server_errors_on_a_read_are_retried(
    emu: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    emu.faults.fail(500, path="firmware/status", times=2)
    used = target(emu)
    async with OpnsenseClient(used) as api:
        status = await api.get(STATUS)
        assert api.requests == 3
    assert status["product"]
    assert [r.status for r in emu.requests] == [500, 500, 200]
    assert "retry 1" in caplog.text and "retry 2" in caplog.text
    assert used.secret.reveal() not in caplog.text


async def test_server_errors_on_a_read_give_up_after_the_retries(
    emu: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    emu.faults.fail(503, path="firmware/status", times=None)
    used = target(emu, retries=2)
    async with OpnsenseClient(used) as api:
        with pytest.raises(ServerError) as caught:
            await api.get(STATUS)
    assert caught.value.status == 503
    assert caught.value.retryable
    assert "server error 503: Unexpected error, check log for details" in caught.value.message
    assert emu.requests.count(path=STATUS_PATH, status=503) == 3  # 1 + 2 retries
    assert_hidden(caught.value, used, caplog)


async def test_server_error_on_a_write_is_raised_at_once(
    emu: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    emu.faults.fail(500, path="addItem")
    used = target(emu)
    async with OpnsenseClient(used) as api:
        with pytest.raises(ServerError) as caught:
            await api.post("firewall/alias/addItem", {"alias": {"name": "a", "type": "host"}})
        assert api.requests == 1
    assert emu.requests.count(method="POST") == 1
    assert emu.state.list("alias") == {} or all(
        i["name"] != "a" for i in emu.state.list("alias").values()
    )
    assert_hidden(caught.value, used, caplog)


async def test_dropped_connection_on_a_read_is_retried(
    emu: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    emu.faults.drop(path="firmware/status")
    used = target(emu)
    async with OpnsenseClient(used) as api:
        assert (await api.get(STATUS))["product"]
        assert api.requests == 2
    assert [r.status for r in emu.requests] == [0, 200]
    assert used.secret.reveal() not in caplog.text


async def test_dropped_connection_on_a_write_is_not_retried(
    emu: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    emu.faults.drop(path="addItem")
    used = target(emu)
    async with OpnsenseClient(used) as api:
        with pytest.raises(UnreachableError) as caught:
            await api.post("firewall/alias/addItem", {"alias": {"name": "a", "type": "host"}})
    assert emu.requests.count(method="POST") == 1
    assert "POST /api/firewall/alias/addItem: connection lost" in caught.value.message
    assert "the change may have been applied" in caught.value.message
    assert_hidden(caught.value, used, caplog)


async def test_slow_read_times_out_after_its_retries(
    emu: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    emu.faults.delay(1.0, path="firmware/status")
    used = target(emu, timeout=0.2, retries=1)
    async with OpnsenseClient(used) as api:
        with pytest.raises(UnreachableError) as caught:
            await api.get(STATUS)
        assert api.requests == 2
    assert caught.value.message == f"GET /api/{STATUS}: no answer within 0.2 s"
    assert caught.value.retryable
    assert_hidden(caught.value, used, caplog)


async def test_slow_read_succeeds_when_the_retry_is_fast(emu: EmulatorServer) -> None:
    emu.faults.delay(1.0, path="firmware/status", times=1)
    async with OpnsenseClient(target(emu, timeout=0.3)) as api:
        assert (await api.get(STATUS))["product"]
        assert api.requests == 2


async def test_slow_write_times_out_once(
    emu: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    emu.faults.delay(1.0, path="addItem")
    used = target(emu, timeout=0.2)
    async with OpnsenseClient(used) as api:
        with pytest.raises(UnreachableError) as caught:
            await api.post("firewall/alias/addItem", {"alias": {"name": "a", "type": "host"}})
        assert api.requests == 1
    assert "no answer within 0.2 s; the change may have been applied" in caught.value.message
    assert_hidden(caught.value, used, caplog)


async def test_refused_values_carry_the_validations(
    emu: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    used = target(emu)
    body = {"alias": {"name": "web-servers", "type": "port", "content": "99999"}}
    async with OpnsenseClient(used) as api:
        with pytest.raises(ValidationFailedError) as caught:
            await api.post("firewall/alias/addItem", body)
    error = caught.value
    assert isinstance(error, ApiError)
    assert error.path == "firewall/alias/addItem"
    assert error.validations["alias.name"] == [
        "The name must start with a letter or single underscore, be less than 32 characters "
        "and only consist of alphanumeric characters or underscores."
    ]
    assert error.validations["alias.content"] == ['Entry "99999" is not a valid port number.']
    assert error.message.startswith("POST /api/firewall/alias/addItem: refused: alias.content: ")
    assert emu.requests.count(method="POST") == 1
    assert_hidden(error, used, caplog)


async def test_tls_with_the_ca_bundle(emu_tls: EmulatorServer) -> None:
    assert emu_tls.certificate is not None
    async with OpnsenseClient(target(emu_tls, verify=str(emu_tls.certificate))) as api:
        assert (await api.get(STATUS))["product"]


async def test_one_tls_context_per_ca_bundle_read_again_when_replaced(
    emu_tls: EmulatorServer, tmp_path: Path
) -> None:
    """Loading a bundle costs tens of ms and a plan plus its apply open three clients:
    they share one context, until the file is replaced (then it is read again)."""
    from controller.providers.opnsense.client import ssl_context

    assert emu_tls.certificate is not None
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(emu_tls.certificate.read_bytes())
    first = ssl_context("edge-fw", str(bundle))
    assert ssl_context("edge-fw", str(bundle)) is first
    for _ in range(2):
        async with OpnsenseClient(target(emu_tls, verify=str(bundle))) as api:
            assert (await api.get(STATUS))["product"]["product_version"]
    # Another certificate in its place: a new context, which does not trust the emulator.
    other = EmulatorServer(version="26.1", tls=True)
    with other:
        assert other.certificate is not None
        bundle.write_bytes(other.certificate.read_bytes() + b"\n")
    assert ssl_context("edge-fw", str(bundle)) is not first
    async with OpnsenseClient(target(emu_tls, verify=str(bundle))) as api:
        with pytest.raises(UnreachableError, match="TLS certificate verification failed"):
            await api.get(STATUS)


async def test_tls_without_verification(emu_tls: EmulatorServer) -> None:
    async with OpnsenseClient(target(emu_tls, verify=False)) as api:
        assert (await api.get(STATUS))["product"]


async def test_tls_verify_without_the_ca_is_a_clear_unreachable_error(
    emu_tls: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    used = target(emu_tls, verify=True)
    async with OpnsenseClient(used) as api:
        with pytest.raises(UnreachableError) as caught:
            await api.get(STATUS)
        # The same certificate would fail again: no retries.
        assert api.requests == 1
    error = caught.value
    assert "TLS certificate verification failed" in error.message
    assert "tls.caBundle" in error.message
    assert not error.retryable
    assert len(emu_tls.requests) == 0  # refused in the handshake, before any request
    assert_hidden(error, used, caplog)


async def test_missing_ca_bundle(emu_tls: EmulatorServer, tmp_path: Path) -> None:
    with pytest.raises(UnreachableError) as caught:
        async with OpnsenseClient(target(emu_tls, verify=str(tmp_path / "nope.pem"))):
            pass
    assert f"cannot load CA bundle {tmp_path / 'nope.pem'}" in caught.value.message


async def test_nothing_listening(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with EmulatorServer() as gone:
        used = target(gone, retries=1)
    async with OpnsenseClient(used) as api:
        with pytest.raises(UnreachableError) as caught:
            await api.get(STATUS)
        assert api.requests == 2
    assert caught.value.message.startswith(f"cannot connect to {gone.url}: ")
    assert_hidden(caught.value, used, caplog)


async def test_client_outside_its_context(emu: EmulatorServer) -> None:
    with pytest.raises(RuntimeError):
        await OpnsenseClient(target(emu)).get(STATUS)


def test_every_client_error_is_a_fazai_error() -> None:
    for cls in (AuthenticationError, ForbiddenError, EndpointMissingError, ServerError,
                UnreachableError, ValidationFailedError):  # fmt: skip
        assert issubclass(cls, FazaiError)


@pytest.fixture
def emu_tls() -> Iterator[EmulatorServer]:
    with EmulatorServer(version="26.1", tls=True) as server:
        yield server
