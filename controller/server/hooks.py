"""POST /hooks/{github,gitlab,gitea}: push webhooks that start a reconcile at once.

Authenticated by the forge's signature (HMAC of the body, or GitLab's shared token) with
the secret from ``server.webhooks``, not by a bearer token; a forge with no secret
configured is refused (404). Answers: 202 when a source follows the pushed branch (its
reconcile is queued), 200 ``{"ignored": reason}`` for an authentic delivery with nothing
to do (a ping, a tag push, a branch nobody follows), 401 for a missing or wrong signature,
409 for a delivery already received.

The headers are judged before the body is read (no signature header: 401; not a push
event: 200 ignored), and at most ``BODY_READERS`` webhook bodies are read at once (503
with ``Retry-After`` beyond that, once a short wait for a slot has passed): an
unauthenticated client can neither hold many connections nor many 25 MiB buffers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from controller import secrets
from controller.forges import webhooks
from controller.reconcile.handle import ControllerHandle
from controller.secrets import Secret
from controller.server.replies import error, log, read_body, reply
from controller.server.settings import ServerSettings

MAX_WEBHOOK_BODY = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB
BODY_READERS = 4  # webhook bodies read at once: at most 100 MiB held for them
SLOT_WAIT = 2.0  # seconds a delivery waits for a reader's slot before a 503


class HookSecrets:
    """The webhook secrets, read when the app is built so a missing one stops the start."""

    def __init__(self, settings: ServerSettings) -> None:
        self._secrets: dict[str, Secret] = {
            hook.forge: secrets.resolve(
                hook.ref.as_mapping(), "server", f"webhooks.{hook.forge}.secretRef"
            )
            for hook in settings.webhooks
        }
        self.guard = webhooks.ReplayGuard()
        self.readers = asyncio.Semaphore(BODY_READERS)

    def get(self, forge: str) -> Secret | None:
        return self._secrets.get(forge)


def receiver(forge: str) -> Callable[[Request], Awaitable[Response]]:
    async def receive(request: Request) -> Response:
        return await _receive(forge, request)

    return receive


async def _receive(forge: str, request: Request) -> Response:
    hooks: HookSecrets = request.app.state.hooks
    secret = hooks.get(forge)
    if secret is None:
        return error(404, f"webhooks from {forge} are not configured (server.webhooks.{forge})")
    # Answered with the body unread: the connection closes after the answer.
    unread = {"Connection": "close"}
    try:
        webhooks.check_headers(forge, request.headers, secret)
    except webhooks.PushIgnored as exc:
        return reply({"ignored": exc.reason}, 200, unread)
    except webhooks.WebhookRefused as exc:
        log.warning("%s webhook refused (%s): %s", forge, exc.status_code, exc.reason)
        return error(exc.status_code, exc.reason, unread)
    try:
        async with asyncio.timeout(SLOT_WAIT):
            await hooks.readers.acquire()
    except TimeoutError:
        log.warning("%s webhook refused (503): %d bodies already being read", forge, BODY_READERS)
        return error(503, "too many webhook deliveries at once", {"Retry-After": "5", **unread})
    try:
        body = await read_body(request, MAX_WEBHOOK_BODY)
    finally:
        hooks.readers.release()
    try:
        # The guard is given to parse_push, which records the delivery only once the
        # signature is verified: forged requests can neither fill it nor block a genuine
        # delivery by using its id first.
        push = webhooks.parse_push(forge, request.headers, body, secret, guard=hooks.guard)
    except webhooks.PushIgnored as exc:  # authentic, but a ping, a tag, a deletion...
        return reply({"ignored": exc.reason}, 200)
    except webhooks.WebhookRefused as exc:
        log.warning("%s webhook refused (%s): %s", forge, exc.status_code, exc.reason)
        # A missing (401) or wrong (403) signature both mean: not authenticated.
        status = 401 if exc.status_code == 403 else exc.status_code
        return error(status, exc.reason)
    if not push.branch:
        return reply({"ignored": "the push is not to a branch"}, 200)
    handle: ControllerHandle = request.app.state.handle
    for location in push.location_urls:
        if await handle.notify_push(location, push.branch, push.revision):
            log.info("%s push to %s of %s: reconcile queued", forge, push.branch, location)
            return reply({"accepted": True, "location": location, "branch": push.branch}, 202)
    return reply({"ignored": f"no source follows branch {push.branch} of this repository"}, 200)
