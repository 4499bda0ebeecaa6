"""Per-target delivery: retries with backoff, permanent failures, the rate limit, a bounded
queue. The sender here is a stand-in; real HTTP and SMTP are in their own tests."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from controller.notify.delivery import Delivery, TokenBucket
from controller.notify.notice import Notice
from controller.notify.senders import DeliveryError
from controller.notify.settings import NoticeKind, RateLimit, Retry, SecretRef, WebhookTarget


class FakeTime:
    """A monotonic clock and a sleep that moves it, so waits are measured, not waited."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 3))
        self.now += seconds
        await asyncio.sleep(0)


class Sender:
    def __init__(self, failures: list[DeliveryError | None]) -> None:
        self.failures = failures
        self.sent: list[str] = []
        self.calls = 0
        self.closed = False

    async def send(self, notice: Notice) -> None:
        self.calls += 1
        failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise failure
        self.sent.append(notice.title)

    async def close(self) -> None:
        self.closed = True


def notice(title: str, kind: NoticeKind = NoticeKind.DRIFT) -> Notice:
    return Notice(kind, title, "", datetime(2025, 3, 1, tzinfo=UTC))


def target(**options: object) -> WebhookTarget:
    return WebhookTarget(name="hook", url=SecretRef(env="X"), **options)  # type: ignore[arg-type]


async def drain(delivery: Delivery) -> None:
    task = asyncio.create_task(delivery.run())
    try:
        await asyncio.sleep(0)
        async with asyncio.timeout(5):
            await delivery.idle()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def unavailable(after: float | None = None) -> DeliveryError:
    return DeliveryError("hook", "HTTP 503", retryable=True, retry_after=after)


async def test_a_retryable_failure_is_retried_with_doubling_backoff() -> None:
    time = FakeTime()
    sender = Sender([unavailable(), unavailable()])
    delivery = Delivery(target(retry=Retry(attempts=5, backoff=2.0)), sender, sleep=time.sleep)
    delivery.offer(notice("drift"))
    await drain(delivery)
    assert sender.sent == ["drift"] and sender.calls == 3
    assert time.sleeps == [2.0, 4.0]
    assert (delivery.stats.sent, delivery.stats.retried, delivery.stats.failed) == (1, 2, 0)
    assert sender.closed


async def test_retry_after_is_honoured_and_attempts_run_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    time = FakeTime()
    sender = Sender([unavailable(30.0), unavailable(), unavailable()])
    delivery = Delivery(
        target(retry=Retry(attempts=3, backoff=1.0, max_backoff=20.0)), sender, sleep=time.sleep
    )
    delivery.offer(notice("drift"))
    delivery.offer(notice("next"))
    await drain(delivery)
    assert time.sleeps == [20.0, 2.0]  # Retry-After 30 capped at maxBackoff
    assert sender.sent == ["next"]  # the first was given up on, the next still went
    assert delivery.stats.failed == 1
    assert "gave up on 'drift' after 3 attempt(s): HTTP 503" in caplog.text


async def test_a_permanent_failure_is_not_retried() -> None:
    time = FakeTime()
    sender = Sender([DeliveryError("hook", "HTTP 404 Not Found", retryable=False)])
    delivery = Delivery(target(), sender, sleep=time.sleep)
    delivery.offer(notice("drift"))
    await drain(delivery)
    assert sender.calls == 1 and time.sleeps == [] and delivery.stats.failed == 1


async def test_a_send_that_hangs_is_cut_by_the_timeout_and_retried() -> None:
    class Hanging(Sender):
        async def send(self, notice: Notice) -> None:
            self.calls += 1
            if self.calls == 1:
                await asyncio.sleep(60)
            self.sent.append(notice.title)

    sender = Hanging([])
    delivery = Delivery(target(timeout=0.05, retry=Retry(backoff=0.01)), sender, overrun=0.05)
    delivery.offer(notice("drift"))
    await drain(delivery)
    assert sender.sent == ["drift"] and delivery.stats.retried == 1


async def test_the_rate_limit_spaces_messages_out() -> None:
    time = FakeTime()
    sender = Sender([])
    delivery = Delivery(
        target(rate_limit=RateLimit(messages=3, per=60.0)), sender, sleep=time.sleep
    )
    delivery._bucket = TokenBucket(3, 60.0, sleep=time.sleep, clock=time.clock)
    for n in range(5):
        delivery.offer(notice(f"n{n}"))
    await drain(delivery)
    assert sender.sent == ["n0", "n1", "n2", "n3", "n4"]
    assert time.sleeps == [20.0, 20.0]  # a burst of 3, then one every 20 s
    assert delivery.stats.rate_limited == 2


def test_a_full_queue_drops_the_oldest_and_kinds_are_filtered() -> None:
    delivery = Delivery(
        target(events=frozenset({NoticeKind.DRIFT, NoticeKind.RESOLVED})),
        Sender([]),
        queue_size=2,
    )
    assert not delivery.offer(notice("applied", NoticeKind.APPLIED))
    for n in range(3):
        assert delivery.offer(notice(f"n{n}"))
    assert delivery.pending == 2 and delivery.stats.dropped == 1
