"""GET /api/v1/events: the event bus as server-sent events.

A client that reconnects with ``Last-Event-ID`` (or ``?since=ID``) first gets the events
the bus still keeps after that id. A client too slow to read loses its oldest events on
the bus, never slowing the publisher; the stream then says so with a ``stream.lost``
message (no id; data ``{"type": "stream.lost", "data": {"missed": N}}``) before the
next event, as it does for a resumed stream whose events the bus no longer keeps. Ids
have gaps of their own (a scoped token's stream leaves events out), so a client must
not infer loss from them. Quiet
streams carry a keep-alive comment every ``keepalive`` seconds, so proxies and clients can
tell a quiet stream from a dead one. Streams end when the server stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from controller.events import Event, EventBus
from controller.server import scoping, sse
from controller.server.auth import Caller, require
from controller.server.replies import error, whole_number
from controller.server.settings import Role

RETRY_MS = 2000  # the reconnection delay clients are asked to wait


@require(Role.VIEWER)
async def events(request: Request) -> Response:
    """A scoped token gets only its sources' (and nodes') events."""
    after = _after(request)
    if isinstance(after, Response):
        return after
    state = request.app.state
    if state.streams >= state.settings.max_streams:
        return error(503, "too many event streams open; try again later", {"Retry-After": "5"})
    body = _stream(request, state.handle.events, after)
    return StreamingResponse(
        body,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _after(request: Request) -> int | Response | None:
    text = request.headers.get("last-event-id") or request.query_params.get("since")
    if text is None or text == "":
        return None
    after = whole_number(text)
    if after is None:
        return error(400, "Last-Event-ID must be an event id (a whole number)")
    return after


async def _stream(request: Request, bus: EventBus, after: int | None) -> AsyncIterator[bytes]:
    state = request.app.state
    keepalive: float = state.settings.keepalive
    closing: asyncio.Event = state.closing
    caller: Caller = request.state.caller
    visible = scoping.EventScope(caller.scope, state.handle)
    told = 0  # of queue.lost

    state.streams += 1
    try:
        async with bus.subscribe(after=after) as queue:
            yield sse.retry(RETRY_MS)
            while not closing.is_set():
                while not queue.empty():
                    if queue.lost > told:
                        yield sse.lost(queue.lost - told)
                        told = queue.lost
                    queued = queue.get_nowait()
                    if await visible.shown(queued):
                        yield sse.encode(queued)
                event = await _next(queue, closing, keepalive)
                if queue.lost > told:
                    yield sse.lost(queue.lost - told)
                    told = queue.lost
                if event is not None:
                    if await visible.shown(event):
                        yield sse.encode(event)
                elif not closing.is_set():
                    yield sse.comment("keep-alive")
    finally:
        state.streams -= 1


async def _next(
    queue: asyncio.Queue[Event], closing: asyncio.Event, timeout: float
) -> Event | None:
    """The next event; None after ``timeout`` seconds or once ``closing`` is set."""
    getter = asyncio.ensure_future(queue.get())
    closed = asyncio.ensure_future(closing.wait())
    try:
        await asyncio.wait((getter, closed), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # the stream is going away: drop both waiters
        getter.cancel()
        closed.cancel()
        raise
    closed.cancel()
    if getter.done():
        return getter.result()
    getter.cancel()
    return None
