"""The worker's per-model gate: capacity, abort while waiting, arrival order, resizing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from fazai_native import errors
from fazai_native.runtime import Slots


def wait_for(condition: Callable[[], bool], seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.002)


def test_waiters_get_their_place_in_arrival_order() -> None:
    slots = Slots(1)
    slots.acquire(threading.Event())  # the holder
    order: list[str] = []

    def take(name: str) -> None:
        slots.acquire(threading.Event())
        order.append(name)
        slots.release()

    threads = []
    for name in ("first", "second", "third"):
        thread = threading.Thread(target=take, args=(name,))
        thread.start()
        threads.append(thread)
        wait_for(lambda: len(slots._waiting) == len(threads))  # each in line before the next
    slots.release()
    for thread in threads:
        thread.join(5)
    assert order == ["first", "second", "third"]
    assert slots.taken == 0


def test_an_abort_ends_the_wait_and_lets_the_next_in_line_through() -> None:
    slots = Slots(1)
    slots.acquire(threading.Event())
    abort = threading.Event()
    refused: list[BaseException] = []

    def wait_then_abort() -> None:
        try:
            slots.acquire(abort)
        except errors.Aborted as exc:
            refused.append(exc)

    first = threading.Thread(target=wait_then_abort)
    first.start()
    wait_for(lambda: len(slots._waiting) == 1)
    got = threading.Event()
    second = threading.Thread(target=lambda: (slots.acquire(threading.Event()), got.set()))
    second.start()
    wait_for(lambda: len(slots._waiting) == 2)
    abort.set()
    first.join(5)
    assert len(refused) == 1 and not got.is_set()  # the aborted one left; the place is held
    slots.release()
    assert got.wait(5)
    second.join(5)


@pytest.mark.parametrize("grow", [True, False])
def test_a_resize_applies_to_those_already_waiting(grow: bool) -> None:
    slots = Slots(1)
    slots.acquire(threading.Event())
    got = threading.Event()
    waiter = threading.Thread(target=lambda: (slots.acquire(threading.Event()), got.set()))
    waiter.start()
    wait_for(lambda: len(slots._waiting) == 1)
    if grow:
        slots.resize(2)
        assert got.wait(5)
    else:
        slots.resize(1)
        time.sleep(0.1)
        assert not got.is_set()
        slots.release()
        assert got.wait(5)
    waiter.join(5)
