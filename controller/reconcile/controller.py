"""The running controller: one worker per source, the triggers around them, and the
:class:`~controller.reconcile.handle.ControllerHandle` the HTTP API and CLI clients use.

Lifecycle: :meth:`Controller.start` starts the workers (each reconciles once at once, and
rolls back first what a killed controller left open on its nodes), the pollers, the
working-copy watches and the drift checks; :meth:`Controller.stop` stops accepting
triggers, lets the applies in flight finish (or roll back) within a grace period, and
cancels everything else (plans only read, so cutting them short is harmless).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from controller import providers
from controller.engine.prune import Pruning
from controller.errors import FazaiError
from controller.events import EventBus
from controller.model.state import DesiredState
from controller.pipeline import writes
from controller.reconcile import passes, triggers
from controller.reconcile.approvals import Approvals
from controller.reconcile.config import ControllerConfig
from controller.reconcile.handle import ControllerStopping, NodeDrift, PendingApproval, SourceStatus
from controller.reconcile.matching import branch_name, same_repository
from controller.reconcile.shared import Shared
from controller.reconcile.wanted import Request
from controller.reconcile.worker import SourceWorker
from controller.source.open import default_cache_dir
from controller.source.signatures import SignaturePolicy
from controller.store import StateStore, Trigger

log = logging.getLogger("fazai.reconcile")


class Controller:
    """Implements ControllerHandle. Create it inside a running event loop's lifetime
    (start/stop are coroutines); it does not own the store."""

    def __init__(
        self, config: ControllerConfig, store: StateStore, events: EventBus | None = None
    ) -> None:
        providers.load_all()  # the loop registers the platforms its sources' documents use
        self.config = config
        self.store = store
        self.events = events or EventBus()
        self.shared = Shared(config, self.events, store)
        self.approvals_registry = Approvals(self.shared, self._applied)
        self.cache_dir = config.cache_dir or default_cache_dir()
        self._policies: list[SignaturePolicy] = []
        self.workers: dict[str, SourceWorker] = {}
        self._worker_tasks: dict[str, asyncio.Task[None]] = {}
        self._trigger_tasks: list[asyncio.Task[None]] = []
        self._watch_stop = asyncio.Event()
        self._started = False
        # The nodes' SSH connections, kept from one pass to the next until stop().
        self._connections = contextlib.AsyncExitStack()
        for source in config.sources:
            policy = None
            if source.signatures is not None:
                policy = SignaturePolicy(
                    source.signatures.allowed_signers,
                    source.signatures.gpg_keys,
                    timeout=source.timeout,
                )
                self._policies.append(policy)
            self.workers[source.name] = SourceWorker(
                source, self.shared, self.approvals_registry, self.cache_dir, policy
            )

    # -- lifecycle ------------------------------------------------------------------------

    def _prepare(self) -> None:
        for policy in self._policies:
            policy.open()
        for run_id in self.store.close_abandoned_runs():
            log.warning(
                "run %d was left in progress by a process that is gone: interrupted", run_id
            )
        self.shared.interrupted = {t.id for t in self.store.open_transactions()}
        if self.shared.interrupted:
            log.warning(
                "%d open transaction(s) in the journal: each is rolled back before its node "
                "is written again, once its owner is gone (never in detect mode)",
                len(self.shared.interrupted),
            )

    async def start(self) -> None:
        """Start every source's worker and triggers; returns at once."""
        if self._started:
            raise RuntimeError("controller already started")
        self._started = True
        self._prepare()
        await self._connections.enter_async_context(providers.kept_connections())
        for name, worker in self.workers.items():
            self._worker_tasks[name] = asyncio.create_task(
                self._keep(worker), name=f"source-{name}"
            )
            worker.request(Request("start", Trigger.SCHEDULE, force=True))
            source = worker.config
            if source.poll > 0:
                self._spawn(triggers.poll(worker, source.poll), f"poll-{name}")
            if source.watch is not None:
                self._spawn(triggers.watch(worker, self._watch_stop), f"watch-{name}")
            if self.config.drift_check > 0:
                self._spawn(triggers.drift_check(worker, self.config.drift_check), f"drift-{name}")

    async def _keep(self, worker: SourceWorker) -> None:
        """Run a source's worker; should it fail (the worker handles a reconcile's own
        failures, so this is a bug), log it, show the source errored, and start it again
        after its backoff, with a reconcile: one source's crash never stops it for good."""
        while True:
            try:
                await worker.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("%s: the source's worker failed; restarting it", worker.name)
                delay = worker.crashed(exc)
            await asyncio.sleep(delay)
            worker.request(Request("restart", Trigger.SCHEDULE, force=True))

    def _spawn(self, coroutine: Any, name: str) -> None:
        task = asyncio.create_task(self._guard(coroutine, name), name=name)
        self._trigger_tasks.append(task)

    @staticmethod
    async def _guard(coroutine: Any, name: str) -> None:
        """A trigger that dies is logged; the loop and the other triggers go on."""
        try:
            await coroutine
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s stopped", name)

    async def run_once(self) -> int:
        """Reconcile every source once, now, and return diff(1)-style: 0 in sync (or
        converged), 1 drift left (detect/manual), 2 trouble."""
        self._prepare()
        try:
            code = 0
            async with providers.kept_connections():
                for worker in self.workers.values():
                    outcome = await worker.reconcile(Request("once", Trigger.CLI, force=True))
                    if worker.error or worker.refusal or outcome is None:
                        code = 2
                    elif outcome.drifted and code == 0:
                        code = 1
            return code
        finally:
            self._close()

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting triggers; let applies in flight finish within ``grace`` seconds
        (default: the config's shutdownGrace), then cancel what is left."""
        grace = self.config.shutdown_grace if grace is None else grace
        self.shared.stopping = True
        self._watch_stop.set()
        for task in self._trigger_tasks:
            task.cancel()
        for worker in self.workers.values():
            worker.cancel_retry()
        for name, task in self._worker_tasks.items():
            if not self.workers[name].applying:
                task.cancel()
        in_flight = [w for w in self.workers.values() if w.applying]
        waiting = {*(asyncio.create_task(w.applied()) for w in in_flight), *self.shared.applies}
        if waiting:
            log.info("waiting up to %.0f s for %d apply(s) in flight", grace, len(waiting))
            _, left = await asyncio.wait(waiting, timeout=grace)
            if left:
                log.error(
                    "grace period over: cancelling %d apply(s); their open transactions are "
                    "rolled back at the next start",
                    len(left),
                )
            for task in left:
                task.cancel()
        for task in [*self._worker_tasks.values(), *self.shared.applies]:
            task.cancel()
        everything = [*self._worker_tasks.values(), *self._trigger_tasks, *self.shared.applies]
        await asyncio.gather(*everything, return_exceptions=True)
        await self._connections.aclose()  # nothing reads or writes any more
        self._close()

    def _close(self) -> None:
        for worker in self.workers.values():
            worker.close()
        for policy in self._policies:
            policy.close()

    # -- ControllerHandle -----------------------------------------------------------------

    def ready(self) -> bool:
        return all(w.read_once for w in self.workers.values())

    def sources(self) -> Sequence[SourceStatus]:
        return [w.status() for w in self.workers.values()]

    def drift(self) -> Sequence[NodeDrift]:
        return sorted(self.shared.drift.values(), key=lambda d: (d.node, d.source))

    def approvals(self) -> Sequence[PendingApproval]:
        return self.approvals_registry.pending()

    async def trigger(
        self, source: str | None = None, reason: str = "api", actor: str = ""
    ) -> None:
        if source is not None and source not in self.workers:
            raise KeyError(source)
        if self.shared.stopping:
            raise ControllerStopping("the controller is stopping; nothing new is queued")
        asked = frozenset({actor}) if actor else frozenset()
        for name, worker in self.workers.items():
            if source is None or name == source:
                worker.request(Request(reason, Trigger.API, force=True, actors=asked))

    async def notify_push(self, location: str, branch: str, revision: str | None) -> bool:
        wanted = branch_name(branch)
        matched = False
        for worker in self.workers.values():
            if worker.config.branch != wanted or not same_repository(worker.config.url, location):
                continue
            matched = True
            if revision is not None and revision == worker.revision and worker.error is None:
                continue  # a replayed or late delivery of what is already reconciled
            worker.request(Request("webhook", Trigger.WEBHOOK, revision))
        return matched

    async def approve(
        self, approval_id: str, by: str, identities: Sequence[str] = ()
    ) -> int | None:
        return await self.approvals_registry.approve(approval_id, by, identities)

    async def abort(self, approval_id: str, by: str = "") -> None:
        self.approvals_registry.abort(approval_id, by)

    # -- internals ------------------------------------------------------------------------

    def _applied(
        self,
        source: str,
        state: DesiredState,
        result: writes.ApplyResult,
        pruning: Pruning | None,
    ) -> None:
        worker = self.workers.get(source)
        if worker is None:  # pragma: no cover - approvals come from workers
            return
        passes.record_applied(self.shared, source, worker.config.mode_for, result)
        self.shared.settle(source)
        try:
            self.store.name_run_source([result.run_id], source)
        except FazaiError as exc:
            log.warning("%s: could not record the source of run %d: %s", source, result.run_id, exc)
        if pruning is not None:
            from controller.engine import prune

            converged = [o.node for o in result.nodes if o.status.value == "converged"]
            try:
                prune.release(self.store, pruning.releases, converged, result.run_id)
            except FazaiError as exc:
                log.error(
                    "%s: releasing pruned objects of run %d failed: %s", source, result.run_id, exc
                )
