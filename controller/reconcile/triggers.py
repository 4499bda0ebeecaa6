"""What asks a source for a reconcile besides webhooks and the API: polling the remote,
watching a working copy, and the periodic drift check. Each is a task the controller
starts per source and cancels when it stops."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from pathlib import Path

import watchfiles

from controller.errors import SourceError
from controller.reconcile.wanted import Request
from controller.reconcile.worker import SourceWorker
from controller.store import Trigger

log = logging.getLogger("fazai.reconcile")

# A commit in a working copy changes these (relative to the git directory); everything
# else there (objects, index, logs, lock files) changes with it or without a commit.
_REF_FILES = ("HEAD", "packed-refs")


async def poll(worker: SourceWorker, interval: float) -> None:
    """Every ``interval`` seconds ask the remote for the branch's head (``git
    ls-remote``, no objects transferred) and reconcile when it moved. Skipped while the
    source backs off from a temporary failure: its retry is due soon anyway. While it
    backs off from a permanent failure, polling goes on (a new commit, perhaps the fix, is
    reconciled at once), unless the remote refuses ``ls-remote`` for good as well (our
    credentials refused): then it is not asked again before the retry at the ceiling,
    since each poll would be one more refused login. (A branch not pushed yet is a
    permanent failure too, but ``ls-remote`` works, and sees the branch appear.)"""
    refused = False  # ls-remote refused for good, while the source backs off from it
    while True:
        # A little jitter, so many sources on one server do not ask in lockstep.
        await asyncio.sleep(interval * (0.9 + 0.2 * random.random()))
        refused = refused and worker.backing_off_refused
        if worker.backing_off_fast or refused:
            continue
        if worker.busy or worker.wanted.pending is not None:
            continue
        try:
            head = await asyncio.to_thread(worker.git.remote_head)
        except SourceError as exc:
            log.debug("%s: poll failed: %s", worker.name, exc)
            refused = worker.backing_off_refused and not exc.retryable
            if not worker.backing_off:
                # The reconcile fails the same way, and reports it with backoff; one
                # already backing off keeps its pace (a refused key, at the ceiling).
                worker.request(Request("poll", Trigger.SCHEDULE, force=True))
            continue
        if head is not None and head != worker.head:
            worker.request(Request("poll", Trigger.SCHEDULE, head))


async def drift_check(worker: SourceWorker, interval: float) -> None:
    """Re-plan every ``interval`` seconds even when nothing was committed."""
    while True:
        await asyncio.sleep(interval)
        if worker.backing_off or worker.wanted.pending is not None:
            continue
        worker.request(Request("drift", Trigger.SCHEDULE, force=True))


def is_ref_change(git_dirs: Sequence[Path], path: str) -> bool:
    """Whether ``path`` (changed under one of ``git_dirs``) is HEAD or a ref: what a
    commit, a checkout, a reset or a fetch into the working copy changes."""
    changed = Path(path)
    if changed.name.endswith(".lock"):
        return False
    for root in git_dirs:
        try:
            relative = changed.relative_to(root)
        except ValueError:
            continue
        parts = relative.parts
        return bool(parts) and ((len(parts) == 1 and parts[0] in _REF_FILES) or parts[0] == "refs")
    return False


async def watch(worker: SourceWorker, stop: asyncio.Event) -> None:
    """Reconcile when a commit is made in the source's working copy. Uncommitted edits
    change no ref, so they do not trigger (the desired state is always a commit)."""
    dirs = await asyncio.to_thread(worker.git.watched_dirs)
    if not dirs:
        return

    def interesting(change: watchfiles.Change, path: str) -> bool:
        return is_ref_change(dirs, path)

    log.info("%s: watching %s for commits", worker.name, ", ".join(map(str, dirs)))
    # step: yield once 30 ms pass with no new change; debounce: at most 300 ms of
    # grouping. Both well inside the one-second budget from commit to reconcile start.
    async for _changes in watchfiles.awatch(
        *dirs,
        watch_filter=interesting,
        stop_event=stop,
        debounce=300,
        step=30,
        recursive=True,
    ):
        worker.request(Request("watch", Trigger.WATCH))
