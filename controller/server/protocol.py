"""uvicorn's h11 protocol with a deadline on each request head and a cap on connections.

uvicorn has no timeout covering the receipt of a request: ``timeout_keep_alive`` is reset
by every byte received (``data_received`` starts by cancelling it), and
``limit_concurrency`` is only checked once a whole request head has arrived. A client
sending one header byte a second therefore holds a connection (a file descriptor) for
ever, and enough of them stop the health checks and the loop's own sockets. Here:

* every connection must deliver a complete request head (request line and headers)
  within ``head_timeout`` seconds of opening, or of its previous response, else it is
  closed; a request in progress (a long apply, an event stream) is never cut;
* at most ``max_connections`` are open: a new connection beyond that closes the one that
  has waited longest for its request head, or else the one that has been sending its
  request body longest, or else the one whose answers have gone unread longest (below),
  so a crowd of slow clients cannot lock out a prompt one (a health probe); when none
  is in any of these states, the newcomer is closed instead;
* a connection whose writing stays paused (its client reads nothing, so the send
  buffer stays full) for ``send_timeout`` seconds is aborted: uvicorn's send awaits the
  buffer's drain for ever, and such a connection is neither waiting for a head nor
  evictable. An event stream whose reader stopped reading goes the same way.

With TLS, uvicorn is given no certificate: asyncio would call ``connection_made`` only
once the handshake is done, so a connection still handshaking (or sending no ClientHello
at all) would be neither counted nor deadlined, for asyncio's own 60 s. This protocol
takes the plain TCP connection instead, counts it and arms its head deadline at once,
and runs the handshake itself (``loop.start_tls``, bounded by ``head_timeout`` too).

Body reads have their own deadline, in :func:`controller.server.replies.read_body`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


@dataclass(frozen=True)
class Limits:
    head_timeout: float
    max_connections: int
    send_timeout: float = 30.0


class _Waiting:
    """The connections still waiting for a request head, and those still sending a
    request body, oldest first."""

    def __init__(self) -> None:
        self.order: OrderedDict[GuardedH11Protocol, None] = OrderedDict()
        self.reading: OrderedDict[GuardedH11Protocol, None] = OrderedDict()
        self.closed = 0  # connections closed for a late head or to make room (tests, logs)
        self.paused: OrderedDict[GuardedH11Protocol, None] = OrderedDict()  # writes stuck
        self.stalled = 0  # connections aborted because their client stopped reading


class _Handshaking(asyncio.Protocol):
    """The TLS transport's protocol until ``start_tls`` has returned: what the client
    sends right after its handshake arrives before that, and is kept for the real one."""

    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.eof = False
        self.lost: tuple[Exception | None] | None = None

    def data_received(self, data: bytes) -> None:
        self.data.append(data)

    def eof_received(self) -> bool | None:
        self.eof = True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = (exc,)


class GuardedH11Protocol(H11Protocol):
    limits: Limits = Limits(head_timeout=10.0, max_connections=500)
    waiting: _Waiting = _Waiting()
    tls: ssl.SSLContext | None = None  # the server's; None for plain HTTP

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._armed_for: object = None  # the request cycle in place when the deadline was set
        self._stalled: asyncio.TimerHandle | None = None  # armed while writing is paused
        self._handshake: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if self.tls is not None:
            # The TCP connection: counted, deadlined and evictable from now on, like any.
            self.transport = transport
            transport.pause_reading()  # the ClientHello is for start_tls, not for h11
            self.connections.add(self)
            if self._admitted():
                self._arm()
                self._handshake = self.loop.create_task(self._start_tls(transport, self.tls))
            return
        super().connection_made(transport)
        if self._admitted():
            self._arm()

    def _admitted(self) -> bool:
        if len(self.connections) <= self.limits.max_connections:
            return True
        victim = next(iter(self.waiting.order), None) or next(iter(self.waiting.reading), None)
        if victim is not None:
            victim._close()
            return True
        stuck = next(iter(self.waiting.paused), None)  # its client reads nothing: no loss
        if stuck is not None:
            stuck._abort_stalled()
            return True
        self._close()
        return False

    async def _start_tls(self, raw: asyncio.Transport, context: ssl.SSLContext) -> None:
        early = _Handshaking()
        try:
            tls = await self.loop.start_tls(
                raw,
                early,
                context,
                server_side=True,
                ssl_handshake_timeout=self.limits.head_timeout,
            )
        except Exception:  # closed, timed out, not TLS: whatever it was, this connection is
            tls = None  # gone, and must leave uvicorn's set (asyncio logged what deserves it)
        if tls is None or early.lost is not None or self._deadline is None:
            self._disarm()  # failed, or closed meanwhile (late, or evicted)
            self.connections.discard(self)
            raw.abort()
            if tls is not None:
                tls.abort()
            return
        tls.set_protocol(self)
        super().connection_made(tls)  # uvicorn's own setup, on the TLS transport
        for data in early.data:  # a request sent along with the handshake's last flight
            self.data_received(data)
        if early.eof:
            self.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._writable()
        self.waiting.reading.pop(self, None)
        if self._handshake is not None and not self._handshake.done():
            self._handshake.cancel()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stalled is None:
            self._stalled = self.loop.call_later(self.limits.send_timeout, self._abort_stalled)
            self.waiting.paused[self] = None

    def resume_writing(self) -> None:
        self._writable()
        super().resume_writing()

    def _writable(self) -> None:
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None
        self.waiting.paused.pop(self, None)

    def _abort_stalled(self) -> None:
        self._writable()
        self.waiting.stalled += 1
        # abort, not close: close would wait for the very buffer that does not drain.
        self.transport.abort()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._deadline is not None and self.cycle is not self._armed_for:
            self._disarm()  # a request head arrived: uvicorn started a new cycle for it
        self._track_body()

    def _track_body(self) -> None:
        # h11's SEND_BODY: the client has sent a head and still owes (part of) its body.
        cycle = self.cycle
        if self.conn.their_state is h11.SEND_BODY and cycle and not cycle.response_complete:
            self.waiting.reading.setdefault(self, None)
        else:
            self.waiting.reading.pop(self, None)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._track_body()
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self._arm()  # the next request's head has the same deadline

    def _arm(self) -> None:
        self._disarm()
        self._armed_for = self.cycle
        self._deadline = self.loop.call_later(self.limits.head_timeout, self._close)
        self.waiting.order[self] = None

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.waiting.order.pop(self, None)

    def _close(self) -> None:
        self._disarm()
        self.waiting.reading.pop(self, None)  # chosen once: the next newcomer picks another
        if not self.transport.is_closing():
            self.waiting.closed += 1
            self.transport.close()


def guarded(limits: Limits, tls: ssl.SSLContext | None = None) -> type[GuardedH11Protocol]:
    """A protocol class for one server: its own limits, its own waiting list, and its TLS
    context (then uvicorn must be given none)."""
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {"limits": limits, "waiting": _Waiting(), "tls": tls},
    )
