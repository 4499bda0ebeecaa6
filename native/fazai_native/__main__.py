"""``python -m fazai_native --socket PATH [--config FILE.json] [--queue N]
[--write-limit BYTES] [--shutdown-grace S] [--stall-timeout S] [--idle-timeout S]``: the worker.

Claims the socket (see :mod:`fazai_native.listen`), loads the pinned models, then
listens and prints ``ready PATH`` on stdout (the supervisor waits for that line).
SIGTERM or SIGINT: every in-flight request is aborted and answered with an error, the
socket is removed, exit 0. A request that does not stop within ``--shutdown-grace``
seconds (an embed, a load or a native call that never looks at its abort) is answered
with that error all the same, and the worker exits at once without closing its models
(the OS frees them): a shutdown never waits on a thread that may never end. Exit 1: the
socket could not be claimed or a pinned model not loaded; exit 2: bad arguments or
config."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading

from fazai_native import config as configuration
from fazai_native import errors, listen
from fazai_native.runtime import Runtime, resolve_spec
from fazai_native.server import (
    IDLE_TIMEOUT_S,
    MAX_CONNECTIONS,
    READ_LIMIT,
    SHUTDOWN_GRACE_S,
    STALL_TIMEOUT_S,
    WRITE_LIMIT,
    Worker,
)

CLOSE_MODELS_S = 10.0  # for the models to close at exit; then the OS frees them


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m fazai_native", description=__doc__)
    parser.add_argument("--socket", required=True, help="the Unix socket path to serve on")
    parser.add_argument("--config", help="JSON: {memory_budget, models: [ModelSpec]}")
    parser.add_argument(
        "--queue", type=int, default=8, help="generate/embed requests in flight or waiting"
    )
    parser.add_argument(
        "--write-limit",
        type=int,
        default=WRITE_LIMIT,
        help="unread bytes a connection may hold before the generation feeding it is aborted",
    )
    parser.add_argument(
        "--shutdown-grace",
        type=float,
        default=SHUTDOWN_GRACE_S,
        help="seconds in-flight requests get to stop at SIGTERM before the worker exits anyway",
    )
    parser.add_argument(
        "--stall-timeout",
        type=float,
        default=STALL_TIMEOUT_S,
        help="seconds a frame may take to arrive, and unread output may wait, before the"
        " connection is closed",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=IDLE_TIMEOUT_S,
        help="close a connection with nothing sent or in flight for this long (0: never)",
    )
    args = parser.parse_args(argv)
    if not 0.0 < args.stall_timeout <= 86400.0:
        parser.error("--stall-timeout must be from 0 to 86400 seconds")
    if not 0.0 <= args.idle_timeout <= 86400.0:
        parser.error("--idle-timeout must be from 0 (never) to 86400 seconds")
    if not 0.0 < args.shutdown_grace <= 3600.0:
        parser.error("--shutdown-grace must be from 0 to 3600 seconds")
    if not 1 <= args.queue <= 1024:
        parser.error("--queue must be from 1 to 1024")
    if not 4096 <= args.write_limit <= 1 << 30:
        parser.error("--write-limit must be from 4096 to 1073741824 bytes")
    return args


def _fail(message: str, code: int) -> int:
    print(f"fazai_native: {message}", file=sys.stderr)
    return code


def _exit_now(claimed: listen.Claimed, why: str) -> None:
    """Leave without waiting for threads that may never end (a native call that ignores
    its abort): the socket is removed first, so a supervisor may start the next worker."""
    print(f"fazai_native: {why}: exiting without waiting for it", file=sys.stderr)
    claimed.release()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _close_models(runtime: Runtime, claimed: listen.Claimed) -> None:
    """Close the models, for at most CLOSE_MODELS_S: a close that hangs (a native
    library's teardown) must not keep the process, so past that it exits at once."""
    closer = threading.Thread(target=runtime.close, name="close-models", daemon=True)
    closer.start()
    closer.join(CLOSE_MODELS_S)
    if closer.is_alive():
        _exit_now(claimed, f"the models did not close within {CLOSE_MODELS_S:g} s")


async def _serve(claimed: listen.Claimed, runtime: Runtime, args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Its own daemon thread, not asyncio's executor: asyncio.run would wait for a load
    # that never ends at exit.
    started = loop.create_future()

    def start() -> None:
        try:
            runtime.start()
        except BaseException as exc:  # handed to the loop, raised there
            loop.call_soon_threadsafe(_settle, started, exc)
        else:
            loop.call_soon_threadsafe(_settle, started, None)

    threading.Thread(target=start, name="start", daemon=True).start()
    starting = started
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        # Stopped while a pinned model loads: let the load end (for the grace), then close.
        await asyncio.wait({starting}, timeout=args.shutdown_grace)
        if not starting.done():
            _exit_now(claimed, "a pinned model was still loading at shutdown")
        return 0
    stopped.cancel()
    try:
        starting.result()
    except errors.WorkerError as exc:
        return _fail(str(exc), 1)
    worker = Worker(
        runtime,
        queue=args.queue,
        write_limit=args.write_limit,
        shutdown_grace=args.shutdown_grace,
        stall_timeout=args.stall_timeout,
        idle_timeout=args.idle_timeout,
    )
    claimed.sock.listen(MAX_CONNECTIONS)  # a burst of connects is queued, not refused
    claimed.sock.setblocking(False)
    server = await asyncio.start_unix_server(worker.handle, sock=claimed.sock, limit=READ_LIMIT)
    print(f"ready {claimed.path}", flush=True)
    await stop.wait()
    server.close()
    late = await worker.shutdown()
    if late:
        # Their threads still use the models: closing those under them could crash.
        _exit_now(claimed, f"{late} request(s) did not stop")
    await server.wait_closed()
    return 0


def _settle(future: asyncio.Future[None], exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is None:
        future.set_result(None)
    else:
        future.set_exception(exc)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    try:
        config = configuration.load(args.config) if args.config else configuration.Config()
        specs = [resolve_spec(spec) for spec in config.models]
        runtime = Runtime(specs, config.memory_budget)
    except configuration.ConfigError as exc:
        return _fail(f"config: {exc}", 2)
    except errors.WorkerError as exc:
        return _fail(f"config: {exc}", 2)
    try:
        claimed = listen.claim(args.socket)
    except listen.SocketRefused as exc:
        return _fail(str(exc), 1)
    try:
        return asyncio.run(_serve(claimed, runtime, args))
    finally:
        _close_models(runtime, claimed)
        claimed.release()


if __name__ == "__main__":
    sys.exit(main())
