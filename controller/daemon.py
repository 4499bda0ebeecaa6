"""``fazai serve`` put together: the reconcile loop with, beside it, the HTTP API
(``controller.server``), the report scheduler (``controller.reports``) and the notifier
(``controller.notify``).

The services read the loop through ``ControllerHandle`` and its events; the loop knows
nothing of them. This module sits above all four and hands the services to the loop's
``serve``, so no package imports one above it (before, the loop imported them by name at
run time, which hid the circle from every import check).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from controller.notify.dispatcher import Notifier
from controller.reconcile import serve as serving
from controller.reconcile.config import ControllerConfig
from controller.reconcile.controller import Controller
from controller.reports.scheduler import ReportScheduler
from controller.server import settings as server_settings
from controller.server.app import build_app
from controller.server.run import serve_http

log = logging.getLogger("fazai.serve")


def register_sections() -> None:
    """Make the loader of ``fazai.yaml`` know every section: each owner registers its
    own when its settings module is imported (the loader sits below them all)."""
    import controller.forges.settings
    import controller.llm.settings
    import controller.notify.settings
    import controller.reports.settings
    import controller.server.settings  # noqa: F401


def services(
    controller: Controller, config: ControllerConfig, stop: asyncio.Event, *, api: bool
) -> dict[str, Coroutine[Any, Any, None]]:
    """The coroutines of the services to run beside the loop, by name: the HTTP API
    (unless ``api`` is off), reports and notifications where configured."""
    out: dict[str, Coroutine[Any, Any, None]] = {}
    if not api:
        log.info("HTTP API off (--no-api)")
    else:
        settings = config.sections.get("server") or server_settings.from_config({})
        out["http"] = serve_http(build_app(controller, settings), settings, stop)
    if "reports" in config.sections:
        out["reports"] = ReportScheduler(config.sections["reports"], controller).run(stop)
    if "notifications" in config.sections:
        out["notifications"] = Notifier(config.sections["notifications"], controller).run(stop)
    return out


async def serve(config: ControllerConfig, *, api: bool = True, once: bool = False) -> int:
    """``fazai serve``: the loop and its services (see ``reconcile.serve.serve``)."""
    return await serving.serve(config, api=api, once=once, services=services)
