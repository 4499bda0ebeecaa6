"""``fazai serve``: the controller, its HTTP API and its schedulers, until SIGTERM/SIGINT.

The HTTP API (``controller.server``), the report scheduler (``controller.reports``) and
the notifier (``controller.notify``) are started when their packages are installed (and,
for reports and notifications, configured); without them the loop runs alone and says
so. On SIGTERM or SIGINT the controller stops accepting triggers, lets the apply in
flight finish or roll back (up to ``shutdownGrace``), stops the services and returns 0.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from controller import providers
from controller.reconcile import outcomes, sections
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


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


def _service(module: str, attribute: str) -> Callable[..., Any] | None:
    if not _importable(module):
        return None
    found: Callable[..., Any] = getattr(importlib.import_module(module), attribute)
    return found


def services(
    controller: Controller, config: ControllerConfig, stop: asyncio.Event, *, api: bool
) -> dict[str, Coroutine[Any, Any, None]]:
    """The coroutines of the services to run beside the loop, by name."""
    out: dict[str, Coroutine[Any, Any, None]] = {}
    build_app = _service("controller.server.app", "build_app")
    serve_http = _service("controller.server.run", "serve_http")
    if not api:
        log.info("HTTP API off (--no-api)")
    elif build_app is None or serve_http is None:
        log.info("no HTTP API: controller.server is not installed; running the loop only")
    else:
        settings = config.sections.get("server")
        if settings is None:
            section = sections.get("server")
            assert section is not None
            settings = section.parse({})
        out["http"] = serve_http(build_app(controller, settings), settings, stop)
    scheduler = _service("controller.reports.scheduler", "ReportScheduler")
    if "reports" in config.sections:
        if scheduler is None:
            log.warning("reports configured, but controller.reports is not installed: ignored")
        else:
            out["reports"] = scheduler(config.sections["reports"], controller).run(stop)
    notifier = _service("controller.notify.dispatcher", "Notifier")
    if "notifications" in config.sections:
        if notifier is None:
            log.warning("notifications configured, but controller.notify is not installed: ignored")
        else:
            out["notifications"] = notifier(config.sections["notifications"], controller).run(stop)
    return out


async def serve(config: ControllerConfig, *, api: bool = True, once: bool = False) -> int:
    """Run until a signal (0), or once over every source with ``once`` (diff(1)-style
    code); 2 when a service cannot start."""
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
            return await _run(controller, config, api)
        finally:
            outcome_log.cancel()
            await asyncio.gather(outcome_log, return_exceptions=True)


async def _run(controller: Controller, config: ControllerConfig, api: bool) -> int:
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
        tasks: dict[asyncio.Task[Any], str] = {
            asyncio.create_task(coroutine, name=name): name
            for name, coroutine in services(controller, config, stop, api=api).items()
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
