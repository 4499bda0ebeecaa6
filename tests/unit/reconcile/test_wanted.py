"""Coalescing: a burst of notifications is one reconcile of the newest commit."""

from __future__ import annotations

import asyncio
import time

from controller.reconcile.wanted import Request, Wanted
from controller.store import Trigger


class Repo:
    """A branch whose head moves; a reconcile reads the head when it starts."""

    def __init__(self) -> None:
        self.head = 0
        self.reconciled: list[int] = []
        self.started: list[float] = []


async def worker(wanted: Wanted, repo: Repo, seconds: float) -> None:
    while True:
        await wanted.take()
        repo.started.append(time.monotonic())
        repo.reconciled.append(repo.head)
        await asyncio.sleep(seconds)  # the reconcile itself


def push() -> Request:
    return Request("webhook", Trigger.WEBHOOK)


async def test_fifty_notifications_are_one_reconcile_of_the_newest_commit() -> None:
    wanted, repo = Wanted(settle=0.2), Repo()
    task = asyncio.create_task(worker(wanted, repo, 0.05))
    try:
        fresh = []
        for commit in range(1, 51):
            repo.head = commit
            fresh.append(wanted.put(push()))
            await asyncio.sleep(0.001)
        await asyncio.sleep(1.2)
        assert repo.reconciled == [50]
        assert fresh.count(True) == 1  # the other 49 merged into the first
    finally:
        task.cancel()


async def test_notifications_during_a_reconcile_collapse_into_one_follow_up() -> None:
    wanted, repo = Wanted(settle=0.01), Repo()
    task = asyncio.create_task(worker(wanted, repo, 0.3))
    try:
        repo.head = 1
        wanted.put(push())
        await asyncio.sleep(0.1)  # the first reconcile is running now
        assert repo.reconciled == [1]
        for commit in range(2, 12):
            repo.head = commit
            wanted.put(push())
        await asyncio.sleep(0.7)
        assert repo.reconciled == [1, 11]
    finally:
        task.cancel()


async def test_a_lone_notification_starts_after_the_settle_time_only() -> None:
    wanted, repo = Wanted(settle=0.05), Repo()
    task = asyncio.create_task(worker(wanted, repo, 0.0))
    try:
        sent = time.monotonic()
        wanted.put(push())
        await asyncio.sleep(0.3)
        assert len(repo.started) == 1
        assert 0.04 <= repo.started[0] - sent < 0.5
    finally:
        task.cancel()


async def test_a_never_ending_burst_still_starts_within_the_cap() -> None:
    wanted, repo = Wanted(settle=0.05, settle_max=0.2), Repo()
    task = asyncio.create_task(worker(wanted, repo, 0.0))
    try:
        sent = time.monotonic()
        while time.monotonic() - sent < 0.5:
            repo.head += 1
            wanted.put(push())
            await asyncio.sleep(0.01)
        assert repo.started, "a burst longer than the cap must not starve the source"
        assert repo.started[0] - sent < 0.3
    finally:
        task.cancel()


def test_merged_requests_keep_force_the_count_and_the_first_time() -> None:
    clock = iter([1.0, 2.0, 3.0])
    wanted = Wanted(settle=0.1, clock=lambda: next(clock))
    assert wanted.put(Request("drift", Trigger.SCHEDULE, force=True))
    assert not wanted.put(Request("webhook", Trigger.WEBHOOK, "abc"))
    assert not wanted.put(Request("watch", Trigger.WATCH))
    merged = wanted.pending
    assert merged is not None
    assert (merged.reason, merged.trigger, merged.force) == ("watch", Trigger.WATCH, True)
    assert (merged.count, merged.queued_at) == (3, 1.0)


def test_merged_requests_keep_every_token_that_asked() -> None:
    wanted = Wanted(settle=0.1)
    assert wanted.put(Request("api", Trigger.API, force=True, actors=frozenset({"alice"})))
    assert not wanted.put(Request("webhook", Trigger.WEBHOOK, "abc"))
    assert not wanted.put(Request("api", Trigger.API, force=True, actors=frozenset({"bob"})))
    merged = wanted.pending
    assert merged is not None and merged.actors == {"alice", "bob"}
