"""``fazai serve`` put together: the reconcile loop with, beside it, the HTTP API
(``controller.server``), the report scheduler (``controller.reports``), the notifier
(``controller.notify``) and the model runtime (``controller.llm``).

The model runtime is built from ``fazai.yaml``'s ``models:`` (or the embedded models):
its metrics are on the API's ``/metrics``, its ``model.*`` events (the tokens of a
generation among them) on the loop's event bus, so on ``/api/v1/events``. Building it
starts nothing: the local worker starts on the first completion, and is stopped with
the services.

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

from controller.llm import settings as models_settings
from controller.llm.metrics import ModelMetrics
from controller.llm.runtime import ModelRuntime
from controller.notify.dispatcher import Notifier
from controller.reconcile import serve as serving
from controller.reconcile.config import ControllerConfig
from controller.reconcile.controller import Controller
from controller.reports.scheduler import ReportScheduler
from controller.server import settings as server_settings
from controller.server.app import build_app
from controller.server.metrics import Metrics
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


class Services:
    """The services of one ``fazai serve`` (``reconcile.serve.Services``), and the model
    runtime they share, which outlives them: it is closed by :meth:`close`, after the
    loop has stopped, so an apply finishing in its grace still has its models."""

    def __init__(self) -> None:
        self.models: ModelRuntime | None = None

    def __call__(
        self, controller: Controller, config: ControllerConfig, stop: asyncio.Event, *, api: bool
    ) -> dict[str, Coroutine[Any, Any, None]]:
        """The coroutines of the services to run beside the loop, by name: the HTTP API
        (unless ``api`` is off), reports and notifications where configured."""
        out: dict[str, Coroutine[Any, Any, None]] = {}
        metrics = Metrics()
        self.models = models = model_runtime(controller, config, metrics)
        if not api:
            log.info("HTTP API off (--no-api)")
        else:
            settings = config.sections.get("server") or server_settings.from_config({})
            app = build_app(
                controller, settings, metrics=metrics, before_scrape=[models.refresh_metrics]
            )
            out["http"] = serve_http(app, settings, stop)
        if "reports" in config.sections:
            out["reports"] = ReportScheduler(config.sections["reports"], controller).run(stop)
        if "notifications" in config.sections:
            out["notifications"] = Notifier(config.sections["notifications"], controller).run(stop)
        return out

    async def close(self) -> None:
        """Stops the model worker, if one was started."""
        if self.models is not None:
            await self.models.close()
            self.models = None


def model_runtime(
    controller: Controller, config: ControllerConfig, metrics: Metrics
) -> ModelRuntime:
    """The runtime of ``config``'s models, publishing on ``controller``'s event bus and
    counting into ``metrics``' registry."""
    found = config.sections.get(models_settings.SECTION)
    settings = found if found is not None else models_settings.ModelsSettings()
    return ModelRuntime(settings, events=controller.events, metrics=ModelMetrics(metrics.registry))


async def serve(config: ControllerConfig, *, api: bool = True, once: bool = False) -> int:
    """``fazai serve``: the loop and its services (see ``reconcile.serve.serve``)."""
    services = Services()
    try:
        return await serving.serve(config, api=api, once=once, services=services)
    finally:
        await services.close()
