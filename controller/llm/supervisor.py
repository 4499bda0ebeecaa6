"""Starting, watching and restarting the worker process (``python -m fazai_native``).

The worker is its own process so that whatever kills it (a crash in llama.cpp, the OOM
killer, a SIGKILL, a decode that hangs) never kills the controller. The supervisor:

* writes the worker's JSON config (mode 0600, in a private folder) and starts
  ``sys.executable -m fazai_native --socket PATH --config FILE --queue N``, then waits
  for its ``ready <socket>`` line (``ready_timeout``) and connects;
* checks the socket's folder first (made mode 0700 when missing): it must be ours and
  writable by no one else, or another user could put a socket of its own where ours
  goes, or take the lock; it refuses (SupervisorError) otherwise;
* holds an exclusive lock beside the socket (``PATH.supervisor.lock``, mode 0600) for as
  long as it runs, so a second supervisor on the same path refuses at once instead of
  removing the first one's socket from under it; a start that fails after taking it
  lets it go;
* watches the process: when it ends, the requests in flight fail at once with
  BackendUnavailable naming how it died ("the worker died (signal 9)"), and it is
  started again after a delay that doubles from ``backoff_initial`` up to
  ``backoff_max``, back to the start once a worker has stayed up ``stable_after``; a
  restart that cannot even start a process (an OSError: no more processes, a missing
  interpreter) is retried the same way. Should the watcher itself fail (a bug), it is
  logged, the worker is stopped and the lock let go, so that the next request starts
  it all again instead of waiting for a watcher that is gone;
* kills a hung worker: one with generations in flight that has sent no frame for
  ``hang_timeout`` seconds (the decode is stuck; the abort callback cannot reach it);
* on :meth:`close`, SIGTERM, then SIGKILL after ``stop_grace``.

A request arriving while the worker restarts waits for it up to ``restart_wait``, then
fails with BackendUnavailable (the chain goes on to the next backend).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import json
import logging
import os
import signal
import stat
import sys
import tempfile
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from controller.llm.errors import BackendUnavailable
from controller.llm.wire import Connection

log = logging.getLogger("fazai.llm")

NAME = "worker"
MAX_STDERR_LINE = 4096  # a line of the worker's stderr beyond this is cut in the log
STDERR_TAIL = 5  # its last lines, kept for the message when it fails to start


class SupervisorError(BackendUnavailable):
    """The worker cannot be supervised here (its socket is another supervisor's)."""

    retryable = False


@dataclass(frozen=True)
class WorkerOptions:
    socket: Path
    config: Mapping[str, Any] = field(default_factory=dict)  # the worker's --config
    queue: int = 8
    ready_timeout: float = 60.0
    connect_timeout: float = 5.0
    hang_timeout: float = 120.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    stable_after: float = 60.0
    restart_wait: float = 10.0
    stop_grace: float = 5.0
    extra_args: Sequence[str] = ()  # more of the worker's options (tests)
    env: Mapping[str, str] | None = None  # the worker's environment (default: ours)


def lock_path_of(socket: Path) -> Path:
    """The supervisor's lock beside ``socket`` (the worker holds ``PATH.lock`` itself)."""
    return socket.with_name(socket.name + ".supervisor.lock")


def describe_exit(returncode: int | None) -> str:
    """How a process ended, as the errors say it."""
    if returncode is None:
        return "the worker is gone"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "?"
        return f"the worker died (signal {-returncode}, {name})"
    return f"the worker exited with status {returncode}"


class Supervisor:
    """One supervised worker; its :meth:`connection` is a :class:`~controller.llm.worker.Link`."""

    def __init__(self, options: WorkerOptions) -> None:
        self.options = options
        self._proc: asyncio.subprocess.Process | None = None
        self._conn: Connection | None = None
        self._up = asyncio.Event()  # a worker is ready and connected
        self._closing = False
        self._lock_file: TextIO | None = None
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._start_lock = asyncio.Lock()
        self._last_failure = "the worker has not started"
        self._first_failure: str | None = None  # why the first start failed, if it did
        self._first_delay = 0.0
        self._first_retry_at = 0.0
        self._config_path = Path()
        self._started_at = 0.0
        self.restarts = 0  # how many times a worker was started again (tests, stats)
        self.pid: int | None = None

    @property
    def running(self) -> bool:
        """Started (and not closing): a worker is up or being restarted."""
        return self._watcher is not None and not self._closing

    # -- the Link --------------------------------------------------------------------

    async def connection(self) -> Connection:
        if self._closing:
            raise BackendUnavailable(NAME, "the model runtime is closing")
        if self._watcher is None:
            await self.start()
        conn = self._conn
        if conn is not None and not conn.failed and self._up.is_set():
            return conn
        try:
            async with asyncio.timeout(self.options.restart_wait):
                await self._up.wait()
        except TimeoutError:
            raise BackendUnavailable(
                NAME, f"{self._last_failure}; not back within {self.options.restart_wait:g} s"
            ) from None
        if self._conn is None or self._conn.failed:
            raise BackendUnavailable(NAME, self._last_failure)
        return self._conn

    # -- life cycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Starts the worker and returns once it is ready; raises SupervisorError when
        another supervisor holds the socket, BackendUnavailable when the first start
        fails (later restarts retry on their own)."""
        async with self._start_lock:
            if self._watcher is not None:
                return
            # A first start that failed is not tried again by every request at once:
            # they fail with its reason until the backoff has passed.
            wait = self._first_retry_at - time.monotonic()
            if self._first_failure is not None and wait > 0:
                raise BackendUnavailable(NAME, f"{self._first_failure} (next try in {wait:.1f} s)")
            try:
                self._take_lock()
                await self._spawn()
            except BackendUnavailable as exc:
                self._release()
                self._first_failure = _reason(exc)
                self._first_delay = min(
                    max(self._first_delay * 2, self.options.backoff_initial),
                    self.options.backoff_max,
                )
                self._first_retry_at = time.monotonic() + self._first_delay
                raise
            except BaseException:
                self._release()
                raise
            self._first_failure = None
            self._watcher = asyncio.create_task(self._watch(), name="fazai-worker-watch")
            self._watcher.add_done_callback(self._watch_ended)

    async def close(self) -> None:
        self._closing = True
        self._up.clear()
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
        await self._stop_process()
        self._release()

    async def kill(self, sig: int = signal.SIGKILL) -> None:
        """Sends ``sig`` to the worker (the CLI, tests); the watcher sees the rest."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.send_signal(sig)

    # -- inside ----------------------------------------------------------------------

    def _watch_ended(self, task: asyncio.Task[None]) -> None:
        """The watcher ended: by close() (cancelled), or by a bug. Then nothing would
        restart the worker and every request would wait for one that never comes: the
        supervisor goes back to not started (worker stopped, lock let go), so that the
        next request starts it again."""
        if task is not self._watcher or self._closing or task.cancelled():
            return  # close() or the loop's own end: they stop the rest themselves
        self._watcher = None
        self._up.clear()
        error = task.exception()
        self._last_failure = f"the worker's watcher failed ({type(error).__name__})"
        log.error(
            "the model worker's watcher failed; the next request starts it again", exc_info=error
        )
        if self._conn is not None:
            self._conn.fail(self._last_failure)
            self._conn = None
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()  # no one watches it now; a new start makes another
        self._release()

    def _check_folder(self, folder: Path) -> None:
        """``folder`` (where the socket and the lock go) is ours and no one else's to
        write: another user who could write there could put its own socket in our
        socket's place (and read every prompt), or hold our lock."""
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        found = folder.stat()
        if found.st_uid != os.getuid():
            raise SupervisorError(
                NAME, f"the worker's socket folder {folder} belongs to uid {found.st_uid}, not us"
            )
        if found.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise SupervisorError(
                NAME,
                f"the worker's socket folder {folder} is writable by others "
                f"(mode {stat.S_IMODE(found.st_mode):o}): give the socket a private folder",
            )

    def _take_lock(self) -> None:
        socket = self.options.socket
        self._check_folder(socket.parent)
        lock_path = lock_path_of(socket)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        handle = os.fdopen(fd, "r+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            handle.close()
            raise SupervisorError(
                NAME,
                f"another supervisor (pid {holder}) runs a worker on {socket}; stop it, "
                "or give this one another worker socket (models.worker.socket)",
            ) from None
        except BaseException:
            handle.close()
            raise
        # Held from here: whatever fails next, _release lets it go.
        self._lock_file = handle
        os.fchmod(fd, 0o600)  # one left by an older version may be wider
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._folder = tempfile.TemporaryDirectory(prefix="fazai-worker-")
        config = Path(self._folder.name) / "worker.json"
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(dict(self.options.config), out)
        self._config_path = config

    def _release(self) -> None:
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None
        if self._lock_file is not None:
            self._lock_file.close()  # the lock goes with the descriptor
            self._lock_file = None

    async def _spawn(self) -> None:
        """Starts one worker and waits for its ``ready`` line and the connection."""
        options = self.options
        # A socket left by a worker that died is the worker's to find stale and replace
        # (fazai_native.listen); one that is live is someone's worker: it refuses.
        args = [
            sys.executable,
            "-m",
            "fazai_native",
            "--socket",
            str(options.socket),
            "--config",
            str(self._config_path),
            "--queue",
            str(options.queue),
            *options.extra_args,
        ]
        try:
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=dict(options.env) if options.env is not None else None,
                start_new_session=True,  # a Ctrl-C in the terminal is the controller's
            )
        except OSError as exc:  # no more processes or descriptors, no interpreter
            raise BackendUnavailable(
                NAME, f"cannot start the worker: {exc.strerror or type(exc).__name__}"
            ) from exc
        self._proc = proc
        self.pid = proc.pid
        assert proc.stdout is not None and proc.stderr is not None
        tail: deque[str] = deque(maxlen=STDERR_TAIL)
        stderr_task = asyncio.create_task(_log_lines(proc.stderr, proc.pid, tail))
        proc._fazai_stderr = stderr_task  # type: ignore[attr-defined]  # kept alive with it
        try:
            async with asyncio.timeout(options.ready_timeout):
                await _wait_ready(proc, proc.stdout, stderr_task, tail)
        except TimeoutError:
            await self._stop_process()
            raise BackendUnavailable(
                NAME, f"the worker was not ready within {options.ready_timeout:g} s"
            ) from None
        except BackendUnavailable:
            await self._stop_process()
            raise
        # Drain stdout from here on, so a chatty worker never blocks on a full pipe.
        proc._fazai_stdout = asyncio.create_task(_drain(proc.stdout))  # type: ignore[attr-defined]
        try:
            self._conn = await Connection.open(
                str(options.socket),
                timeout=options.connect_timeout,
                name=NAME,
                lost=functools.partial(self._why, proc),
            )
        except BackendUnavailable:
            await self._stop_process()
            raise
        self._started_at = time.monotonic()
        self._up.set()
        log.info("model worker %d ready on %s", proc.pid, options.socket)

    async def _why(self, proc: asyncio.subprocess.Process, reason: str) -> str:
        """The reason ``proc``'s connection failed, told better when it died: a dead
        worker closes its socket as it exits, so its status follows at once."""
        if proc is self._proc:
            self._up.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await proc.wait()
        if proc.returncode is not None:
            self._last_failure = describe_exit(proc.returncode)
            return self._last_failure
        return reason

    async def _watch(self) -> None:
        delay = self.options.backoff_initial
        while not self._closing:
            proc = self._proc
            assert proc is not None
            await self._until_exit(proc)
            self._up.clear()
            self._last_failure = describe_exit(proc.returncode)
            log.warning("%s; restarting it", self._last_failure)
            if self._conn is not None:
                self._conn.fail(self._last_failure)
            if time.monotonic() - self._started_at >= self.options.stable_after:
                delay = self.options.backoff_initial
            while not self._closing:
                await asyncio.sleep(delay)  # the backoff itself, not a synchronisation
                delay = min(delay * 2, self.options.backoff_max)
                try:
                    await self._spawn()
                except (BackendUnavailable, OSError) as exc:
                    # OSError: the worker's socket or pipes; the next try may well work.
                    self._last_failure = str(exc)
                    log.warning("restarting the model worker failed: %s", exc)
                    continue
                self.restarts += 1
                break

    async def _until_exit(self, proc: asyncio.subprocess.Process) -> None:
        """Returns when ``proc`` ends; kills it first when it hangs."""
        tick = min(1.0, self.options.hang_timeout / 4)
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(tick):
                    await proc.wait()
                    return
            conn = self._conn
            if conn is None or conn.failed:
                continue
            generating = conn.in_flight("generate")
            if not generating:
                continue
            since = max(conn.last_frame, min(p.started for p in generating))
            silent = time.monotonic() - since
            if silent > self.options.hang_timeout:
                log.error(
                    "the model worker sent nothing for %.0f s mid-generation: killing it", silent
                )
                self._last_failure = (
                    f"the worker hung (no frame for {self.options.hang_timeout:g} s) and was killed"
                )
                conn.fail(self._last_failure)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()

    async def _stop_process(self) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            async with asyncio.timeout(self.options.stop_grace):
                await proc.wait()
        except TimeoutError:
            log.warning(
                "the model worker ignored SIGTERM for %g s: killing it", self.options.stop_grace
            )
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def _reason(exc: BackendUnavailable) -> str:
    text = str(exc)
    return text[len(NAME) + 2 :] if text.startswith(f"{NAME}: ") else text


async def _wait_ready(
    proc: asyncio.subprocess.Process,
    stdout: asyncio.StreamReader,
    stderr: asyncio.Task[None],
    tail: deque[str],
) -> None:
    while True:
        line = await stdout.readline()
        if not line:
            status = await proc.wait()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await stderr  # its last words, for the message
            said = f": {tail[-1]}" if tail else ""
            raise BackendUnavailable(NAME, f"{describe_exit(status)} before it was ready{said}")
        text = line.decode("utf-8", "replace").strip()
        if text.startswith("ready"):
            return
        log.info("worker: %s", text[:MAX_STDERR_LINE])


async def _drain(stream: asyncio.StreamReader) -> None:
    with contextlib.suppress(OSError, ValueError):
        while await stream.read(65536):
            pass


async def _log_lines(stream: asyncio.StreamReader, pid: int, tail: deque[str]) -> None:
    """The worker's stderr into our log, line by line (it logs no prompt's text)."""
    with contextlib.suppress(OSError):
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line beyond the reader's limit: take what is there
                line = await stream.read(65536)
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip()
            if text:
                log.info("worker %d: %s", pid, text[:MAX_STDERR_LINE])
                tail.append(text[:MAX_STDERR_LINE])
