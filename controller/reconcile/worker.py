"""A source's worker: takes the wanted reconcile, runs it, keeps the source's status.

One worker per source runs its reconciles one after the other (a source never
reconciles concurrently with itself); nodes shared with other sources are protected by
the node locks. A failure is shown in the status and published as ``source.error``,
and retried as its error says (:func:`controller.errors.retry_decision`): a temporary
one (git remote, node or firewall down, 5xx) with exponential backoff, or after the wait
the other side asked for (``Retry-After``); a permanent one (refused credentials, a host
key or certificate that does not verify) only at the backoff ceiling, said once in the
log, and at once when a new commit arrives; an invalid commit or a refused signature
waits for the next commit. A node that refused us for good is remembered on its own
(:mod:`~controller.reconcile.refusals`): it is not read again at the pace another node's
temporary failure sets. Any other exception of a pass (a locked state store, a bug) goes
the same way as a temporary failure, so the source is never left dead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from controller.engine.prune import Pruning
from controller.errors import (
    FazaiError,
    InvalidInputError,
    RetryDecision,
    SourceError,
    StoreError,
    retry_decision,
)
from controller.events import EventType, Publish
from controller.model.state import DesiredState
from controller.pipeline import desired, source, writes
from controller.reconcile import passes
from controller.reconcile.actors import Actors
from controller.reconcile.approvals import Approvals
from controller.reconcile.backoff import Backoff
from controller.reconcile.config import SourceConfig
from controller.reconcile.gitsource import GitSource
from controller.reconcile.handle import Mode, SourceStatus
from controller.reconcile.refusals import Refusals
from controller.reconcile.shared import Shared
from controller.reconcile.storethread import StoreThread
from controller.reconcile.wanted import Request, Wanted
from controller.settings.durations import format_seconds
from controller.source.signatures import SignaturePolicy
from controller.store import Trigger

log = logging.getLogger("fazai.reconcile")


class _Failure(Exception):
    """``retry``: what the cause says about retrying; None: not before a new commit.
    ``source``: the source itself failed (git), not a node."""

    def __init__(self, message: str, retry: RetryDecision | None, source: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.retry = retry
        self.source = source


class Cancellable(Protocol):
    def cancel(self) -> None: ...


# The loop's clock seam: (seconds, callback) -> a handle; tests record instead of waiting.
Schedule = Callable[[float, Callable[[], None]], Cancellable]


def _call_later(delay: float, callback: Callable[[], None]) -> Cancellable:
    return asyncio.get_running_loop().call_later(delay, callback)


def _now() -> datetime:
    return datetime.now(UTC)


class SourceWorker:
    def __init__(
        self,
        config: SourceConfig,
        shared: Shared,
        approvals: Approvals,
        cache_dir: Path,
        signatures: SignaturePolicy | None = None,
        *,
        schedule: Schedule = _call_later,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.config = config
        self.name = config.name
        self.shared = shared
        self.approvals = approvals
        self.git = GitSource(config, cache_dir, signatures)
        settings = shared.config
        self.wanted = Wanted(settings.settle)
        self.backoff = Backoff(settings.backoff_initial, settings.backoff_max)
        self.publish = shared.publisher(source=config.name)
        # The source's store calls, in order, off the event loop (see storethread).
        self.writer = StoreThread(config.name)
        self.revision: str | None = None  # the last commit reconciled
        self.head: str | None = None  # the branch's head when last fetched
        self.accepted: str | None = None  # the last head whose signature was accepted
        self.signer: str | None = None  # who signed it (None: signatures not checked)
        self.signer_identity = ""  # the signer's principal or user id, for the actors
        self.last_sync: datetime | None = None
        self.error: str | None = None
        self.refusal: str | None = None  # the head's signature refused: until a new head
        self.retry_at: datetime | None = None
        self.busy = False
        self.applying = False
        self.read_once = False
        self.passes = 0  # reconciles run (not the skipped ones)
        self.last_outcome: passes.PassOutcome | None = None
        self.schedule = schedule
        self.clock = clock
        self.retry_decision: RetryDecision | None = None  # of the failure backed off from
        self._retry: Cancellable | None = None
        self._refused: set[str] = set()
        self._said: str | None = None  # the permanent failure already logged as such
        self.refusals = Refusals()  # nodes that refused us for good, skipped for a while
        self.source_refused = False  # the backoff is from the source's own permanent failure
        self._skipped: dict[str, str] = {}  # the nodes the last pass skipped, as still refused

    # -- status ---------------------------------------------------------------------------

    def status(self) -> SourceStatus:
        return SourceStatus(
            name=self.name,
            location=self.git.shown,
            branch=self.config.branch,
            revision=self.revision,
            last_sync=self.last_sync,
            error=self.refusal or self.error,
            retry_at=self.retry_at,
            busy=self.busy,
        )

    @property
    def backing_off(self) -> bool:
        return self._retry is not None

    @property
    def backing_off_fast(self) -> bool:
        """Backing off from a temporary failure: its retry comes soon anyway. From a
        permanent one the triggers keep watching, so a new commit is tried at once."""
        return self.backing_off and not (self.retry_decision and self.retry_decision.permanent)

    @property
    def backing_off_refused(self) -> bool:
        """Backing off from a permanent failure of the source itself (git refused our
        credentials, no such branch): asking the same remote again before the ceiling
        (``git ls-remote`` at the poll pace) would only be refused again, so the poller
        waits for the retry at the ceiling; webhooks and watches still ask at once."""
        return self.backing_off and self.source_refused

    # -- requests -------------------------------------------------------------------------

    def request(self, request: Request) -> bool:
        """Ask for a reconcile; False when merged into one already waiting, or stopping."""
        if self.shared.stopping:
            return False
        fresh = self.wanted.put(request)
        self.publish(
            EventType.RECONCILE_QUEUED,
            reason=request.reason,
            revision=request.revision,
            coalesced=not fresh,
        )
        return fresh

    async def run(self) -> None:
        """Reconcile what is wanted, forever (until cancelled)."""
        while True:
            request = await self.wanted.take()
            await self.reconcile(request)

    # -- one reconcile --------------------------------------------------------------------

    async def reconcile(self, request: Request) -> passes.PassOutcome | None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self.busy = True
        self._skipped = {}
        try:
            outcome = await self._reconcile(request)
        except _Failure as failure:
            self._failed(failure.message, failure.retry, source=failure.source)
            return None
        except FazaiError as exc:  # the store locked by another process, a pass's own
            self._failed(str(exc), retry_decision(exc))
            return None
        except Exception as exc:  # a bug or an unmapped failure: retried, never fatal
            log.exception("%s: reconcile failed unexpectedly", self.name)
            self._failed(f"reconcile failed unexpectedly ({type(exc).__name__}; see the log)",
                         retry_decision(exc))  # fmt: skip
            return None
        finally:
            self.busy = False
            self.applying = False
            self.read_once = True
        if outcome is not None:
            self.last_outcome = outcome
            if outcome.problems:
                # Only nodes skipped as still refused: said when they refused, not again.
                again = len(outcome.problems) == len(self._skipped)
                self._failed(
                    "; ".join(outcome.problems), outcome.retry or _UNCLASSIFIED, again=again
                )
            else:
                self._succeeded()
        return outcome

    async def _reconcile(self, request: Request) -> passes.PassOutcome | None:
        queued = time.monotonic() - request.queued_at if request.queued_at else 0.0
        try:
            head = await asyncio.to_thread(self.git.fetch)
        except SourceError as exc:
            raise _Failure(str(exc), retry_decision(exc), source=True) from exc
        self.head = head
        if not request.force and head == self.revision and self.error is None:
            log.debug("%s: %s already reconciled", self.name, head[:12])
            return None
        target = await self._admit(head, request)
        if target is None:
            return None
        log.info(
            "%s: reconciling %s (%s x%d, queued %.3f s)",
            self.name, target[:12], request.reason, request.count, queued,
        )  # fmt: skip
        try:
            state = await asyncio.to_thread(lambda: source.load(self.git.tree(target)))
        except InvalidInputError as exc:
            errors = [str(d) for d in exc.diagnostics if d.is_error]
            shown = "; ".join(errors[:3])
            if len(errors) > 3:
                shown += f" (and {len(errors) - 3} more)"
            self.revision = target
            raise _Failure(f"commit {target[:12]} is invalid: {shown}", None) from exc
        except SourceError as exc:
            raise _Failure(str(exc), retry_decision(exc), source=True) from exc
        self.passes += 1
        try:
            author, committer = await asyncio.to_thread(self.git.people, target)
        except SourceError:
            author, committer = "unknown author", ""
        actor = Actors(
            tuple(sorted(request.actors)), author, committer, self.signer, self.signer_identity
        )
        skip = await asyncio.to_thread(
            self.refusals.skip, state.nodes, request.trigger, self.clock()
        )
        self._skipped = skip
        read: dict[str, str | None] = {}  # node -> its permanent failure, None: read or temporary
        async with self.shared.locks.hold(state.nodes):
            blocked = await self._recover(state)
            pruning = await self._pruning(state)
            outcome = await passes.run_pass(
                self.shared,
                self.approvals,
                self.config,
                pruning.state if pruning is not None else state,
                request.trigger,
                self._reads(read),
                pruning=pruning,
                blocked=blocked,
                begin_apply=self._begin_apply,
                writer=self.writer,
                actor=actor,
                skip=skip,
            )
            self.shared.settle(self.name)
        await self._name_runs(outcome.plan_run, outcome.apply_run)
        until = self.clock() + timedelta(seconds=self.backoff.maximum)
        for node, refused in read.items():
            if refused is None:
                self.refusals.forget(node)
            elif node in state.nodes:
                await asyncio.to_thread(self.refusals.refused, state.nodes[node], refused, until)
                log.warning(
                    "%s: %s refused us (%s): not read again before %s, unless its Node "
                    "document or what it references changes, or a reconcile is asked by hand",
                    self.name, node, refused, until.strftime("%H:%M:%S %Z"),
                )  # fmt: skip
        self.revision = target
        return outcome

    async def _name_runs(self, *runs: int | None) -> None:
        """Record the source's name on the pass's runs: in a monorepo several sources
        share a repository and branch, and API scopes need to tell their runs apart (a
        run not named, e.g. while in progress, is judged by its location: visible only
        to tokens that see every source it may be)."""
        try:
            await self.writer.call(
                self.shared.store.name_run_source, [r for r in runs if r is not None], self.name
            )
        except StoreError as exc:
            log.warning("%s: could not record the source of runs %s: %s", self.name, runs, exc)

    def _reads(self, read: dict[str, str | None]) -> Publish:
        """The source's publish, noting each node's read on the way: whether it failed
        for good (``node.read`` says ``permanent``)."""

        def publish(type: EventType, **data: Any) -> Any:
            if type is EventType.NODE_READ and isinstance(data.get("node"), str):
                failed = data.get("permanent") and data.get("error")
                read[data["node"]] = str(data["error"]) if failed else None
            return self.publish(type, **data)

        return publish

    async def _admit(self, head: str, request: Request) -> str | None:
        """The commit to reconcile: the head, or with a refused signature the last
        accepted head for checks that re-plan (drift, API, retries), or nothing."""
        try:
            verdict = await asyncio.to_thread(self.git.verify, head)
        except SourceError as exc:
            raise _Failure(str(exc), retry_decision(exc), source=True) from exc
        if verdict is None or verdict.accepted:
            if verdict is not None:
                log.info("%s: %s: %s", self.name, head[:12], verdict.reason)
            self.signer = verdict.reason if verdict is not None else None
            self.signer_identity = verdict.signer if verdict is not None else ""
            self.accepted = head
            self.refusal = None
            return head
        self.refusal = f"commit {head[:12]} not reconciled: {verdict.reason}"
        if head not in self._refused:
            self._refused.add(head)
            self.publish(EventType.SIGNATURE_REFUSED, revision=head, reason=verdict.reason)
            log.warning("%s: %s", self.name, self.refusal)
        if request.force and self.accepted is not None and self.accepted != head:
            return self.accepted
        return None

    async def applied(self) -> None:
        """Returns once no apply of this source is in flight."""
        while self.applying:
            await asyncio.sleep(0.05)

    def _begin_apply(self) -> bool:
        # Checked and set with no await in between: shutdown sees either "not applying,
        # may cancel" or "applying, must wait".
        if self.shared.stopping:
            return False
        self.applying = True
        return True

    async def _recover(self, state: DesiredState) -> dict[str, str]:
        """Roll back what is left open on these nodes: a dead controller's transactions,
        and this process's own whose rollback failed (retried each pass); nodes still
        open must not be written. A node in ``detect`` mode is never written, not even to
        roll back another's transaction; one whose transaction a live process runs is
        left to it (see ``recover``)."""
        store = self.shared.store
        open_now = [t for t in store.open_transactions() if t.node in state.nodes]
        nodes = set()
        for txn in open_now:
            if self.config.mode_for(txn.node) is Mode.DETECT:
                log.warning(
                    "%s: %s: open transaction %d left as it is: detect mode never writes "
                    "(a writer's next start rolls it back)",
                    self.name, txn.node, txn.id,
                )  # fmt: skip
                continue
            nodes.add(txn.node)
        if nodes:
            only = DesiredState(
                state.source, {n: state.nodes[n] for n in nodes}, state.resources, state.warnings
            )
            for line in await writes.recover(only, store):
                log.warning("%s: recovery: %s", self.name, line)
        # Closed meanwhile by us, or by the live process that was running it.
        still = store.open_transactions()
        self.shared.interrupted.intersection_update({t.id for t in still})
        # A detect-mode node is only read: an open transaction does not stop that.
        return {
            t.node: f"transaction {t.id} is still open (being rolled back, or run by another "
            "live process); retried"
            for t in still
            if t.node in nodes
        }

    async def _pruning(self, state: DesiredState) -> Pruning:
        store = self.shared.store
        owned = await self.writer.call(lambda: {node: store.owned(node) for node in state.nodes})
        pruning = desired.prepare(state, owned, self.config.prune)
        for note in pruning.notes:
            log.warning("%s: prune: %s", self.name, note)
        return pruning

    # -- results --------------------------------------------------------------------------

    def _succeeded(self) -> None:
        self.source_refused = False
        self.error = None
        self.retry_at = None
        self.retry_decision = None
        self._said = None
        self.backoff.reset()
        self.last_sync = self.clock()

    def _failed(
        self,
        message: str,
        retry: RetryDecision | None,
        *,
        source: bool = False,
        again: bool = False,
    ) -> None:
        delay: float | None = None
        self.retry_decision = retry
        self.source_refused = source and retry is not None and retry.permanent
        if retry is not None and not self.shared.stopping:
            delay = self.backoff.after(retry)
            self.retry_at = self.clock() + timedelta(seconds=delay)
            self._retry = self.schedule(delay, self._retry_now)
        else:
            self.retry_at = None
        permanent = retry is not None and retry.permanent
        if permanent:
            # Said in the status for as long as it lasts; in the log once.
            self.error = (
                f"{message} (permanent: retried every {format_seconds(self.backoff.maximum)}, "
                "or at once on a new commit)"
            )
        else:
            self.error = message
        self.publish(
            EventType.SOURCE_ERROR,
            message=message,
            retry_in=round(delay, 3) if delay is not None else None,
            permanent=permanent,
        )
        if permanent and (self._said == message or again):
            log.debug("%s: still failing: %s", self.name, message)
            return
        self._said = message if permanent else None
        if permanent:
            log.warning(
                "%s: %s; %s cannot succeed by retrying: retrying only every %s, or at once "
                "when a new commit arrives",
                self.name, message, retry.reason if retry else "it",
                format_seconds(self.backoff.maximum),
            )  # fmt: skip
            return
        log.warning("%s: %s%s", self.name, message, f"; retrying in {delay:.1f} s" if delay else "")

    def crashed(self, exc: BaseException) -> float:
        """The worker's task itself failed (outside a reconcile's own handling): mark the
        source errored, and return how long to wait before it is restarted."""
        self.busy = self.applying = False
        self.read_once = True
        delay = self.backoff.next()
        self.retry_at = self.clock() + timedelta(seconds=delay)
        self.error = f"the source's worker failed ({type(exc).__name__}; see the log); restarted"
        self.publish(EventType.SOURCE_ERROR, message=self.error, retry_in=round(delay, 3),
                     permanent=False)  # fmt: skip
        return delay

    def _retry_now(self) -> None:
        self._retry = None
        self.request(Request("retry", Trigger.SCHEDULE, force=True))

    def close(self) -> None:
        """Once its task is done: waits for its store calls still queued."""
        self.writer.close()

    def cancel_retry(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None


_UNCLASSIFIED = RetryDecision(False, None, "unclassified")
