"""``fazai serve``: the controller and the services beside it, until SIGTERM/SIGINT.

The services (the HTTP API, the report scheduler, the notifier) are handed in by
``controller.daemon``, which sits above them and the loop alike: they read the loop
through ``ControllerHandle``, so the loop must not import them. On SIGTERM or SIGINT the
controller stops accepting triggers, lets the apply in flight finish or roll back (up to
``shutdownGrace``), stops the services and returns 0.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import signal
from collections.abc import Coroutine
from typing import Any, Protocol

from controller import providers
from controller.reconcile import outcomes
from controller.reconcile.config import ControllerConfig
from controller.reconcile.controller import Controller
from controller.store import StateStore

log = logging.getLogger("fazai.serve")

SERVICE_STOP_S = 10.0

# Imported by the first plan or apply of a node of their platform. asyncssh's import runs
# gcc and ldconfig (ctypes.util.find_library): a third of a second during which the event
# loop, and with it the HTTP API, would stand still if it happened at the first plan.
WARM_UP = tuple(
    f"controller.providers.{platform}.{module}"
    for platform in providers.PLATFORMS
    for module in ("provider", "apply")
)


def warm_up() -> None:
    """Import what the first reconcile would, before anything is served."""
    for module in WARM_UP:
        try:
            importlib.import_module(module)
        except ImportError as exc:  # the first plan of that platform reports it
            log.warning("cannot import %s: %s", module, exc)


class Services(Protocol):
    """The coroutines of the services to run beside the loop, by name (``controller.daemon``
    puts the HTTP API, the report scheduler and the notifier here: they watch the loop,
    which knows nothing of them)."""

    def __call__(
        self, controller: Controller, config: ControllerConfig, stop: asyncio.Event, *, api: bool
    ) -> dict[str, Coroutine[Any, Any, None]]: ...


async def serve(
    config: ControllerConfig,
    *,
    api: bool = True,
    once: bool = False,
    services: Services | None = None,
) -> int:
    """Run until a signal (0), or once over every source with ``once`` (diff(1)-style
    code); 2 when a service cannot start. Without ``services`` the loop runs alone."""
    with StateStore(config.state) as store:
        log.info("state store: %s", store.path)
        controller = Controller(config, store)
        # The log says what each reconcile did (applied, drift, failed), from the events.
        subscribed = asyncio.Event()
        outcome_log = asyncio.create_task(outcomes.follow(controller.events, subscribed))
        await subscribed.wait()
        try:
            if once:
                return await controller.run_once()
            return await _run(controller, config, api, services)
        finally:
            outcome_log.cancel()
            await asyncio.gather(outcome_log, return_exceptions=True)


async def _run(
    controller: Controller, config: ControllerConfig, api: bool, services: Services | None
) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = 0

    def on_signal(number: signal.Signals) -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            log.info("%s: stopping; an apply in flight finishes or rolls back first", number.name)
        else:
            log.warning(
                "%s again: still waiting for the apply in flight (at most %.0f s); if killed, "
                "its transaction is rolled back from the journal at the next start",
                number.name,
                config.shutdown_grace,
            )
        stop.set()

    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, on_signal, number)
    code = 0
    try:
        await asyncio.to_thread(warm_up)  # nothing else imports yet: no lock contention
        await controller.start()
        try:
            started = services(controller, config, stop, api=api) if services else {}
        except BaseException:
            # A service that cannot even be built: the loop stops as on a signal (its
            # applies get their grace, its kept connections are closed).
            await controller.stop()
            raise
        if not started:
            log.info("no HTTP API, reports or notifications: running the loop only")
        tasks: dict[asyncio.Task[Any], str] = {
            asyncio.create_task(coroutine, name=name): name for name, coroutine in started.items()
        }
        log.info(
            "serving %d source(s): %s",
            len(config.sources),
            ", ".join(f"{s.name} ({s.mode.value})" for s in config.sources),
        )
        stopper: asyncio.Task[Any] = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({stopper, *tasks}, return_when=asyncio.FIRST_COMPLETED)
        for task in done - {stopper}:
            # A service ended before any signal: it could not start (a port in use...).
            code = 2
            error = task.exception() if not task.cancelled() else None
            log.error("%s stopped: %s", tasks[task], error or "ended")
        stop.set()
        await controller.stop()
        if tasks:
            _, left = await asyncio.wait(tasks, timeout=SERVICE_STOP_S)
            for task in left:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        stopper.cancel()
    finally:
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(number)
    log.info("stopped")
    return code
