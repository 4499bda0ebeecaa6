"""Test hooks on the wire: injected faults and the log of requests served.

Faults are matched in the order they were added; a request may get a delay and then a
failure. ``nth`` counts the calls that match the fault's own filters (1 = the first),
``times`` is how many consecutive matching calls it hits (None: every one after).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

FaultKind = Literal["status", "drop", "delay"]


@dataclass
class Fault:
    kind: FaultKind
    path: re.Pattern[str] | None = None
    method: str | None = None
    nth: int = 1
    times: int | None = 1
    status: int = 500
    seconds: float = 0.0
    headers: tuple[tuple[str, str], ...] = ()  # sent with a "status" fault (Retry-After)
    seen: int = 0  # matching calls so far
    hits: int = 0  # calls this fault acted on

    def _matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path is None or self.path.search(path) is not None

    def take(self, method: str, path: str) -> bool:
        """Count this call if it matches; True when the fault acts on it."""
        if not self._matches(method, path):
            return False
        self.seen += 1
        if self.seen < self.nth or (self.times is not None and self.hits >= self.times):
            return False
        self.hits += 1
        return True


class Faults:
    """Faults to inject; thread-safe, so tests may add them while the server runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def _add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    @staticmethod
    def _pattern(path: str | None) -> re.Pattern[str] | None:
        return re.compile(path) if path is not None else None

    def fail(
        self,
        status: int = 500,
        *,
        path: str | None = None,
        method: str | None = None,
        nth: int = 1,
        times: int | None = 1,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """Answer ``status`` (a 5xx, say) instead of handling the request, with
        ``headers`` (``{"Retry-After": "7"}``)."""
        extra = tuple((headers or {}).items())
        return self._add(
            Fault("status", self._pattern(path), method, nth, times, status=status, headers=extra)
        )

    def drop(
        self,
        *,
        path: str | None = None,
        method: str | None = None,
        nth: int = 1,
        times: int | None = 1,
    ) -> Fault:
        """Close the connection without answering (the client sees a protocol error)."""
        return self._add(Fault("drop", self._pattern(path), method, nth, times))

    def delay(
        self,
        seconds: float,
        *,
        path: str | None = None,
        method: str | None = None,
        nth: int = 1,
        times: int | None = None,
    ) -> Fault:
        """Wait ``seconds`` before handling the request."""
        return self._add(Fault("delay", self._pattern(path), method, nth, times, seconds=seconds))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def for_request(self, method: str, path: str) -> list[Fault]:
        with self._lock:
            return [f for f in self._faults if f.take(method, path)]


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str  # without the query string
    status: int  # 0 for a dropped connection
    duration: float


class RequestLog:
    """Every request served, in order; benchmarks count requests with :meth:`count`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []

    def add(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def count(
        self, method: str | None = None, path: str | None = None, status: int | None = None
    ) -> int:
        """Requests matching ``method``, ``path`` (a regex searched in the path), ``status``."""
        pattern = re.compile(path) if path is not None else None
        return sum(
            1
            for r in self.records
            if (method is None or r.method == method.upper())
            and (pattern is None or pattern.search(r.path))
            and (status is None or r.status == status)
        )

    @property
    def records(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def __iter__(self) -> Iterator[RequestRecord]:
        return iter(self.records)
