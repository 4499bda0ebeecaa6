"""Real failures, mapped into the exception tree, say whether a retry can help.

Each failure is produced for real on loopback: the OPNsense emulator refusing a key
(401), answering 503/429 with Retry-After, hanging past the client's timeout, a closed
port, a certificate that does not verify; a small HTTP app standing in for a forge and a
git server; a SQLite database another connection holds. Then
:func:`controller.errors.retry_decision` must classify it.
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from controller.errors import (
    AuthenticationError,
    ForgeAuthError,
    ForgeRateLimitedError,
    ForgeUnavailableError,
    RateLimitedError,
    RetryDecision,
    ServerError,
    SourceError,
    StoreLockedError,
    UnreachableError,
    retry_after,
    retry_decision,
)
from controller.forges.http import ForgeHttp, ForgeTarget
from controller.providers.opnsense.client import ApiTarget, OpnsenseClient
from controller.reconcile.backoff import Backoff
from controller.reconcile.config import SourceConfig
from controller.reconcile.gitsource import GitSource
from controller.secrets import Secret
from controller.source import git as gitsource
from controller.store.database import Database
from controller.testing.opnsense import EmulatorServer
from controller.testing.opnsense.server import self_signed_certificate

STATUS = "core/firmware/status"


def permanent(exc: BaseException) -> RetryDecision:
    decision = retry_decision(exc)
    assert decision.permanent, f"{type(exc).__name__}: {exc} should be permanent"
    return decision


def temporary(exc: BaseException) -> RetryDecision:
    decision = retry_decision(exc)
    assert decision.temporary, f"{type(exc).__name__}: {exc} should be temporary"
    return decision


# -- the OPNsense API (the emulator) ---------------------------------------------------


@pytest.fixture
def emu() -> Iterator[EmulatorServer]:
    with EmulatorServer(version="26.1") as server:
        yield server


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


async def failure(api: ApiTarget) -> BaseException:
    async with OpnsenseClient(api) as client:
        with pytest.raises(Exception) as caught:
            await client.get(STATUS)
    return caught.value


async def test_a_refused_api_key_401_is_permanent(emu: EmulatorServer) -> None:
    exc = await failure(target(emu, secret=Secret("not-the-secret")))
    assert isinstance(exc, AuthenticationError)
    assert permanent(exc).delay is None


async def test_503_with_retry_after_is_temporary_with_that_delay_and_not_retried_inside(
    emu: EmulatorServer,
) -> None:
    emu.faults.fail(503, path=STATUS, times=None, headers={"Retry-After": "7"})
    exc = await failure(target(emu))
    assert isinstance(exc, ServerError)
    assert temporary(exc).delay == 7.0
    # The firewall asked for 7 s: the client's own 10 ms retries would only hammer it.
    assert emu.requests.count(path=STATUS) == 1


async def test_503_without_retry_after_is_temporary_and_retried_by_the_client(
    emu: EmulatorServer,
) -> None:
    emu.faults.fail(503, path=STATUS, times=None)
    exc = await failure(target(emu, retries=2))
    assert isinstance(exc, ServerError)
    assert temporary(exc).delay is None
    assert emu.requests.count(path=STATUS) == 3


async def test_429_with_an_http_date_is_temporary_with_its_delay(emu: EmulatorServer) -> None:
    when = formatdate(time.time() + 30, usegmt=True)
    emu.faults.fail(429, path=STATUS, times=None, headers={"Retry-After": when})
    exc = await failure(target(emu))
    assert isinstance(exc, RateLimitedError)
    delay = temporary(exc).delay
    assert delay is not None and 25 <= delay <= 31


async def test_an_answer_that_never_comes_is_temporary(emu: EmulatorServer) -> None:
    emu.faults.delay(3.0, path=STATUS)
    exc = await failure(target(emu, timeout=0.3, retries=0))
    assert isinstance(exc, UnreachableError)
    assert "no answer within" in str(exc)
    assert temporary(exc).delay is None
    assert exc.__cause__ is not None  # chained from httpx's timeout


async def test_a_refused_connection_is_temporary() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    api = ApiTarget("edge-fw", f"http://127.0.0.1:{port}", Secret("k"), Secret("s"), retries=0)
    exc = await failure(api)
    assert isinstance(exc, UnreachableError)
    temporary(exc)


async def test_a_certificate_that_does_not_verify_is_permanent() -> None:
    with EmulatorServer(version="26.1", tls=True) as emu:
        exc = await failure(target(emu, verify=True, retries=3))
        assert isinstance(exc, UnreachableError)
        permanent(exc)
        assert emu.requests.count() == 0  # no retry met the same certificate again


# -- a forge and a git server: a small app on loopback ----------------------------------


class Answer:
    """What the app answers every request with; ``requests`` counts them."""

    def __init__(self) -> None:
        self.status = 200
        self.headers: dict[str, str] = {}
        self.requests = 0


@contextlib.contextmanager
def loopback(answer: Answer, tls: Path | None = None) -> Iterator[str]:
    async def endpoint(request: Request) -> Response:
        answer.requests += 1
        return Response(b'{"message": "no"}', answer.status, headers=answer.headers)

    app = Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET", "POST"])])
    options: dict[str, Any] = {}
    if tls is not None:  # a self-signed certificate in that folder
        cert, key = self_signed_certificate(tls, "127.0.0.1")
        options = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", **options
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the app did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


async def forge_failure(url: str) -> BaseException:
    forge = ForgeTarget("gitea", url + "/api/v1", Secret("t0ken"), timeout=5)
    async with ForgeHttp(forge, {}) as http:
        with pytest.raises(Exception) as caught:
            await http.request("POST", "repos/a/b/statuses/abc", json={}, expect=(201,))
    return caught.value


async def test_forge_answers_are_classified() -> None:
    answer = Answer()
    with loopback(answer) as url:
        answer.status = 401
        exc = await forge_failure(url)
        assert isinstance(exc, ForgeAuthError)
        permanent(exc)
        answer.status, answer.headers = 503, {"Retry-After": "12"}
        exc = await forge_failure(url)
        assert isinstance(exc, ForgeUnavailableError)
        assert temporary(exc).delay == 12.0
        answer.status, answer.headers = 429, {"Retry-After": "40"}
        exc = await forge_failure(url)
        assert isinstance(exc, ForgeRateLimitedError)
        assert temporary(exc).delay == 40.0


async def test_a_forge_certificate_that_does_not_verify_is_permanent_and_not_retried(
    tmp_path: Path,
) -> None:
    answer = Answer()
    with loopback(answer, tls=tmp_path) as url:
        exc = await forge_failure(url)
    assert isinstance(exc, ForgeUnavailableError)
    assert "certificate" in str(exc).lower()
    permanent(exc)
    assert answer.requests == 0


def test_git_over_http_refusing_credentials_is_permanent_a_closed_port_temporary(
    tmp_path: Path,
) -> None:
    answer = Answer()
    answer.status, answer.headers = 401, {"WWW-Authenticate": 'Basic realm="git"'}
    with loopback(answer) as url:
        config = SourceConfig("infra", f"{url}/acme/infra.git", timeout=10)
        with pytest.raises(SourceError) as caught:
            GitSource(config, tmp_path / "cache").remote_head()
        assert permanent(caught.value)
        with pytest.raises(SourceError) as cloned:
            gitsource.open_repository(config.url, tmp_path / "cache", timeout=10)
        assert permanent(cloned.value)
        assert cloned.value.__cause__ is not None
        assert answer.requests >= 2
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gone = SourceConfig("infra", f"http://127.0.0.1:{port}/acme/infra.git", timeout=10)
    with pytest.raises(SourceError) as refused:
        GitSource(gone, tmp_path / "cache").remote_head()
    temporary(refused.value)
    missing = SourceConfig("infra", str(tmp_path / "nowhere.git"), timeout=10)
    with pytest.raises(SourceError) as absent:
        GitSource(missing, tmp_path / "cache").fetch()
    temporary(absent.value)  # a remote gone for now may come back (a moved mount)


# -- sqlite3 busy ------------------------------------------------------------------------


def test_a_store_another_process_holds_is_temporary(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    database = Database(path, busy_timeout=0.1)
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        with database.write("creating") as cur:
            cur.execute("CREATE TABLE t (x)")
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreLockedError) as caught, database.write("inserting") as cur:
            cur.execute("INSERT INTO t VALUES (1)")
        temporary(caught.value)
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
    finally:
        if holder.in_transaction:
            holder.execute("ROLLBACK")
        holder.close()
        database.close()


# -- the decision itself ------------------------------------------------------------------


def test_retry_after_reads_seconds_and_dates() -> None:
    now = 1_700_000_000.0
    assert retry_after("120") == 120.0
    assert retry_after(" 1.5 ") == 1.5
    assert retry_after("-3") == 0.0
    assert retry_after(formatdate(now + 90, usegmt=True), now=now) == pytest.approx(90.0)
    assert retry_after(formatdate(now - 90, usegmt=True), now=now) == 0.0
    assert [retry_after(v) for v in (None, "", "soon", "nan", "inf")] == [None] * 5


def test_anything_unmapped_is_temporary_and_a_delay_needs_a_temporary_error() -> None:
    assert retry_decision(OSError("boom")) == RetryDecision(False, None, "OSError")
    assert retry_decision(RuntimeError("bug")).temporary
    refused = AuthenticationError("n", "refused")
    refused.delay = 30.0  # a permanent error's delay means nothing
    assert retry_decision(refused) == RetryDecision(True, None, "AuthenticationError")


def test_backoff_follows_the_decision() -> None:
    backoff = Backoff(2.0, 300.0, rand=lambda: 1.0)
    assert backoff.after(RetryDecision(False)) == 2.0  # exponential, as next()
    assert backoff.after(RetryDecision(False)) == 4.0
    assert backoff.after(RetryDecision(True)) == 300.0  # permanent: the ceiling at once
    backoff.reset()
    assert backoff.after(RetryDecision(False, 7.0)) == 7.0  # the wait asked for, if longer
    assert backoff.after(RetryDecision(False, 3600.0)) == 300.0  # never over the ceiling
    backoff.reset()
    assert backoff.after(RetryDecision(False)) == 2.0


def test_retry_after_is_a_floor_so_zero_or_a_past_date_still_backs_off() -> None:
    """A server answering ``Retry-After: 0`` (or a date already past) on every try must
    not be retried every ``initial`` forever: the wait keeps growing as without it."""
    backoff = Backoff(2.0, 300.0, rand=lambda: 1.0)
    waits = [backoff.after(RetryDecision(False, 0.0)) for _ in range(10)]
    assert waits == [2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 300.0, 300.0]
    backoff.reset()
    assert [backoff.after(RetryDecision(False, 9.0)) for _ in range(3)] == [9.0, 9.0, 9.0]
    assert backoff.after(RetryDecision(False, 9.0)) == 16.0  # the backoff outgrows it
