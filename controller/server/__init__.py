"""The HTTP API of ``fazai serve``: REST routes, server-sent events, Prometheus metrics and
push webhooks, over one :class:`~controller.reconcile.handle.ControllerHandle`.

    app = build_app(handle, from_config(config.get("server")))
    await serve_http(app, settings, stop)
"""

from __future__ import annotations

from controller.server.app import build_app
from controller.server.run import serve_http
from controller.server.settings import ServerSettings, from_config

__all__ = ["ServerSettings", "build_app", "from_config", "serve_http"]
