"""The server's log filters: query-string secrets masked, repeated lines held back."""

from __future__ import annotations

import logging

from controller.server.logfilter import RateLimit, RedactQuery, redact_target


def record(msg: str, *args: object, name: str = "uvicorn.error") -> logging.LogRecord:
    return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, args, None)


def test_query_values_are_masked_but_paging_is_shown() -> None:
    assert redact_target("/api/v1/runs") == "/api/v1/runs"
    assert (
        redact_target("/api/v1/runs?limit=5&token=s3cr3t&Access%5FToken=x&flag")
        == "/api/v1/runs?limit=5&token=***&Access%5FToken=***&flag"
    )
    line = record('%s - "%s %s HTTP/%s" %d', "1.2.3.4:5", "GET", "/x?token=s3cr3t", "1.1", 401)
    assert RedactQuery().filter(line)
    assert "s3cr3t" not in line.getMessage() and "/x?token=***" in line.getMessage()


def test_a_repeated_line_is_held_back_then_counted() -> None:
    now = [0.0]
    limit = RateLimit(burst=3, interval=10, clock=lambda: now[0])
    passed = [limit.filter(record("Invalid HTTP request received.")) for _ in range(50)]
    assert passed.count(True) == 3
    assert limit.filter(record("another message"))  # other kinds are not held back
    now[0] = 10.0
    after = record("Invalid HTTP request received.")
    assert limit.filter(after)
    assert after.getMessage() == "Invalid HTTP request received. (47 more like this held back)"
