"""``python -m fazai_native --socket PATH [--config FILE.json] [--queue N]
[--write-limit BYTES]``: the worker.

Claims the socket (see :mod:`fazai_native.listen`), loads the pinned models, then
listens and prints ``ready PATH`` on stdout (the supervisor waits for that line).
SIGTERM or SIGINT: every in-flight request is aborted and answered with an error, the
socket is removed, exit 0. Exit 1: the socket could not be claimed or a pinned model
not loaded; exit 2: bad arguments or config."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from fazai_native import config as configuration
from fazai_native import errors, listen, protocol
from fazai_native.runtime import Runtime, resolve_spec
from fazai_native.server import MAX_CONNECTIONS, WRITE_LIMIT, Worker


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
    args = parser.parse_args(argv)
    if not 1 <= args.queue <= 1024:
        parser.error("--queue must be from 1 to 1024")
    if not 4096 <= args.write_limit <= 1 << 30:
        parser.error("--write-limit must be from 4096 to 1073741824 bytes")
    return args


def _fail(message: str, code: int) -> int:
    print(f"fazai_native: {message}", file=sys.stderr)
    return code


async def _serve(claimed: listen.Claimed, runtime: Runtime, queue: int, write_limit: int) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    starting = asyncio.ensure_future(asyncio.to_thread(runtime.start))
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        # Stopped while a pinned model loads: let the load end, then close.
        await asyncio.wait({starting})
        return 0
    stopped.cancel()
    try:
        starting.result()
    except errors.WorkerError as exc:
        return _fail(str(exc), 1)
    worker = Worker(runtime, queue=queue, write_limit=write_limit)
    claimed.sock.listen(MAX_CONNECTIONS)  # a burst of connects is queued, not refused
    claimed.sock.setblocking(False)
    server = await asyncio.start_unix_server(
        worker.handle, sock=claimed.sock, limit=protocol.MAX_FRAME
    )
    print(f"ready {claimed.path}", flush=True)
    await stop.wait()
    server.close()
    await worker.shutdown()
    await server.wait_closed()
    return 0


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
        return asyncio.run(_serve(claimed, runtime, args.queue, args.write_limit))
    finally:
        runtime.close()
        claimed.release()


if __name__ == "__main__":
    sys.exit(main())
