"""How ``fazai serve`` writes its log: text lines for people, or JSON lines for machines.

JSON lines (``--log-format json``) carry ``time`` (ISO 8601, UTC), ``level``, ``logger``
and ``message``, plus the fields a record was given as ``extra={"fazai": {...}}``: the
reconcile loop's outcome lines (controller.reconcile.outcomes) carry ``run_id``,
``source``, ``node``, ``event`` and counts, so a log pipeline can join them with
``fazai history`` and the event stream. A traceback goes in ``error``.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from controller.output import terminal

FORMATS = ("text", "json")
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FIELDS = "fazai"  # the attribute of a record holding its structured fields


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, dict):
            line.update({k: v for k, v in fields.items() if k not in line})
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)  # ASCII: no raw C1/bidi reaches a terminal


def configure(format: str = "text", level: int = logging.INFO) -> None:
    """The root logger writes to stderr in ``format`` (text or json)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines() if format == "json" else terminal.SafeFormatter(TEXT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
