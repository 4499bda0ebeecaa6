"""What the HTTP server writes to the log: never a query string's secrets, and no flood.

* :class:`RedactQuery` masks every query-string value in uvicorn's access log lines but
  those of a few known harmless parameters: a token sent as ``?token=...`` (refused by
  the API, see controller.server.auth) must not land in the log in full.
* :class:`RateLimit` lets through at most ``burst`` lines of one kind (same logger,
  level and message template) per ``interval`` seconds; the first line let through
  after a quiet spell says how many were held back. Thousands of hostile clients then
  cost a few lines a second, not hundreds of megabytes a minute.
* :class:`AccessRateLimit` does that for access lines, whose template is the same for
  every request: its kind is the client's address and the status class, so one client's
  flood of health checks or 401s cannot hide another's requests, and a line that
  records an authenticated success (any answer below 400 on a route other than the
  open ones) is never held back: the access log is an audit trail. A second one, for
  every client together, bounds what a crowd of addresses can write.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any
from urllib.parse import unquote

SHOWN_PARAMETERS = frozenset({"limit", "offset", "since"})
MASK = "***"
_NUMBER = re.compile(r"[0-9]{1,19}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-\[\]]{0,31}")
# asyncio's: "socket.accept() out of system resource", with a traceback, per attempt.
SERVER_LOGGERS = ("uvicorn.access", "uvicorn.error", "fazai.server", "asyncio")
ACCESS_BURST = 100  # per client and status class
ACCESS_TOTAL = 1000  # every client together
# Open routes: a success there proves nothing about the caller. A webhook's 200 is an
# "ignored" answer, which may be given before the signature is checked.
OPEN_PATHS = frozenset({"/healthz", "/readyz"})


def redact_target(target: str) -> str:
    """``/path?a=1&token=abc`` -> ``/path?a=***&token=***``. The values of ``limit``,
    ``offset`` and ``since`` are shown when they are plain numbers (anything else, such
    as ``5;token=...`` or ``5?token=...``, may carry a secret); a name is shown when it is
    a short identifier, not a token someone put where a name goes."""
    path, sep, query = target.partition("?")
    if not sep:
        return target
    parts = []
    for pair in query.split("&"):
        name, has_value, value = pair.partition("=")
        plain = unquote(name).strip()
        shown_name = name if _NAME.fullmatch(plain) else MASK
        if not has_value:
            parts.append(shown_name)
            continue
        shown = plain.lower() in SHOWN_PARAMETERS and _NUMBER.fullmatch(value)
        parts.append(f"{shown_name}={value if shown else MASK}")
    return f"{path}?{'&'.join(parts)}"


class RedactQuery(logging.Filter):
    """For ``uvicorn.access``, whose records carry (client, method, target, version,
    status) as their arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], redact_target(args[2]), args[3], args[4])
        return True


class RateLimit(logging.Filter):
    def __init__(
        self,
        burst: int = 20,
        interval: float = 10.0,
        kinds: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.burst = burst
        self.interval = interval
        self._kinds = kinds
        self._clock = clock
        self._lock = threading.Lock()
        # kind -> [window start, lines let through in it, lines held back]
        self._seen: OrderedDict[Hashable, list[float]] = OrderedDict()

    def kind(self, record: logging.LogRecord) -> Hashable | None:
        """What ``record`` is counted with; None for a line never held back."""
        return (record.name, record.levelno, str(record.msg))

    def filter(self, record: logging.LogRecord) -> bool:
        kind = self.kind(record)
        if kind is None:
            return True
        now = self._clock()
        with self._lock:
            entry = self._seen.get(kind)
            if entry is None or now - entry[0] >= self.interval:
                held = int(entry[2]) if entry is not None else 0
                self._seen[kind] = [now, 1, 0]
                self._seen.move_to_end(kind)
                while len(self._seen) > self._kinds:
                    self._seen.popitem(last=False)
                if held:
                    record.msg = f"{record.getMessage()} ({held} more like this held back)"
                    record.args = ()
                return True
            if entry[1] < self.burst:
                entry[1] += 1
                return True
            entry[2] += 1
            return False


class AccessRateLimit(RateLimit):
    """For ``uvicorn.access`` (arguments: client, method, target, version, status)."""

    def __init__(self, burst: int, by_client: bool = True, **options: Any) -> None:
        super().__init__(burst, **options)
        self.by_client = by_client

    def kind(self, record: logging.LogRecord) -> Hashable | None:
        args = record.args
        status = args[4] if isinstance(args, tuple) and len(args) == 5 else None
        if not isinstance(status, int) or not isinstance(args, tuple):
            return super().kind(record)
        client, target = args[0], args[2]
        path = str(target).partition("?")[0]
        if status < 400 and path not in OPEN_PATHS and not path.startswith("/hooks/"):
            return None  # an authenticated success: never held back
        if path.startswith("/hooks/") and status in (201, 202):
            return None  # a verified push that queued a reconcile
        if not self.by_client:
            return "every client"
        host = str(client).rpartition(":")[0] or str(client)  # "1.2.3.4:5678", no port
        return (host, status // 100)


def install() -> None:
    """Put both filters on the server's loggers, once per process."""
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        if any(isinstance(f, RateLimit) for f in logger.filters):
            continue
        if name == "uvicorn.access":
            logger.addFilter(RedactQuery())  # first: the limiters may format the message
            logger.addFilter(AccessRateLimit(ACCESS_BURST))
            logger.addFilter(AccessRateLimit(ACCESS_TOTAL, by_client=False))
        else:
            logger.addFilter(RateLimit())
