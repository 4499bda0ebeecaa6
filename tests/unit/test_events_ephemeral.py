"""Ephemeral events (a model's tokens) reach live subscribers but stay out of the bus's
replay history, so a flood of them cannot push out the events a reconnecting client
needs."""

from __future__ import annotations

from controller.events import EventBus, EventType


async def test_2000_token_events_do_not_push_an_approval_out_of_the_history() -> None:
    bus = EventBus(history=1000, queue_size=5000)
    approval = bus.publish(EventType.APPROVAL_PENDING, approval_id="a1", revision="r")
    async with bus.subscribe() as live:
        for index in range(2000):
            bus.publish(EventType.MODEL_TOKEN, ephemeral=True, index=index, text="t")
        assert live.qsize() == 2000  # every one delivered live
        first = live.get_nowait()
    assert first.type is EventType.MODEL_TOKEN and "ephemeral" not in first.data
    assert [e.id for e in bus.history()] == [approval.id]
    # A client resuming after the approval never gets the tokens: it is told so.
    async with bus.subscribe(after=approval.id) as resumed:
        assert resumed.qsize() == 0 and resumed.lost == 2000
