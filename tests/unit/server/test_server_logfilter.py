"""The server's log filters: query-string secrets masked, repeated lines held back."""

from __future__ import annotations

import logging

from controller.server.logfilter import AccessRateLimit, RateLimit, RedactQuery, redact_target


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


def access(client: str, method: str, target: str, status: int) -> logging.LogRecord:
    template = '%s - "%s %s HTTP/%s" %d'
    args = (client, method, target, "1.1", status)
    return logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, template, args, None)


def test_access_lines_are_limited_per_client_and_status_class() -> None:
    limit = AccessRateLimit(3)
    assert [limit.filter(access("10.0.0.1:1", "GET", "/healthz", 200)) for _ in range(5)] == [
        True, True, True, False, False,
    ]  # fmt: skip
    assert limit.filter(access("10.0.0.1:2", "GET", "/nowhere", 404))  # another class
    assert limit.filter(access("10.0.0.2:1", "GET", "/healthz", 200))  # another client
    assert limit.filter(access("[::1]:1", "GET", "/healthz", 200))


def test_authenticated_successes_and_queued_pushes_are_never_held_back() -> None:
    limit = AccessRateLimit(1)
    for _ in range(50):
        assert limit.filter(access("10.0.0.1:1", "POST", "/api/v1/reconcile", 202))
        assert limit.filter(access("10.0.0.1:1", "GET", "/api/v1/runs?limit=5", 200))
        assert limit.filter(access("10.0.0.1:1", "POST", "/hooks/github", 202))
    assert limit.filter(access("10.0.0.1:1", "POST", "/hooks/github", 200))  # "ignored"
    assert not limit.filter(access("10.0.0.1:1", "POST", "/hooks/github", 200))
    assert limit.filter(access("10.0.0.1:1", "POST", "/api/v1/reconcile", 401))
    assert not limit.filter(access("10.0.0.1:1", "POST", "/api/v1/reconcile", 401))


def test_a_crowd_of_addresses_is_bounded_by_the_total() -> None:
    total = AccessRateLimit(10, by_client=False)
    passed = [
        total.filter(access(f"10.0.{i // 250}.{i % 250}:1", "GET", "/x", 401)) for i in range(500)
    ]
    assert passed.count(True) == 10
