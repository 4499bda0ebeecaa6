"""The server-sent-events wire format, written and read back."""

from __future__ import annotations

import json

from controller.events import EventBus, EventType
from controller.server import sse


def test_an_event_is_one_message_with_id_type_and_json_data() -> None:
    bus = EventBus()
    event = bus.publish(EventType.NODE_FAILED, source="infra", node="edge-fw", reason="a\nb")
    wire = sse.encode(event).decode()
    lines = wire.split("\n")
    assert lines[:2] == [f"id: {event.id}", "event: node.failed"]
    assert lines[2].startswith("data: {") and lines[3:] == ["", ""]  # one data line
    [message] = sse.Parser().feed(wire.splitlines(keepends=True))
    assert (message.id, message.event) == (str(event.id), "node.failed")
    assert json.loads(message.data) == event.to_dict()
    assert json.loads(message.data)["data"]["reason"] == "a\nb"


def test_parser_follows_the_spec() -> None:
    parser = sse.Parser()
    stream = [
        ": keep-alive",
        "",
        "retry: 2500",
        "",
        "id: 7",
        "event: run.started",
        "data: one",
        "data:two",
        "",  # no space after colon
        "data: carries the last id",
        "",
        "id",
        "data: x",
        "",  # an empty id resets the last id
        "event: ignored without data",
        "",
        "data: 3\r",
    ]
    messages = list(parser.feed(stream))
    assert parser.retry == 2500
    assert [(m.id, m.event, m.data) for m in messages] == [
        ("7", "run.started", "one\ntwo"),
        ("7", "message", "carries the last id"),
        ("", "message", "x"),
    ]
    # The unterminated last message is not dispatched until its blank line arrives.
    assert parser.line("") == sse.Message("message", "3", "")


def test_comment_and_retry_frames() -> None:
    assert sse.comment("keep-alive") == b": keep-alive\n\n"
    assert sse.retry(2000) == b"retry: 2000\n\n"
