"""The REST routes of /api/v1 and the health probes."""

from __future__ import annotations

import asyncio

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from controller.errors import FazaiError, StoreError
from controller.reconcile.handle import ControllerHandle, ControllerStopping, UnknownApproval
from controller.server import views
from controller.server.auth import require
from controller.server.replies import MAX_ID, error, log, read_json_object, reply, whole_number
from controller.server.settings import Scope

MAX_RUNS_PAGE = 1000


def _handle(request: Request) -> ControllerHandle:
    handle: ControllerHandle = request.app.state.handle
    return handle


async def healthz(request: Request) -> Response:
    return reply({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Open to probes without a token, so it tells only names and booleans."""
    handle = _handle(request)
    ready = handle.ready()
    body = {"ready": ready, "sources": [views.readiness(s) for s in handle.sources()]}
    return reply(body, 200 if ready else 503)


@require(Scope.READ)
async def sources(request: Request) -> Response:
    return reply({"sources": [views.source(s) for s in _handle(request).sources()]})


@require(Scope.READ)
async def runs(request: Request) -> Response:
    limit = _int_param(request, "limit", 20, 1, MAX_RUNS_PAGE)
    offset = _int_param(request, "offset", 0, 0, None)
    store = _handle(request).store
    try:
        found = await asyncio.to_thread(store.list_runs, limit, offset)
    except StoreError as exc:
        return _store_failed(exc)
    return reply({"runs": [views.run_summary(r) for r in found], "limit": limit, "offset": offset})


@require(Scope.READ)
async def run(request: Request) -> Response:
    text = request.path_params["run_id"]
    if not text.isdigit():
        return error(404, f"no run {text[:40]}")
    run_id = whole_number(text, 1)
    if run_id is None:
        return error(400, f"a run id is a whole number from 1 to {MAX_ID}")
    try:
        found = await asyncio.to_thread(_handle(request).store.get_run, run_id)
    except StoreError as exc:
        return _store_failed(exc)
    if found is None:
        return error(404, f"no run {text}")
    return reply(views.run(found))


@require(Scope.READ)
async def drift(request: Request) -> Response:
    return reply({"nodes": [views.drift(n) for n in _handle(request).drift()]})


@require(Scope.WRITE)
async def reconcile(request: Request) -> Response:
    body = await read_json_object(request)
    unknown = set(body) - {"source"}
    if unknown:
        return error(400, f"unknown field(s): {', '.join(sorted(unknown))}")
    source = body.get("source")
    if source is not None and not isinstance(source, str):
        return error(400, "source must be a source's name or null")
    handle = _handle(request)
    if source is not None and source not in {s.name for s in handle.sources()}:
        return error(404, f"no source named {source!r}")
    try:
        await handle.trigger(source, reason="api")
    except ControllerStopping as exc:
        return error(503, str(exc), {"Retry-After": "5"})
    log.info("reconcile of %s requested by %s", source or "every source", _caller(request))
    return reply({"queued": True, "source": source}, 202)


@require(Scope.READ)
async def approvals(request: Request) -> Response:
    return reply({"approvals": [views.approval(a) for a in _handle(request).approvals()]})


@require(Scope.WRITE)
async def approve(request: Request) -> Response:
    approval_id = request.path_params["approval_id"]
    # Shielded: once approved, the apply must not be cancelled half-way because the client
    # hung up or the server is stopping; the loop finishes (or rolls back) it.
    task = asyncio.ensure_future(_handle(request).approve(approval_id))
    task.add_done_callback(_log_failure)
    try:
        run_id = await asyncio.shield(task)
    except UnknownApproval:
        return error(404, f"no pending approval {approval_id!r}")
    except FazaiError as exc:
        return _refused(exc)
    log.info("approval %s approved by %s: run %s", approval_id, _caller(request), run_id)
    return reply({"run_id": run_id, "approval": approval_id})


@require(Scope.WRITE)
async def abort(request: Request) -> Response:
    approval_id = request.path_params["approval_id"]
    try:
        await _handle(request).abort(approval_id)
    except UnknownApproval:
        return error(404, f"no pending approval {approval_id!r}")
    except FazaiError as exc:
        return _refused(exc)
    log.info("approval %s aborted by %s", approval_id, _caller(request))
    return reply({"aborted": approval_id})


def _int_param(request: Request, name: str, default: int, low: int, high: int | None) -> int:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    value = whole_number(text, low, MAX_ID if high is None else high)
    if value is None:
        bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise HTTPException(400, f"{name} must be a whole number {bounds}")
    return value


def _log_failure(task: asyncio.Future[int]) -> None:
    failure = None if task.cancelled() else task.exception()
    if isinstance(failure, FazaiError):
        log.warning("approval refused: %s", failure)  # the client is told; no traceback
    elif isinstance(failure, Exception) and not isinstance(failure, UnknownApproval):
        log.error("approved apply failed", exc_info=failure)


def _refused(exc: FazaiError) -> Response:
    """A FazAI error from approve or abort: 503 while the controller stops or its store
    fails (the same request can succeed later), else 409 (the approval cannot be acted on
    as asked). FazAI errors carry no secret, so the message is the answer."""
    if isinstance(exc, StoreError):
        return _store_failed(exc)
    if isinstance(exc, ControllerStopping):
        return error(503, str(exc), {"Retry-After": "5"})
    return error(409, str(exc))


def _store_failed(exc: StoreError) -> Response:
    log.error("state store: %s", exc)
    return error(503, f"the state store cannot be read: {exc.message}")


def _caller(request: Request) -> str:
    return str(request.state.caller.name)
