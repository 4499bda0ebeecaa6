"""Event ids are unique and increasing across restarts of the controller (issue 14)."""

from __future__ import annotations

from controller.events import EventBus, EventType


def test_a_new_bus_continues_above_the_ids_of_the_one_before() -> None:
    """Two processes, one after the other: before the fix both counted from 1, so a
    client resuming with the first one's last id missed the second one's first events."""
    first = EventBus()
    old = [first.publish(EventType.RECONCILE_QUEUED, source="s", n=i) for i in range(50)]
    second = EventBus()  # the restarted controller
    new = [second.publish(EventType.RUN_STARTED, source="s", n=i) for i in range(3)]
    assert new[0].id > old[-1].id
    assert [e.id for e in new] == [new[0].id + i for i in range(3)]
    assert second.history(after=old[-1].id) == new  # Last-Event-ID from the old process


def test_an_id_above_any_given_replays_what_is_kept() -> None:
    """An earlier process whose clock was ahead handed out higher ids: the client holding
    one still gets this process's events instead of nothing."""
    bus = EventBus(start=1000)
    kept = [bus.publish(EventType.RUN_STARTED, source="s") for _ in range(3)]
    assert bus.history(after=10**15) == kept
    assert bus.history(after=kept[-1].id) == []
    assert bus.history(after=kept[0].id) == kept[1:]
