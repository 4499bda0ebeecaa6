"""The REST routes of /api/v1 and the health probes."""

from __future__ import annotations

import asyncio

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from controller.errors import FazaiError, StoreError
from controller.reconcile.handle import (
    ApprovalRefused,
    ApprovalSuperseded,
    ControllerHandle,
    ControllerStopping,
    PendingApproval,
    UnknownApproval,
)
from controller.server import scoping, views
from controller.server.auth import Caller, TokenTable, require
from controller.server.replies import MAX_ID, error, log, read_json_object, reply, whole_number
from controller.server.settings import Role

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


@require(Role.VIEWER)
async def sources(request: Request) -> Response:
    scope = _caller(request).scope
    found = [s for s in _handle(request).sources() if scope.has_source(s.name)]
    return reply({"sources": [views.source(s) for s in found]})


@require(Role.VIEWER)
async def runs(request: Request) -> Response:
    """A scoped token's page holds the runs in its scope among the page's ``limit``."""
    limit = _int_param(request, "limit", 20, 1, MAX_RUNS_PAGE)
    offset = _int_param(request, "offset", 0, 0, None)
    handle = _handle(request)
    scope = _caller(request).scope
    try:
        found = await asyncio.to_thread(handle.store.list_runs, limit, offset)
    except StoreError as exc:
        return _store_failed(exc)
    visible = scoping.RunScope(scope, handle)
    shown = []
    for summary in found:
        nodes = [n.node for n in summary.nodes]
        seen, sources = visible.run(summary.source, nodes, summary.source_name)
        if not seen:
            continue
        view = views.run_summary(summary)
        view["nodes"] = [n for n in view["nodes"] if visible.node(sources, n["node"])]
        shown.append(view)
    return reply({"runs": shown, "limit": limit, "offset": offset})


@require(Role.VIEWER)
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
    visible = scoping.RunScope(_caller(request).scope, _handle(request))
    seen, sources = (
        (False, None)
        if found is None
        else visible.run(found.source, [n.node for n in found.nodes], found.source_name)
    )
    if found is None or not seen:
        return error(404, f"no run {text}")  # out of scope reads as absent: nothing leaks
    view = views.run(found)
    view["nodes"] = [n for n in view["nodes"] if visible.node(sources, n["node"])]
    view["plan"] = visible.plan(sources, view["plan"])
    return reply(view)


@require(Role.VIEWER)
async def drift(request: Request) -> Response:
    scope = _caller(request).scope
    shown = [
        n
        for n in _handle(request).drift()
        if scope.has_source(n.source) and scope.has_node(n.labels)
    ]
    return reply({"nodes": [views.drift(n) for n in shown]})


@require(Role.OPERATOR)
async def reconcile(request: Request) -> Response:
    body = await read_json_object(request)
    unknown = set(body) - {"source"}
    if unknown:
        return error(400, f"unknown field(s): {', '.join(sorted(unknown))}")
    source = body.get("source")
    if source is not None and not isinstance(source, str):
        return error(400, "source must be a source's name or null")
    handle = _handle(request)
    caller = _caller(request)
    if caller.scope.nodes is not None:
        # A reconcile plans (and in auto mode applies) every node of its source.
        return error(
            403,
            f"token {caller.name!r} is limited to nodes by labels; a reconcile covers "
            "every node of a source, so it cannot trigger one",
        )
    names = [s.name for s in handle.sources() if caller.scope.has_source(s.name)]
    if source is not None and source not in names:
        return error(404, f"no source named {source!r}")
    targets: list[str | None] = [source]
    if source is None and caller.scope.sources is not None:
        targets = list(names)  # "every source" means every source the token sees
        if not targets:
            # A 202 would say something was queued; the scope names no configured source.
            return error(404, f"none of token {caller.name!r}'s sources is configured")
    try:
        for target in targets:
            await handle.trigger(target, reason="api", actor=caller.name)
    except ControllerStopping as exc:
        return error(503, str(exc), {"Retry-After": "5"})
    log.info("reconcile of %s requested by %s", source or "every source", caller.name)
    return reply({"queued": True, "source": source}, 202)


@require(Role.VIEWER)
async def approvals(request: Request) -> Response:
    scope = _caller(request).scope
    shown = [a for a in _handle(request).approvals() if scoping.approval_visible(scope, a)]
    return reply({"approvals": [views.approval(a) for a in shown]})


@require(Role.APPROVER)
async def approve(request: Request) -> Response:
    approval_id = request.path_params["approval_id"]
    caller = _caller(request)
    handle = _handle(request)
    pending = _pending(handle, approval_id)
    refused = _out_of_scope(caller, approval_id, pending)
    if refused is not None:
        return refused
    tokens: TokenTable = request.app.state.tokens
    if tokens.open and pending is not None and pending.required > 1:
        # Without tokens every caller is the same anonymous approver, who counts once.
        return error(
            409,
            f"approval {approval_id} needs {pending.required} approvals from different "
            "tokens, and this API has no tokens configured: add server.tokens (one per "
            "approver) and approve with them",
        )
    # Shielded: once approved, the apply must not be cancelled half-way because the client
    # hung up or the server is stopping; the loop finishes (or rolls back) it.
    task = asyncio.ensure_future(handle.approve(approval_id, caller.name, caller.identities))
    task.add_done_callback(_log_failure)
    try:
        run_id = await asyncio.shield(task)
    except UnknownApproval:
        return error(404, f"no pending approval {approval_id!r}")
    except ApprovalRefused as exc:
        return error(403, str(exc))
    except ApprovalSuperseded as exc:
        return error(409, str(exc))
    except FazaiError as exc:
        return _refused(exc)
    if run_id is None:
        now = _pending(handle, approval_id) or pending
        assert now is not None  # it was pending before, and still is (not applied)
        # The same token approving again counts once: "counted" says whether this did.
        counted = pending is None or caller.name not in pending.approved_by
        log.info("approval %s approved by %s: waiting for more", approval_id, caller.name)
        answer = {"run_id": None, "approval": approval_id, "counted": counted}
        return reply({**answer, **views.approval_count(now)}, 202)
    log.info("approval %s approved by %s: run %s", approval_id, caller.name, run_id)
    return reply({"run_id": run_id, "approval": approval_id})


@require(Role.APPROVER)
async def abort(request: Request) -> Response:
    approval_id = request.path_params["approval_id"]
    caller = _caller(request)
    handle = _handle(request)
    refused = _out_of_scope(caller, approval_id, _pending(handle, approval_id))
    if refused is not None:
        return refused
    try:
        await handle.abort(approval_id, caller.name)
    except UnknownApproval:
        return error(404, f"no pending approval {approval_id!r}")
    except FazaiError as exc:
        return _refused(exc)
    log.info("approval %s aborted by %s", approval_id, caller.name)
    return reply({"aborted": approval_id})


def _pending(handle: ControllerHandle, approval_id: str) -> PendingApproval | None:
    return next((a for a in handle.approvals() if a.id == approval_id), None)


def _out_of_scope(
    caller: Caller, approval_id: str, pending: PendingApproval | None
) -> Response | None:
    if pending is None:
        return None  # the handle answers: unknown (404)
    reason = scoping.approval_refusal(caller.scope, pending)
    if reason is None:
        return None
    return error(403, f"approval {approval_id} is outside token {caller.name!r}'s scope: {reason}")


def _int_param(request: Request, name: str, default: int, low: int, high: int | None) -> int:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    value = whole_number(text, low, MAX_ID if high is None else high)
    if value is None:
        bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise HTTPException(400, f"{name} must be a whole number {bounds}")
    return value


def _log_failure(task: asyncio.Future[int | None]) -> None:
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


def _caller(request: Request) -> Caller:
    caller: Caller = request.state.caller
    return caller
