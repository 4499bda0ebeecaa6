"""Counted nouns agree with their number: "1 change", never "1 changes"."""

from __future__ import annotations

import io
from types import SimpleNamespace

from rich.console import Console

from controller.store import NodeStatus
from controller.testing import sandbox
from controller.words import count


def test_count_agrees_with_its_number() -> None:
    assert [count(n, "change") for n in (0, 1, 2)] == ["0 changes", "1 change", "2 changes"]
    assert count(1, "entry", "entries") == "1 entry" and count(3, "entry", "entries") == "3 entries"


def test_the_demo_reports_one_change_in_the_singular() -> None:
    nodes = [
        SimpleNamespace(node="web-1", status=NodeStatus.CONVERGED, changes=1, message=""),
        SimpleNamespace(node="web-2", status=NodeStatus.CONVERGED, changes=3, message=""),
    ]
    out = io.StringIO()
    sandbox._report(SimpleNamespace(nodes=nodes, converged=True), Console(file=out, width=200))
    assert "web-1: converged (1 change)" in out.getvalue()
    assert "web-2: converged (3 changes)" in out.getvalue()
