#!/usr/bin/env python3
"""Run ``fazai`` with a watchdog on its asyncio event loop, to find what blocks it.

    python bench/_loopprobe.py --out stalls.json [--threshold 0.1] [--cprofile serve.prof] \
        -- serve --config fazai.yaml

A thread pings the loop every ``--interval`` seconds (``call_soon_threadsafe``) and,
while the ping is not answered, samples the main thread's Python stack. A ping answered
after ``--threshold`` seconds or more is a *stall*: the loop could serve nothing (no
``/healthz``, no webhook, no SSE event) for that long. Each stall is written with its
wall-clock start (``time.time()``, comparable with event timestamps), its length, and
the stacks seen during it, so the blocking code is named, not guessed. The samples are
also aggregated into a flat profile by innermost frame and innermost ``controller``
frame. With ``--cprofile`` the event-loop thread is also profiled with cProfile from
the moment the process gets SIGUSR1 (threads started by ``asyncio.to_thread`` are not
profiled), for where the time goes when no single stall is long.

This is a sampling profiler of the event-loop thread only, built on
``sys._current_frames()`` because py-spy is not installed here; its overhead is one
short GIL acquisition per ``--interval`` (10 ms). The controller is not modified: the
probe only wraps ``asyncio.run`` before handing over to ``controller.cli.main``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

T = TypeVar("T")
STACK_DEPTH = 40  # innermost frames kept per sample


def _stack(frame: FrameType | None) -> tuple[str, ...]:
    """Innermost-last ``file:line function`` frames, paths shortened."""
    out: list[str] = []
    while frame is not None and len(out) < STACK_DEPTH:
        code = frame.f_code
        out.append(f"{_short(code.co_filename)}:{frame.f_lineno} {code.co_name}")
        frame = frame.f_back
    return tuple(reversed(out))


def _short(path: str) -> str:
    for marker in ("/site-packages/", "/lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    root = str(REPO) + "/"
    return path.removeprefix(root)


def _innermost(stack: tuple[str, ...], prefix: str | None = None) -> str:
    for line in reversed(stack):
        if prefix is None or line.startswith(prefix):
            return line
    return "(none)"


class Watchdog(threading.Thread):
    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float, threshold: float) -> None:
        super().__init__(name="loop-watchdog", daemon=True)
        self.loop = loop
        self.interval = interval
        self.threshold = threshold
        self.main_ident = threading.main_thread().ident
        self.stop = threading.Event()
        self.stalls: list[dict[str, Any]] = []
        self.pings = 0
        self.max_lag = 0.0

    def run(self) -> None:
        while not self.stop.is_set():
            answered = threading.Event()
            started_wall, started = time.time(), time.perf_counter()
            try:
                self.loop.call_soon_threadsafe(answered.set)
            except RuntimeError:  # the loop is closed
                return
            samples: list[tuple[str, ...]] = []
            while not answered.wait(self.interval):
                if self.stop.is_set():
                    return
                frame = sys._current_frames().get(self.main_ident or 0)
                samples.append(_stack(frame))
            lag = time.perf_counter() - started
            self.pings += 1
            self.max_lag = max(self.max_lag, lag)
            if lag >= self.threshold:
                self.stalls.append(
                    {
                        "start": started_wall,
                        "seconds": round(lag, 4),
                        "samples": len(samples),
                        "stacks": [
                            {"count": n, "stack": list(s)}
                            for s, n in collections.Counter(samples).most_common(5)
                        ],
                    }
                )
            self.stop.wait(self.interval)

    def report(self) -> dict[str, Any]:
        by_frame: collections.Counter[str] = collections.Counter()
        by_controller: collections.Counter[str] = collections.Counter()
        for stall in self.stalls:
            for entry in stall["stacks"]:
                stack = tuple(entry["stack"])
                by_frame[_innermost(stack)] += entry["count"]
                by_controller[_innermost(stack, "controller/")] += entry["count"]
        return {
            "interval": self.interval,
            "threshold": self.threshold,
            "pings": self.pings,
            "max_lag": round(self.max_lag, 4),
            "stalled_seconds": round(sum(s["seconds"] for s in self.stalls), 3),
            "stalls": self.stalls,
            "profile": {
                "innermost": by_frame.most_common(25),
                "innermost_controller": by_controller.most_common(25),
            },
        }


def main() -> int:
    argv = sys.argv[1:]
    if "--" not in argv:
        print("usage: _loopprobe.py [--out FILE] [--threshold S] -- FAZAI-ARGS...", file=sys.stderr)
        return 2
    split = argv.index("--")
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--interval", type=float, default=0.01)
    ap.add_argument("--threshold", type=float, default=0.1)
    ap.add_argument(
        "--cprofile", type=Path, help="also cProfile the main (event-loop) thread into FILE"
    )
    args = ap.parse_args(argv[:split])
    watchdogs: list[Watchdog] = []
    original_run = asyncio.run

    def run(main: Coroutine[Any, Any, T], **kwargs: Any) -> T:
        async def watched() -> T:
            dog = Watchdog(asyncio.get_running_loop(), args.interval, args.threshold)
            watchdogs.append(dog)
            dog.start()
            try:
                return await main
            finally:
                dog.stop.set()

        return original_run(watched(), **kwargs)

    asyncio.run = run
    from controller import cli

    entry: Callable[..., Any] = cli.main
    sys.argv = ["fazai", *argv[split + 1 :]]
    code: Any = 0
    profiler = cProfile.Profile() if args.cprofile else None
    if profiler is not None:
        # Profiling starts at SIGUSR1, so a benchmark can leave the start out.
        signal.signal(signal.SIGUSR1, lambda *_: profiler.enable())
    try:
        entry()
    except SystemExit as exc:
        code = exc.code
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(str(args.cprofile))
        reports = [d.report() for d in watchdogs]
        args.out.write_text(json.dumps(reports[0] if len(reports) == 1 else reports, indent=1))
    return code if isinstance(code, int) else (0 if code is None else 1)


if __name__ == "__main__":
    sys.exit(main())
