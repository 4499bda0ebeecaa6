"""The server-sent-events wire format (WHATWG HTML, "Server-sent events"), both ways.

One event per message: ``id:`` the event id, ``event:`` its type, ``data:`` the JSON of
``Event.to_dict()`` on one line (JSON escapes newlines, so one line always suffices).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from controller.events import Event


def encode(event: Event) -> bytes:
    data = json.dumps(event.to_dict(), separators=(",", ":"), default=str)
    return f"id: {event.id}\nevent: {event.type.value}\ndata: {data}\n\n".encode()


LOST = "stream.lost"  # a message of the stream itself, not an event of the bus


def lost(missed: int) -> bytes:
    """Says ``missed`` events will never come (the client read too slowly, or resumed
    after events no longer kept). No id: it is no event, and must not move the client's
    Last-Event-ID."""
    data = json.dumps({"type": LOST, "data": {"missed": missed}}, separators=(",", ":"))
    return f"event: {LOST}\ndata: {data}\n\n".encode()


def comment(text: str) -> bytes:
    return f": {text}\n\n".encode()


def retry(milliseconds: int) -> bytes:
    return f"retry: {milliseconds}\n\n".encode()


@dataclass(frozen=True)
class Message:
    event: str  # "message" when the server named none
    data: str
    id: str | None  # the last id seen on the stream, as the spec carries it over


class Parser:
    """Feeds on the stream's lines; yields each complete message.

    ``retry`` holds the reconnection delay the server last asked for (milliseconds)."""

    def __init__(self) -> None:
        self.last_id: str | None = None
        self.retry: int | None = None
        self._event = ""
        self._data: list[str] = []

    def feed(self, lines: Iterable[str]) -> Iterator[Message]:
        for line in lines:
            message = self.line(line)
            if message is not None:
                yield message

    def line(self, line: str) -> Message | None:
        line = line.rstrip("\r\n")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_id = value
        elif name == "retry" and value.isascii() and value.isdigit() and len(value) < 10:
            self.retry = int(value)
        return None

    def _dispatch(self) -> Message | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return Message(event or "message", "\n".join(data), self.last_id)
