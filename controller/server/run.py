"""Serving the app with uvicorn, inside the controller's own event loop.

The caller owns the process: uvicorn does not install signal handlers here (the loop's
SIGTERM handling must finish or roll back the transaction in flight first), and it does
not configure logging. Stopping is the caller's ``stop`` event: the event streams end,
then uvicorn closes the listener and waits for the requests in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
import ssl
from collections.abc import Callable, Generator

import uvicorn
from starlette.applications import Starlette

from controller.server import logfilter
from controller.server.errors import ServerBindError, ServerConfigError
from controller.server.protocol import Limits, guarded
from controller.server.settings import ServerSettings, check_exposure

log = logging.getLogger("fazai.server")

GRACEFUL_SECONDS = 10.0  # then requests still running are cancelled (approvals are shielded)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # signals belong to the controller, see the module's docstring


async def serve_http(
    app: Starlette,
    settings: ServerSettings,
    stop: asyncio.Event,
    *,
    on_listen: Callable[[str, int], None] | None = None,
) -> None:
    """Serve ``app`` on ``settings.listen`` until ``stop`` is set.

    Refuses (ServerConfigError) an address other than loopback without a token; raises
    ServerBindError when the address cannot be bound. ``on_listen(host, port)`` is called
    once the socket listens (with the port chosen when ``settings.port`` is 0)."""
    check_exposure(settings)
    logfilter.install()
    config = uvicorn_config(app, settings, _tls_context(settings))
    config.load()
    sock = _bind(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    scheme = "https" if settings.tls else "http"
    shown = f"[{host}]" if ":" in host else host
    log.info("HTTP API listening on %s://%s:%s", scheme, shown, port)
    if on_listen is not None:
        on_listen(host, port)
    server = _Server(config)
    watcher = asyncio.create_task(_stop_when_set(stop, server, app))
    try:
        await server.serve(sockets=[sock])
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        sock.close()


def _tls_context(settings: ServerSettings) -> ssl.SSLContext | None:
    if settings.tls is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)  # TLS 1.2 or later
    try:
        context.load_cert_chain(settings.tls.cert_file, settings.tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ServerConfigError(
            ("tls",), f"cannot load the certificate or key: {exc.strerror or exc}"
        ) from exc
    return context


def uvicorn_config(
    app: Starlette, settings: ServerSettings, tls: ssl.SSLContext | None = None
) -> uvicorn.Config:
    """uvicorn's configuration; with ``tls``, the handshake is the protocol's own (see
    controller.server.protocol), so uvicorn itself is given no certificate."""
    cap = connection_cap(settings.max_connections)
    limits = Limits(settings.head_timeout, cap, send_timeout=settings.body_timeout)
    return uvicorn.Config(
        app,
        http=guarded(limits, tls),
        # No WebSocket upgrade: the API has none, and an upgrade would take the connection
        # out of uvicorn's set, out of reach of the connection cap (controller.server.protocol).
        ws="none",
        # asyncio accepts up to ``backlog`` connections per wake-up before any of them
        # reaches the protocol's cap: this bounds how far a burst overshoots it (into
        # EMFILE, with the files the cap keeps free for the loop's own work).
        backlog=min(2048, max(16, cap // 4)),
        log_config=None,
        access_log=True,
        server_header=False,
        proxy_headers=False,
        lifespan="on",
        timeout_graceful_shutdown=int(GRACEFUL_SECONDS),
    )


def connection_cap(wanted: int) -> int:
    """``wanted``, or fewer when the process may not open twice as many files: the loop's
    SSH sessions, git and the state store need descriptors too."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(8, min(wanted, soft // 2))


async def _stop_when_set(stop: asyncio.Event, server: uvicorn.Server, app: Starlette) -> None:
    await stop.wait()
    app.state.closing.set()
    server.should_exit = True


def _bind(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE | socket.AI_NUMERICSERV
        )
    except socket.gaierror as exc:
        raise ServerBindError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ServerBindError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock
