"""Serving the emulator: a real HTTP(S) server on loopback, in a thread or in the foreground.

The ASGI app is wrapped by :class:`Wire`, which applies injected faults and records every
request before the emulator proper sees it. A dropped connection is a real one: the
socket is closed without a byte of answer, so clients meet the error they would meet when
a firewall's web server dies mid-request.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import json
import secrets
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn
from starlette.requests import Request

from controller.testing.opnsense.api import ApiKey, Emulator, dispatch
from controller.testing.opnsense.faults import Faults, RequestLog, RequestRecord
from controller.testing.opnsense.messages import msg
from controller.testing.opnsense.rollback import RollbackTimer
from controller.testing.opnsense.state import EmulatorState
from controller.testing.opnsense.versions import DEFAULT_VERSION

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def generate_credential() -> str:
    """80 characters of base64, the shape of an OPNsense API key or secret."""
    return base64.b64encode(secrets.token_bytes(60)).decode()


class Wire:
    """ASGI app: faults, request log, then the emulator."""

    def __init__(self, emulator: Emulator, faults: Faults, requests: RequestLog) -> None:
        self.emulator = emulator
        self.faults = faults
        self.requests = requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        started = time.monotonic()
        status = 0
        logged = False

        def log() -> None:
            nonlocal logged
            if not logged:
                logged = True
                self.requests.add(RequestRecord(method, path, status, time.monotonic() - started))

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                log()  # before the last byte leaves, so a client never outruns the log
            await send(message)

        try:
            for fault in self.faults.for_request(method, path):
                if fault.kind == "delay":
                    await asyncio.sleep(fault.seconds)
                elif fault.kind == "drop":
                    log()
                    await _drop(send)
                    return
                else:
                    body = json.dumps({"errorMessage": msg("http.unexpected")}).encode()
                    await recording_send(
                        {
                            "type": "http.response.start",
                            "status": fault.status,
                            "headers": [
                                (b"content-type", b"application/json; charset=UTF-8"),
                                *((k.encode(), v.encode()) for k, v in fault.headers),
                            ],
                        }
                    )
                    await recording_send({"type": "http.response.body", "body": body})
                    return
            response = await dispatch(self.emulator, Request(scope, receive))
            await response(scope, receive, recording_send)
        finally:
            log()


async def _drop(send: Send) -> None:
    """Close the client's socket without answering.

    uvicorn hands the app a bound ``RequestResponseCycle.send``; its ``transport`` is the
    connection. Marking the cycle disconnected stops uvicorn from logging "returned without
    starting response" and from writing a 500 into the closed socket.
    """
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise RuntimeError("cannot drop the connection: not served by uvicorn")
    transport.close()
    cycle.disconnected = True  # type: ignore[union-attr]
    await asyncio.sleep(0)


def self_signed_certificate(directory: Path, host: str) -> tuple[Path, Path]:
    """A fresh key and certificate for localhost/127.0.0.1/``host``; never stored beyond
    ``directory``, which the caller removes."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "OPNsense emulator")])
    alt: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    try:
        alt.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        alt.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.touch(mode=0o600)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class EmulatorServer:
    """An OPNsense API on loopback, served from a background thread.

    ``with EmulatorServer(version="25.7") as fw: httpx.get(fw.url + "/api/...", auth=fw.auth)``
    """

    def __init__(
        self,
        version: str = DEFAULT_VERSION,
        api_key: str | None = None,
        api_secret: str | None = None,
        tls: bool = False,
        rollback_seconds: float = 60.0,
        state: EmulatorState | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        privileges: tuple[str, ...] | None = None,
        state_file: Path | None = None,
    ) -> None:
        # A given state brings its own release; ``version`` only picks one for a new state.
        self.state = state if state is not None else EmulatorState(version)
        self.api_key = api_key or generate_credential()
        self.api_secret = api_secret or generate_credential()
        self.tls = tls
        self.host = host
        self.port = port
        self.faults = Faults()
        self.requests = RequestLog()
        self.rollback = RollbackTimer(self.state, rollback_seconds)
        keys = {self.api_key: ApiKey(self.api_key, self.api_secret, privileges)}
        self.emulator = Emulator(self.state, keys, self.rollback)
        self.certificate: Path | None = None
        self._tmp: Path | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        if state_file is not None:
            self.state.on_save = lambda s: s.dump(state_file)

    @property
    def version(self) -> str:
        return self.state.version.name

    @property
    def auth(self) -> tuple[str, str]:
        return (self.api_key, self.api_secret)

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def add_key(self, key: str, secret: str, privileges: tuple[str, ...] | None = None) -> None:
        """Another key; ``privileges`` lists the URL path prefixes it may reach."""
        self.emulator.keys[key] = ApiKey(key, secret, privileges)

    def _config(self) -> uvicorn.Config:
        options: dict[str, Any] = {}
        if self.tls:
            self._tmp = Path(tempfile.mkdtemp(prefix="fazai-opnsense-"))
            cert, key = self_signed_certificate(self._tmp, self.host)
            self.certificate = cert
            options = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
        app = Wire(self.emulator, self.faults, self.requests)
        return uvicorn.Config(
            app,
            host=self.host,
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            **options,
        )

    def start(self) -> EmulatorServer:
        server = uvicorn.Server(self._config())
        # uvicorn leaves signal handling to the main thread when run from another one.
        self._server = server
        self._thread = threading.Thread(target=server.run, name="opnsense-emulator", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the OPNsense emulator did not start")
            time.sleep(0.01)
        sockets = server.servers[0].sockets
        self.port = sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        self.rollback.stop()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def bind_error(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (already in use...), or None when it can.
    Asked before starting, because uvicorn reports a failed bind only in its log."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def serve(
    listen: str,
    version: str,
    api_key: str | None,
    api_secret: str | None,
    state_file: Path | None,
    tls: bool,
) -> None:
    """Run the emulator in the foreground until interrupted (``fazai emulate opnsense``).

    ``listen`` is HOST:PORT. With ``state_file`` the state is loaded from it when it exists
    and written back after every save.
    """
    host, _, port_text = listen.rpartition(":")
    if not host or not port_text.isdigit():
        raise ValueError(f"--listen wants HOST:PORT, got {listen!r}")
    host = host.strip("[]")
    busy = bind_error(host, int(port_text))
    if busy is not None:
        raise ValueError(
            f"cannot listen on {listen}: {busy} (another emulator, `fazai demo` or "
            "`fazai serve --sandbox`?): stop it or pass another --listen"
        )
    state = None
    if state_file is not None and state_file.exists():
        state = EmulatorState.load(state_file, version)
    server = EmulatorServer(
        version,
        api_key,
        api_secret,
        tls,
        state=state,
        host=host,
        port=int(port_text),
        state_file=state_file,
    )
    if state_file is not None:
        server.state.dump(state_file)
    config = server._config()
    print(f"OPNsense {server.version} emulator on {server.url}", file=sys.stderr)
    if api_key is None or api_secret is None:
        print(f"api key:    {server.api_key}\napi secret: {server.api_secret}", file=sys.stderr)
    try:
        uvicorn.Server(config).run()
    finally:
        server.rollback.stop()
        if server._tmp is not None:
            shutil.rmtree(server._tmp, ignore_errors=True)
