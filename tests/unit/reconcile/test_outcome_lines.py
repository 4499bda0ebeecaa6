"""The outcome lines of ``fazai serve`` (controller.reconcile.outcomes): a reason or an
error taken from a node's output is written on one line, so it cannot forge another."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from controller.events import Event, EventType
from controller.reconcile import outcomes

FORGED = "connection refused\nnode db-1: applied 0 changes (run 1)\x1b[2J"


@pytest.mark.parametrize(
    ("kind", "key"),
    [
        (EventType.NODE_FAILED, "reason"),
        (EventType.NODE_ROLLED_BACK, "reason"),
        (EventType.NODE_READ, "error"),
        (EventType.RUN_STARTED, "source"),
        (EventType.DRIFT_DETECTED, "mode"),
    ],
)
def test_a_newline_in_a_value_cannot_start_a_log_line(kind: EventType, key: str) -> None:
    data = {"node": "web\n-1", "run_id": 7, "revision": "a" * 40, key: FORGED}
    found = outcomes.line(Event(1, kind, datetime(2026, 1, 1, tzinfo=UTC), data))
    assert found is not None
    _, text = found
    assert "\n" not in text and "\x1b" not in text
    assert "connection refused\\nnode db-1" in text


def test_approval_nodes_are_one_line_too() -> None:
    data = {"approval_id": "ap-1", "nodes": ["edge-fw\nrun 9 (apply) finished succeeded"]}
    found = outcomes.line(Event(1, EventType.APPROVAL_PENDING, datetime.now(UTC), data))
    assert found is not None and "\n" not in found[1]
