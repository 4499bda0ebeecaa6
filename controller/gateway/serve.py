"""Serving the gateway: the app on controller.server's uvicorn stack, until ``stop``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from controller.gateway.app import Model, Runtime, build_app
from controller.gateway.settings import GatewaySettings, check_exposure
from controller.server.run import serve_http


async def serve(
    runtime: Runtime,
    settings: GatewaySettings,
    models: Sequence[Model],
    stop: asyncio.Event,
    *,
    metrics: Callable[[], Awaitable[tuple[bytes, str]]] | None = None,
    on_listen: Callable[[str, int], None] | None = None,
) -> None:
    """Refuses (ServerConfigError) a non-loopback address without a token, like
    ``fazai serve``; ServerBindError when the address cannot be bound."""
    check_exposure(settings)
    app = build_app(runtime, settings, models, metrics=metrics)
    await serve_http(app, settings.server(), stop, on_listen=on_listen)
