"""The drift report: what differs between the desired state and the nodes, now and over time.

Plain immutable values, built once (:mod:`controller.reports.build`) and rendered many
ways (markdown, JSON, HTML). Field values come from plan JSON, which is redacted before
anyone sees it: a report never holds more than a plan does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

DRIFT_ACTIONS = ("create", "update", "delete")
"""Actions that are drift: applying would change the node."""


@dataclass(frozen=True)
class FieldChange:
    field: str
    live: Any  # as the essence holds it; None: absent
    desired: Any
    diff: str | None = None  # unified diff of a text content, when the plan has one


@dataclass(frozen=True)
class DriftedResource:
    """One resource instance whose live state differs from its document (or that cannot be
    compared: ``action == "error"``)."""

    node: str
    source: str | None
    kind: str
    name: str
    action: str  # create | update | delete | error
    changes: tuple[FieldChange, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class NodeSummary:
    node: str
    source: str | None
    platform: str | None  # None when no recorded plan says
    mode: str | None  # auto | detect | manual; None outside the controller (``fazai drift``)
    checked: datetime | None  # when the node was last read
    revision: str | None  # the commit it was compared against
    create: int = 0
    update: int = 0
    delete: int = 0
    errors: int = 0  # resources that could not be compared
    error: str | None = None  # the node as a whole could not be read

    @property
    def drifted(self) -> int:
        return self.create + self.update + self.delete

    @property
    def in_sync(self) -> bool:
        return self.drifted == 0 and self.errors == 0 and self.error is None


@dataclass(frozen=True)
class SourceRef:
    name: str
    location: str  # credentials masked
    branch: str | None
    revision: str | None
    last_sync: datetime | None = None
    error: str | None = None


@dataclass(frozen=True)
class SeriesPoint:
    """One recorded run: how many resources differed when it planned."""

    run_id: int
    time: datetime
    source: str
    revision: str | None
    command: str
    trigger: str
    drifted: int
    errors: int  # nodes that could not be read plus resources that could not be compared
    nodes: tuple[tuple[str, int], ...] = ()  # (node, drifted) for nodes with drift, sorted


@dataclass(frozen=True)
class DriftReport:
    title: str
    generated: datetime
    window_days: int  # how far back ``series`` reaches
    sources: tuple[SourceRef, ...]
    nodes: tuple[NodeSummary, ...]  # sorted by node
    resources: tuple[DriftedResource, ...]  # sorted by node, kind, name
    series: tuple[SeriesPoint, ...] = ()  # oldest first

    @property
    def drifted(self) -> int:
        return sum(n.drifted for n in self.nodes)

    @property
    def failed_nodes(self) -> int:
        return sum(1 for n in self.nodes if n.error is not None)

    @property
    def has_errors(self) -> bool:
        return any(n.error is not None or n.errors for n in self.nodes)

    @property
    def exit_code(self) -> int:
        """As ``fazai plan``: 0 in sync, 1 drift, 2 trouble."""
        if self.has_errors:
            return 2
        return 1 if self.drifted else 0

    @property
    def status(self) -> str:
        return ("in sync", "drift", "trouble")[self.exit_code]
