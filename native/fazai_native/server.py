"""The worker's asyncio server: connections, admission, streaming and shutdown.

Each connection reads frames (at most :data:`~fazai_native.protocol.MAX_FRAME` bytes a
line) and runs any number of requests at once, told apart by id. ``generate`` and
``embed`` run in threads, admitted only while fewer than ``queue`` of them are in flight
or waiting in the whole worker; beyond that the answer is ``busy`` at once, so memory
stays bounded. Tokens go out as the engine makes them (``call_soon_threadsafe`` into the
loop); a connection whose unread output passes ``write_limit`` bytes has the request that
made it aborted, so a slow reader never holds the engine or the worker's memory."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
import traceback
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fazai_native import errors, frames, protocol
from fazai_native.protocol import ProtocolError
from fazai_native.runtime import Runtime

WRITE_LIMIT = 1 << 20  # unread bytes a connection may hold before its stream aborts
SHUTDOWN_GRACE_S = 10.0  # for in-flight requests to see their abort and answer
CLOSE_GRACE_S = 2.0  # for final frames to reach the client
MAX_CONNECTIONS = 256  # beyond: answered busy and closed (each costs buffers and a task)
MAX_PER_CONNECTION = 64  # requests in flight on one connection (the queue bounds generate)
STALL_TIMEOUT_S = 60.0  # a frame begun must end, output over write_limit must be read, by then
IDLE_TIMEOUT_S = 0.0  # 0: an idle connection stays (a supervisor keeps one for the worker's life)
IDLE_TICK_S = 5.0  # how often a connection with requests in flight looks at its idle clock
READ_CHUNK = 64 * 1024
RECENT_IDS = 1024  # finished request ids a connection remembers, for a late abort's answer
# The StreamReader's own buffer stops reading the socket past twice its limit; with the
# unfinished frame (under MAX_FRAME) and one chunk, that bounds a connection's input.
READ_LIMIT = READ_CHUNK
MAX_BUFFERED = protocol.MAX_FRAME + READ_CHUNK + 2 * READ_LIMIT


@dataclass
class _Request:
    rid: str
    op: str
    abort: threading.Event = field(default_factory=threading.Event)
    reason: str = ""  # why it was aborted: abort, deadline, slow_reader, closed, shutdown
    admitted_at: float = field(default_factory=time.monotonic)
    task: asyncio.Task[None] | None = None
    answered: bool = False  # its final frame was sent (shutdown may answer it first)
    timer: asyncio.TimerHandle | None = None
    deadline_at: float | None = None  # time.monotonic()

    def abort_reason(self) -> str:
        """Why a generation ended ``abort``: the engine may see the deadline pass before
        the loop's timer does."""
        if self.reason:
            return self.reason
        if self.deadline_at is not None and time.monotonic() >= self.deadline_at:
            return "deadline"
        return "abort"

    def stop(self, reason: str) -> None:
        if not self.abort.is_set():
            self.reason = reason
            self.abort.set()


class Worker:
    """Serves a :class:`Runtime` on a listening Unix socket."""

    def __init__(
        self,
        runtime: Runtime,
        queue: int = 8,
        write_limit: int = WRITE_LIMIT,
        shutdown_grace: float = SHUTDOWN_GRACE_S,
        stall_timeout: float = STALL_TIMEOUT_S,
        idle_timeout: float = IDLE_TIMEOUT_S,
    ) -> None:
        if queue < 1:
            raise ValueError("the queue holds at least one request")
        self.runtime = runtime
        self.queue = queue
        self.write_limit = write_limit
        self.shutdown_grace = shutdown_grace
        self.stall_timeout = stall_timeout
        self.idle_timeout = idle_timeout  # 0: never
        self.pending = 0  # admitted generate/embed requests not yet finished (loop only)
        self.busy_refusals = 0
        self.connections: set[_Connection] = set()
        self.stopping = False
        # One thread per admitted request, so none waits for a thread; load, unload, drop
        # and stats get their own few, so they never take a generation's place.
        self._pool = ThreadPoolExecutor(max_workers=queue, thread_name_prefix="request")
        self._admin = ThreadPoolExecutor(max_workers=2, thread_name_prefix="admin")
        self._recent_total_s: deque[float] = deque(maxlen=32)

    # -- admission ------------------------------------------------------------------

    def admit(self) -> bool:
        if self.pending >= self.queue:
            self.busy_refusals += 1
            return False
        self.pending += 1
        return True

    def finished(self, total_s: float | None) -> None:
        self.pending -= 1
        if total_s is not None:
            self._recent_total_s.append(total_s)

    def retry_after(self) -> float:
        """A guess at when a place frees: the mean time of recent requests."""
        if not self._recent_total_s:
            return 1.0
        mean = sum(self._recent_total_s) / len(self._recent_total_s)
        return round(min(max(mean, 0.1), 30.0), 3)

    async def in_thread(self, fn: Callable[[], Any], counted: bool) -> Any:
        pool = self._pool if counted else self._admin
        return await asyncio.get_running_loop().run_in_executor(pool, fn)

    def stats(self) -> dict[str, Any]:
        """The server's half of the stats (the loop's own counters)."""
        in_flight = sum(len(c.requests) for c in self.connections)
        return {
            "queue": {
                "size": self.queue,
                "pending": self.pending,  # running or waiting for a slot or a load
                "running": self.runtime.running,
                "depth": max(0, self.pending - self.runtime.running),  # waiting
                "busy_refusals": self.busy_refusals,
            },
            "connections": len(self.connections),
            "in_flight": in_flight,
        }

    # -- serving --------------------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self.connections) >= MAX_CONNECTIONS:
            refusal = protocol.error(
                "", "busy", f"{MAX_CONNECTIONS} connections are open", self.retry_after()
            )
            writer.write(protocol.encode(refusal))
            with contextlib.suppress(ConnectionError, OSError, TimeoutError):
                await asyncio.wait_for(writer.drain(), CLOSE_GRACE_S)
            writer.close()
            return
        connection = _Connection(self, reader, writer)
        self.connections.add(connection)
        try:
            await connection.run()
        finally:
            self.connections.discard(connection)

    async def shutdown(self) -> int:
        """Abort everything in flight, answer each with an error, close the connections.
        Returns how many requests did not stop within the grace: their threads still run
        (an embed, a load or a native call that never looks at its abort), so the caller
        must not close the models under them, nor wait for those threads to end."""
        self.stopping = True
        connections = list(self.connections)
        tasks = []
        for connection in connections:
            for request in connection.requests.values():
                request.stop("shutdown")
                if request.task is not None:
                    tasks.append(request.task)
        late_count = 0
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=self.shutdown_grace)
            late_count = len(late)
            if late:
                print(f"fazai_native: {len(late)} request(s) did not stop in time", file=sys.stderr)
            for connection in connections:
                # Every request gets its final frame, even one whose thread goes on.
                for request in list(connection.requests.values()):
                    if request.task in late:
                        connection.answer_late(request)
        for connection in connections:
            await connection.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._admin.shutdown(wait=False, cancel_futures=True)
        return late_count


class _Connection:
    def __init__(
        self, worker: Worker, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.worker = worker
        self.reader = reader
        self.writer = writer
        self.requests: dict[str, _Request] = {}
        self.loop = asyncio.get_running_loop()
        self.closed = False
        self.last_active = time.monotonic()  # last bytes read or request finished
        self.finished: OrderedDict[str, None] = OrderedDict()  # the last RECENT_IDS ended

    # -- writing --------------------------------------------------------------------

    def backlog(self) -> int:
        return self.writer.transport.get_write_buffer_size()

    def send(self, frame: dict[str, Any]) -> None:
        if self.closed or self.writer.is_closing():
            return
        try:
            line = protocol.encode(frame)
        except ProtocolError:
            line = protocol.encode(
                protocol.error(
                    frame.get("id", ""), "internal", "the answer exceeds the frame limit"
                )
            )
        self.writer.write(line)

    def error_frame(self, rid: str, exc: errors.WorkerError | ProtocolError) -> dict[str, Any]:
        """The error frame for ``exc``, counted in the stats."""
        if isinstance(exc, ProtocolError):
            code, message, retry = "bad_request", str(exc), None
        else:
            code, message, retry = exc.code, str(exc), exc.retry_after
        self.worker.runtime.count_error(code)
        return protocol.error(rid, code, message, retry)

    def send_error(self, rid: str, exc: errors.WorkerError | ProtocolError) -> None:
        self.send(self.error_frame(rid, exc))

    def answer_late(self, request: _Request) -> None:
        """At shutdown: the final frame of a request whose thread did not stop in time."""
        if request.answered:
            return
        request.answered = True
        self.send_error(
            request.rid, errors.Internal("the worker is shutting down (the request did not stop)")
        )

    def token(self, request: _Request, piece: str, index: int) -> None:
        """In the loop: one token frame, unless the reader has fallen too far behind."""
        if request.abort.is_set():
            return
        if self.backlog() > self.worker.write_limit:
            request.stop("slow_reader")
            return
        self.send(frames.token(request.rid, piece, index))

    def emitter(self, request: _Request) -> Callable[[str, int], None]:
        """What the engine calls, in its thread, for each token."""

        def emit(piece: str, index: int) -> None:
            self.loop.call_soon_threadsafe(self.token, request, piece, index)

        return emit

    # -- reading --------------------------------------------------------------------

    async def run(self) -> None:
        """Reads frames until the client closes, breaks a limit, or goes quiet too long.
        Its own framing over ``read`` (not ``readuntil``) so that an unfinished line can
        be timed and what is buffered stays bounded (:data:`MAX_BUFFERED`)."""
        worker = self.worker
        buf = bytearray()
        scanned = 0  # buf[:scanned] holds no newline
        began: float | None = None  # when the unfinished frame in buf began to arrive
        try:
            while not worker.stopping:
                if self.backlog() > worker.write_limit:
                    # The client sends but does not read: stop reading until it does,
                    # for as long as a frame may take; then it is given up.
                    try:
                        await asyncio.wait_for(self.writer.drain(), worker.stall_timeout)
                    except TimeoutError:
                        self.note("its output was not read")
                        break
                newline = buf.find(b"\n", scanned)
                if newline >= 0:
                    if newline + 1 > protocol.MAX_FRAME:
                        self.refuse(f"a frame exceeds {protocol.MAX_FRAME} bytes")
                        break
                    line = bytes(buf[: newline + 1])
                    del buf[: newline + 1]
                    scanned, began = 0, (time.monotonic() if buf else None)
                    if line.strip():
                        self.dispatch(line)
                    continue
                scanned = len(buf)
                if len(buf) >= protocol.MAX_FRAME:  # no newline yet: the line is longer
                    self.refuse(f"a frame exceeds {protocol.MAX_FRAME} bytes")
                    break
                timeout = self.read_timeout(began)
                try:
                    chunk = await asyncio.wait_for(self.reader.read(READ_CHUNK), timeout)
                except TimeoutError:
                    now = time.monotonic()
                    if began is not None and now - began >= worker.stall_timeout:
                        self.refuse(
                            f"a frame was begun but not finished within {worker.stall_timeout:g} s"
                        )
                        break
                    if (
                        began is None
                        and worker.idle_timeout
                        and not self.requests
                        and now - self.last_active >= worker.idle_timeout
                    ):
                        break  # idle: nothing sent or in flight for idle_timeout
                    continue
                if not chunk:
                    break  # closed (a last line without its newline is not a frame)
                self.last_active = time.monotonic()
                if began is None:
                    began = self.last_active
                buf += chunk
        except (ConnectionError, OSError):
            pass
        finally:
            for request in self.requests.values():
                request.stop("closed")
            await self.close()

    def read_timeout(self, began: float | None) -> float | None:
        """How long the next read may wait before a timeout is checked."""
        worker = self.worker
        now = time.monotonic()
        if began is not None:
            return max(0.0, began + worker.stall_timeout - now)
        if not worker.idle_timeout:
            return None
        if self.requests:
            # Not idle while a request runs; its end resets the clock (last_active).
            return min(worker.idle_timeout, IDLE_TICK_S)
        return max(0.0, self.last_active + worker.idle_timeout - now)

    def refuse(self, why: str) -> None:
        """A connection-level error (id ""), just before the connection is closed."""
        self.send(protocol.error("", "bad_request", why))
        self.worker.runtime.count_error("bad_request")

    def note(self, why: str) -> None:
        print(f"fazai_native: a connection was closed: {why}", file=sys.stderr)

    async def close(self) -> None:
        if self.closed:
            return
        with contextlib.suppress(ConnectionError, OSError, TimeoutError):
            await asyncio.wait_for(self.writer.drain(), CLOSE_GRACE_S)
        self.closed = True
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), CLOSE_GRACE_S)

    def dispatch(self, line: bytes) -> None:
        rid = ""
        try:
            frame = protocol.decode(line)
            raw = frame.get("id")
            if isinstance(raw, str) and len(raw) <= protocol.MAX_ID:
                rid = raw
            rid = protocol.request_id(frame)
            op = frame.get("op")
            if op not in protocol.OPS:
                raise ProtocolError(f"must be one of {', '.join(protocol.OPS)}", "op")
            if rid in self.requests:
                raise ProtocolError("a request with this id is in flight on this connection", "id")
            self.start(rid, str(op), frame)
        except ProtocolError as exc:
            self.send_error(rid, exc)
        except errors.WorkerError as exc:
            self.send_error(rid, exc)

    def start(self, rid: str, op: str, frame: dict[str, Any]) -> None:
        worker = self.worker
        if op == "abort":
            frames.check_fields(frame, op)
            target = frames.text(frame, "target")
            found = self.requests.get(target)
            answer: dict[str, Any] = {"target": target, "aborted": found is not None}
            if found is not None:
                found.stop("abort")
            else:
                # Too late (its final frame is out) or never sent: the client may tell
                # "it finished on its own" from a typo in the id.
                answer["reason"] = "finished" if target in self.finished else "unknown"
            self.send(frames.result(rid, answer))
            return
        if worker.stopping:
            raise errors.Internal("the worker is shutting down")
        if len(self.requests) >= MAX_PER_CONNECTION:
            raise errors.Busy(
                f"{MAX_PER_CONNECTION} requests are in flight on this connection", retry_after=1.0
            )
        if op == "generate":
            generate, deadline = frames.generate_request(frame)
            self.admitted(
                rid,
                op,
                lambda request: (
                    lambda: worker.runtime.generate(generate, request.abort, self.emitter(request))
                ),
                deadline,
            )
        elif op == "embed":
            model, texts = frames.embed_request(frame)
            self.admitted(
                rid,
                op,
                lambda request: (
                    lambda: {
                        "model": model,
                        "vectors": worker.runtime.embed(model, texts, request.abort),
                    }
                ),
                None,
            )
        elif op == "load":
            name, spec = frames.load_request(frame)
            self.spawn(_Request(rid, op), lambda: worker.runtime.load(name, spec))
        elif op == "unload":
            frames.check_fields(frame, op)
            name = frames.text(frame, "model")
            self.spawn(_Request(rid, op), lambda: worker.runtime.unload(name))
        elif op == "drop":
            frames.check_fields(frame, op)
            session = frames.text(frame, "session")
            self.spawn(_Request(rid, op), lambda: worker.runtime.drop(session))
        else:  # stats
            frames.check_fields(frame, op)
            own = worker.stats()  # the loop's counters, read in the loop
            self.spawn(_Request(rid, op), lambda: {**worker.runtime.stats(), **own})

    def admitted(
        self,
        rid: str,
        op: str,
        job: Callable[[_Request], Callable[[], Any]],
        deadline: float | None,
    ) -> None:
        if not self.worker.admit():
            raise errors.Busy(
                f"the queue is full ({self.worker.queue} requests)",
                retry_after=self.worker.retry_after(),
            )
        request = _Request(rid, op)
        if deadline is not None:
            request.deadline_at = time.monotonic() + deadline
            request.timer = self.loop.call_later(deadline, request.stop, "deadline")
        self.spawn(request, job(request), counted=True)

    def spawn(self, request: _Request, fn: Callable[[], Any], counted: bool = False) -> None:
        self.requests[request.rid] = request
        request.task = asyncio.create_task(self.finish(request, fn, counted))

    async def finish(self, request: _Request, fn: Callable[[], Any], counted: bool) -> None:
        total: float | None = None
        final: dict[str, Any]
        try:
            value = await self.worker.in_thread(fn, counted)
            total = time.monotonic() - request.admitted_at
            if request.reason == "shutdown":
                raise errors.Internal("the worker is shutting down")
            if request.op == "generate":
                final = frames.done(request.rid, value, value.waited_s)
                if value.result.finish_reason == "abort":
                    final["abort_reason"] = request.abort_reason()
            else:
                final = frames.result(request.rid, value)
        except errors.WorkerError as exc:
            if request.reason == "shutdown" and not isinstance(exc, errors.Internal):
                exc = errors.Internal("the worker is shutting down")
            final = self.error_frame(request.rid, exc)
        except ProtocolError as exc:
            final = self.error_frame(request.rid, exc)
        except Exception as exc:  # a bug: say where (not the message: it may quote input)
            where = "; ".join(
                f"{f.filename}:{f.lineno}" for f in traceback.extract_tb(exc.__traceback__)
            )
            print(
                f"fazai_native: {request.op} failed: {type(exc).__name__} at {where}",
                file=sys.stderr,
            )
            final = self.error_frame(
                request.rid, errors.Internal(f"{request.op} failed: {type(exc).__name__}")
            )
        finally:
            if request.timer is not None:
                request.timer.cancel()
            self.requests.pop(request.rid, None)
            self.last_active = time.monotonic()
            self.finished[request.rid] = None
            self.finished.move_to_end(request.rid)
            while len(self.finished) > RECENT_IDS:
                self.finished.popitem(last=False)
            if counted:
                self.worker.finished(total)
        if not request.answered:  # shutdown may have answered it already
            request.answered = True
            self.send(final)
