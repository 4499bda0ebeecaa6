"""What the HTTP server writes to the log: never a query string's secrets, and no flood.

* :class:`RedactQuery` masks every query-string value in uvicorn's access log lines but
  those of a few known harmless parameters: a token sent as ``?token=...`` (refused by
  the API, see controller.server.auth) must not land in the log in full.
* :class:`RateLimit` lets through at most ``burst`` lines of one kind (same logger,
  level and message template) per ``interval`` seconds; the first line let through
  after a quiet spell says how many were held back. Thousands of hostile clients then
  cost a few lines a second, not hundreds of megabytes a minute.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from urllib.parse import unquote

SHOWN_PARAMETERS = frozenset({"limit", "offset", "since"})
MASK = "***"
_NUMBER = re.compile(r"[0-9]{1,19}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-\[\]]{0,31}")
# asyncio's: "socket.accept() out of system resource", with a traceback, per attempt.
SERVER_LOGGERS = ("uvicorn.access", "uvicorn.error", "fazai.server", "asyncio")
ACCESS_BURST = 100  # access lines are all one template: let a busy API's through


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
        self._seen: OrderedDict[tuple[str, int, str], list[float]] = OrderedDict()

    def filter(self, record: logging.LogRecord) -> bool:
        kind = (record.name, record.levelno, str(record.msg))
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


def install() -> None:
    """Put both filters on the server's loggers, once per process."""
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        if any(isinstance(f, RateLimit) for f in logger.filters):
            continue
        if name == "uvicorn.access":
            logger.addFilter(RedactQuery())  # first: the limiter may format the message
            logger.addFilter(RateLimit(burst=ACCESS_BURST))
        else:
            logger.addFilter(RateLimit())
