"""The HTTP API of a running controller, as one Starlette app.

Routes (role needed when tokens are configured; each role includes the ones above it):

    GET  /healthz, /readyz                                open, for probes
    GET  /api/v1/sources, /runs, /runs/{id}, /drift       viewer (filtered to its scope)
    GET  /api/v1/approvals                                viewer (filtered to its scope)
    GET  /api/v1/events  (server-sent events)             viewer (filtered to its scope)
    GET  /metrics        (Prometheus)                     viewer, unscoped tokens only
    POST /api/v1/reconcile                                operator
    POST /api/v1/approvals/{id}/approve, .../abort        approver, within its scope
    POST /hooks/{github,gitlab,gitea}                     the forge's signature
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from controller.reconcile.handle import ControllerHandle
from controller.server import api, stream
from controller.server.auth import Caller, TokenTable, require
from controller.server.metrics import Metrics
from controller.server.replies import error, on_http_exception, on_unexpected
from controller.server.settings import FORGES, Role, ServerSettings

log = logging.getLogger("fazai.server")


def build_app(
    handle: ControllerHandle,
    settings: ServerSettings,
    *,
    metrics: Metrics | None = None,
    before_scrape: Sequence[Callable[[], Awaitable[None]]] = (),
) -> Starlette:
    """The app serving ``handle``. Reads every token and webhook secret now, so a missing
    one fails the start (SecretError) rather than the first request.

    ``metrics``: the registry /metrics shows, when others than the server's own feed it
    (the model runtime's, see ``controller.daemon``); ``before_scrape``: coroutines run at
    each scrape to bring those up to date."""
    tokens = TokenTable.from_settings(settings)
    if any(t.scope.sources is not None for t in settings.tokens):
        _warn_unknown_sources(settings, {s.name for s in handle.sources()})
    metrics = metrics if metrics is not None else Metrics()
    hook_routes = [Route(f"/hooks/{f}", _webhooks_not_configured, methods=["POST"]) for f in FORGES]
    hook_secrets = None
    if settings.webhooks:
        # Imported only when configured: it brings in the forges' payload parsers.
        from controller.server import hooks

        hook_secrets = hooks.HookSecrets(settings)
        hook_routes = [Route(f"/hooks/{f}", hooks.receiver(f), methods=["POST"]) for f in FORGES]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        subscribed = asyncio.Event()
        follower = asyncio.create_task(metrics.follow(handle.events, subscribed))
        await subscribed.wait()
        try:
            yield
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower

    routes = [
        Route("/healthz", api.healthz, methods=["GET"]),
        Route("/readyz", api.readyz, methods=["GET"]),
        Route("/api/v1/sources", api.sources, methods=["GET"]),
        Route("/api/v1/runs", api.runs, methods=["GET"]),
        Route("/api/v1/runs/{run_id}", api.run, methods=["GET"]),
        Route("/api/v1/drift", api.drift, methods=["GET"]),
        Route("/api/v1/reconcile", api.reconcile, methods=["POST"]),
        Route("/api/v1/approvals", api.approvals, methods=["GET"]),
        Route("/api/v1/approvals/{approval_id}/approve", api.approve, methods=["POST"]),
        Route("/api/v1/approvals/{approval_id}/abort", api.abort, methods=["POST"]),
        Route("/api/v1/events", stream.events, methods=["GET"]),
        Route("/metrics", _metrics, methods=["GET"]),
        *hook_routes,
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: on_http_exception, Exception: on_unexpected},
    )
    app.state.handle = handle
    app.state.settings = settings
    app.state.tokens = tokens
    app.state.metrics = metrics
    app.state.before_scrape = tuple(before_scrape)
    app.state.hooks = hook_secrets
    app.state.closing = asyncio.Event()  # set by serve_http: ends the event streams
    app.state.streams = 0
    return app


@require(Role.VIEWER)
async def _metrics(request: Request) -> Response:
    caller: Caller = request.state.caller
    if not caller.scope.unrestricted:
        # Labelled by every source and node: a scoped token would see others' drift.
        return error(403, f"token {caller.name!r} is scoped; metrics cover every source")
    metrics: Metrics = request.app.state.metrics
    for refresh in request.app.state.before_scrape:
        try:
            await refresh()
        except Exception:  # one source of figures failing must not fail the scrape
            log.exception("metrics: refreshing before the scrape failed")
    metrics.refresh(request.app.state.handle)
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


async def _webhooks_not_configured(request: Request) -> Response:
    forge = request.scope["path"].rsplit("/", 1)[-1]
    return error(404, f"webhooks from {forge} are not configured (server.webhooks.{forge})")


def _warn_unknown_sources(settings: ServerSettings, names: set[str]) -> None:
    """A scope naming a source that is not configured (a typo) lets its token see
    nothing of it: said at start, not discovered as an empty list."""
    for index, token in enumerate(settings.tokens):
        for unknown in sorted((token.scope.sources or frozenset()) - names):
            log.warning(
                "server.tokens[%d] (%s): scope names source %r, which is not configured",
                index,
                token.name,
                unknown,
            )
