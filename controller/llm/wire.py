"""One connection to the worker's Unix socket, carrying many requests at once.

The worker's protocol (:mod:`fazai_native.protocol`) is newline-delimited JSON with a
request ``id`` per request; this module gives each request its own bounded queue of
reply frames, fed by one reader task. It knows nothing of completions: the backend
(:mod:`controller.llm.worker`) turns frames into chunks and answers.

Failures of the connection itself (EOF, a reset, a frame that cannot be read) end every
request still waiting, at once, with :class:`~controller.llm.errors.BackendUnavailable`
carrying the reason the connection's owner gives (the supervisor knows whether the
worker died, and of which signal). A request whose reader falls behind (its queue full)
is aborted on the worker and failed here, so a slow consumer can neither stall the other
requests on the connection nor make this process buffer without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fazai_native import protocol

from controller.llm.errors import BackendUnavailable

log = logging.getLogger("fazai.llm")

MAX_QUEUED_FRAMES = 4096  # per request: tokens not yet read by its consumer

# Called once the connection is lost; returns why (e.g. "the worker died (signal 9)").
LostReason = Callable[[str], Awaitable[str]]


class Pending:
    """The reply frames of one request, in order; ends with its final frame (``done``,
    ``result`` or ``error``) or with the connection's failure."""

    def __init__(self, rid: str, op: str) -> None:
        self.id = rid
        self.op = op
        self.started = time.monotonic()
        self.finished = False
        self._frames: asyncio.Queue[dict[str, Any] | BackendUnavailable] = asyncio.Queue(
            MAX_QUEUED_FRAMES
        )

    async def next(self, timeout: float | None) -> dict[str, Any]:
        """The next frame; BackendUnavailable when the connection failed or nothing came
        within ``timeout`` seconds (TimeoutError)."""
        if timeout is None:
            item = await self._frames.get()
        else:
            async with asyncio.timeout(timeout):
                item = await self._frames.get()
        if isinstance(item, BackendUnavailable):
            raise item
        return item

    def _put(self, item: dict[str, Any] | BackendUnavailable) -> bool:
        try:
            self._frames.put_nowait(item)
        except asyncio.QueueFull:
            return False
        return True

    def _end(self, failure: BackendUnavailable) -> None:
        """Drops what is queued (moot now) and queues ``failure``; a consumer waiting
        on the queue wakes with it."""
        while not self._frames.empty():
            self._frames.get_nowait()
        self._frames.put_nowait(failure)


class Connection:
    """A connection to one worker. ``name`` labels the errors (the backend's, or
    "worker"). Use :meth:`open`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        name: str = "worker",
        lost: LostReason | None = None,
        write_timeout: float = 10.0,
    ) -> None:
        self.name = name
        self._reader = reader
        self._writer = writer
        self._lost = lost
        self._write_timeout = write_timeout
        self._pending: dict[str, Pending] = {}
        self._ids = itertools.count(1)
        self._prefix = f"c{os.getpid()}-"
        self._write_lock = asyncio.Lock()
        self._failure: BackendUnavailable | None = None
        self._background: set[asyncio.Task[None]] = set()  # aborts in flight, kept alive
        self.closed = asyncio.Event()
        self.last_frame = time.monotonic()  # when the worker last said anything
        self._task = asyncio.create_task(self._read(), name=f"{name}-reader")

    @classmethod
    async def open(
        cls,
        path: str,
        *,
        timeout: float = 5.0,
        name: str = "worker",
        lost: LostReason | None = None,
    ) -> Connection:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(path, limit=protocol.MAX_FRAME)
        except TimeoutError as exc:
            raise BackendUnavailable(name, f"no answer on {path} within {timeout:g} s") from exc
        except OSError as exc:
            raise BackendUnavailable(
                name, f"cannot connect to {path}: {exc.strerror or exc}"
            ) from exc
        return cls(reader, writer, name=name, lost=lost)

    @property
    def failed(self) -> bool:
        return self._failure is not None

    def in_flight(self, op: str | None = None) -> list[Pending]:
        return [p for p in self._pending.values() if op is None or p.op == op]

    async def request(self, frame: Mapping[str, Any]) -> Pending:
        """Sends ``frame`` (without ``id``: given here) and returns its Pending."""
        if self._failure is not None:
            raise self._failure
        rid = f"{self._prefix}{next(self._ids)}"
        pending = Pending(rid, str(frame.get("op", "")))
        self._pending[rid] = pending
        try:
            await self._send({**frame, "id": rid})
        except BaseException:
            self._pending.pop(rid, None)
            if not self.failed:
                # Cancelled while the line was being written: the worker may have it,
                # and would then generate for nobody. An abort of an id it never got is
                # answered with an error and costs nothing.
                task = asyncio.get_running_loop().create_task(self.abort(pending))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
            raise
        return pending

    def forget(self, pending: Pending) -> None:
        """The caller reads no more of ``pending`` (its final frame came, or it gave up)."""
        self._pending.pop(pending.id, None)

    async def abort(self, pending: Pending) -> None:
        """Asks the worker to stop ``pending`` and forgets it; never raises (the
        connection may be gone already, which aborts it too)."""
        self.forget(pending)
        if pending.finished or self._failure is not None:
            return
        with contextlib.suppress(BackendUnavailable, protocol.ProtocolError):
            rid = f"{self._prefix}{next(self._ids)}"
            await self._send({"op": "abort", "id": rid, "target": pending.id})

    async def _send(self, frame: Mapping[str, Any]) -> None:
        try:
            line = protocol.encode(frame)
        except protocol.ProtocolError as exc:
            from controller.llm.errors import BackendRefused

            raise BackendRefused(self.name, str(exc)) from exc
        try:
            async with self._write_lock, asyncio.timeout(self._write_timeout):
                self._writer.write(line)
                await self._writer.drain()
        except (OSError, TimeoutError) as exc:
            failure = BackendUnavailable(self.name, f"cannot write to the worker: {exc!r}")
            self._fail(failure)
            raise failure from exc

    async def _read(self) -> None:
        reason = "the worker closed the connection"
        try:
            while True:
                line = await self._reader.readline()
                if not line:
                    break
                self.last_frame = time.monotonic()
                self._dispatch(protocol.decode(line))
        except asyncio.CancelledError:
            self.closed.set()
            raise  # close(): it fails what is left itself
        except (OSError, ValueError, protocol.ProtocolError) as exc:
            # ValueError: a line beyond the reader's limit (MAX_FRAME).
            reason = f"the connection failed: {type(exc).__name__}: {exc}"
        finally:
            self.closed.set()
        if self._lost is not None:
            try:
                reason = await self._lost(reason)
            except Exception:  # the reason is a nicety; the failure must still be given
                log.exception("%s: explaining a lost connection failed", self.name)
        self._fail(BackendUnavailable(self.name, reason))

    def _dispatch(self, frame: dict[str, Any]) -> None:
        rid = frame.get("id")
        pending = self._pending.get(rid) if isinstance(rid, str) else None
        if pending is None:
            return  # an abort's answer, or a request the caller gave up on
        final = frame.get("event") in ("done", "result", "error")
        if final:
            pending.finished = True
            self._pending.pop(pending.id, None)
        if not pending._put(frame):
            # Its consumer fell behind by MAX_QUEUED_FRAMES: give it up, never block.
            self._pending.pop(pending.id, None)
            pending._end(BackendUnavailable(self.name, "the reader fell behind the worker"))
            if not final:
                task = asyncio.get_running_loop().create_task(self.abort(pending))
                self._background.add(task)
                task.add_done_callback(self._background.discard)

    def fail(self, reason: str) -> None:
        """Ends every waiting request with BackendUnavailable(reason) and closes."""
        self._fail(BackendUnavailable(self.name, reason))

    def _fail(self, failure: BackendUnavailable) -> None:
        if self._failure is None:
            self._failure = failure
        for pending in list(self._pending.values()):
            pending._end(self._failure)
        self._pending.clear()
        self._writer.close()

    async def close(self) -> None:
        if self._failure is None:
            self._failure = BackendUnavailable(self.name, "the connection was closed")
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._fail(self._failure)
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
