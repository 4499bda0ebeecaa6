"""A notice: one thing worth telling people, in every target's terms.

Built by :mod:`controller.notify.policy` from events; rendered by
:mod:`controller.notify.formats`. Values come from plan JSON and event data, which are
redacted of secrets before anyone sees them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from controller.notify.settings import NoticeKind
from controller.reports.model import DriftedResource


@dataclass(frozen=True)
class NodeOutcome:
    """A node's result in an apply run."""

    node: str
    status: str  # converged | rolled_back | failed | skipped | in_progress
    message: str = ""


@dataclass(frozen=True)
class Notice:
    kind: NoticeKind
    title: str  # one line: what happened, where
    text: str  # a few lines: why (field changes, the failure reason)
    time: datetime
    event_id: int = 0
    source: str | None = None
    node: str | None = None
    revision: str | None = None  # the commit the nodes were compared with or applied from
    mode: str | None = None
    run_id: int | None = None
    status: str | None = None  # an apply run's status
    reason: str | None = None  # a failure's or refusal's reason
    changed: bool = False  # drift notified before that is now different
    resources: tuple[DriftedResource, ...] = ()
    nodes: tuple[NodeOutcome, ...] = ()
