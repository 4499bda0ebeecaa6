"""The notifier: events in, notices out to every configured target.

``Notifier(settings, handle).run(stop)`` subscribes to the controller's event bus, turns
events into notices (:mod:`controller.notify.policy`, which remembers what was said in a
file next to the state store) and hands each notice to the per-target workers of
:mod:`controller.notify.delivery`. Reading events never waits for a send: a slow or
failing target only delays its own queue. On ``stop`` the workers get a short grace period
to finish what is queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import httpx

from controller.events import Event
from controller.notify import dedup
from controller.notify.delivery import Delivery, Sleep
from controller.notify.notice import Notice
from controller.notify.policy import Policy
from controller.notify.senders import sender_for
from controller.notify.settings import NotifySettings
from controller.reconcile.handle import ControllerHandle

log = logging.getLogger(__name__)

GRACE_S = 5.0


class Notifier:
    def __init__(
        self,
        settings: NotifySettings,
        handle: ControllerHandle,
        *,
        state_file: Path | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        grace: float = GRACE_S,
    ) -> None:
        """``state_file``: where what was notified is remembered (default: beside the
        state store, ``<store>.notify.json``); ``transport``/``sleep``: seams for tests."""
        self.settings = settings
        self.handle = handle
        self.state = dedup.DedupState(state_file or dedup.default_path(handle.store.path))
        self.policy = Policy(handle, self.state)
        self._transport = transport
        self._sleep = sleep
        self._grace = grace
        self.deliveries: list[Delivery] = []

    async def run(self, stop: asyncio.Event) -> None:
        if not self.settings.targets:
            return
        self.deliveries = [
            Delivery(t, sender_for(t, self._transport), sleep=self._sleep)
            for t in self.settings.targets
        ]
        workers = [
            asyncio.create_task(d.run(), name=f"notify-{d.target.name}") for d in self.deliveries
        ]
        try:
            async with self.handle.events.subscribe() as queue:
                while not stop.is_set():
                    getting = asyncio.ensure_future(queue.get())
                    stopping = asyncio.ensure_future(stop.wait())
                    done, _ = await asyncio.wait(
                        {getting, stopping}, return_when=asyncio.FIRST_COMPLETED
                    )
                    stopping.cancel()
                    if getting not in done:
                        getting.cancel()
                        break
                    await self._handle(getting.result())
        finally:
            await self._finish(workers)

    async def _handle(self, event: Event) -> None:
        try:
            notices = await self.policy.notices(event)
        except Exception:
            # A malformed event or a bug must not stop notifications for good.
            log.exception("notifications: cannot handle event %s (%s)", event.id, event.type)
            return
        for notice in notices:
            self.dispatch(notice)

    def dispatch(self, notice: Notice) -> int:
        """Queue ``notice`` on every target that takes its kind; returns how many."""
        taken = sum(1 for d in self.deliveries if d.offer(notice))
        log.info("notification %s: %s (to %d target(s))", notice.kind.value, notice.title, taken)
        return taken

    async def _finish(self, workers: list[asyncio.Task[None]]) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._grace):
                await asyncio.gather(*(d.idle() for d in self.deliveries))
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        left = sum(d.pending for d in self.deliveries)
        if left:
            log.warning("notifications: %d notice(s) not sent before stopping", left)
