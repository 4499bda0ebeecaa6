"""Ctrl-C, SIGTERM and SIGHUP (the terminal closed) during a CLI command that writes: stop
starting things, finish or roll back what is in flight, then exit 130.

The default (``KeyboardInterrupt`` cancelling the event loop's task) would abandon a node
transaction between two steps, half-applied. Instead the first signal sets an event the
engine checks before each node and each batch of steps; the transaction in flight rolls
back to its snapshot (or finishes, where the provider sends everything at once). A second
signal only says what is happening; a third forces the exit and leaves the open
transaction to the next start's recovery (its lock dies with the process).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")
EXIT_INTERRUPTED = 130
# SIGHUP too: its default (die at once) would leave the node half-applied.
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
FORCE_AFTER = 3


_late: list[int] = []


def run(
    work: Callable[[asyncio.Event], Awaitable[T]],
    say: Callable[[str], None],
    doing: str = "the node transaction in flight",
    *,
    defer_after: bool = False,
) -> tuple[T, bool]:
    """Run ``work(interrupt)`` in a new event loop with SIGINT/SIGTERM/SIGHUP setting
    ``interrupt`` instead of cancelling it; its result, and whether it was interrupted.

    ``defer_after``: ``work`` is the command's last step (apply, rollback); a signal
    after it returns is only noted (:func:`late`), so what follows (releasing, the
    per-node lines the user needs) is not cut off by a KeyboardInterrupt."""

    async def main() -> tuple[T, bool]:
        interrupt = asyncio.Event()
        loop = asyncio.get_running_loop()
        count = 0

        def on_signal() -> None:
            nonlocal count
            count += 1
            if count == 1:
                interrupt.set()
                say(f"interrupted: finishing or rolling back {doing}; nothing new starts")
            elif count < FORCE_AFTER:
                say(
                    f"still rolling back {doing}; press Ctrl-C again to force the exit "
                    "(the open transaction is then rolled back at the next start)"
                )
            else:
                say("forced exit: the open transaction is rolled back at the next start")
                os._exit(EXIT_INTERRUPTED)

        for sig in SIGNALS:
            loop.add_signal_handler(sig, on_signal)
        try:
            async with _kept_connections():
                return await work(interrupt), interrupt.is_set()
        finally:
            for sig in SIGNALS:
                loop.remove_signal_handler(sig)
            # remove_signal_handler puts SIGTERM/SIGHUP back to the default (kill at once):
            # the CLI's own handler again, so a late signal still exits cleanly.
            _after(say, defer_after)

    try:
        return asyncio.run(main())
    finally:
        _after(say, defer_after)


def _after(say: Callable[[str], None], defer: bool) -> None:
    if not defer:
        install_sigterm()
        return

    def note(signum: int, frame: object) -> None:
        _late.append(signum)
        if len(_late) == 1:
            say("interrupted: the run has ended; showing where each node ended")
        elif len(_late) >= FORCE_AFTER:
            os._exit(EXIT_INTERRUPTED)

    for sig in SIGNALS:
        signal.signal(sig, note)


def late() -> bool:
    """Whether a signal came after a ``defer_after`` run had returned."""
    return bool(_late)


def run_cancellable(work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work()`` (which writes nothing: a plan, a read) in a new event loop; SIGINT
    or SIGTERM cancels it and raises KeyboardInterrupt, whatever ``work`` makes of the
    cancellation (a node read that catches it must not turn it into a finished plan)."""

    async def main() -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        stopped = False

        def on_signal() -> None:
            nonlocal stopped
            stopped = True
            task.cancel()

        for sig in SIGNALS:
            loop.add_signal_handler(sig, on_signal)
        try:
            async with _kept_connections():
                result = await work()
        except asyncio.CancelledError:
            if stopped:
                raise KeyboardInterrupt from None
            raise
        finally:
            for sig in SIGNALS:
                loop.remove_signal_handler(sig)
            install_sigterm()
        if stopped:
            raise KeyboardInterrupt
        return result

    return asyncio.run(main())


def _kept_connections() -> contextlib.AbstractAsyncContextManager[None]:
    """One command's reads and writes share its connections to each node; all are
    closed before its event loop ends."""
    from controller import providers

    return providers.kept_connections()


def _sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def install_sigterm() -> None:
    """SIGTERM and SIGHUP raise KeyboardInterrupt like Ctrl-C (``serve`` installs its
    own)."""
    signal.signal(signal.SIGTERM, _sigterm)
    signal.signal(signal.SIGHUP, _sigterm)
