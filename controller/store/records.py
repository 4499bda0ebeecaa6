"""The values the store hands back: immutable records of runs, transactions and ownership.

Timestamps are aware UTC datetimes (stored as ISO 8601 text); JSON columns come back as
plain dicts, already redacted when they were written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class Trigger(StrEnum):
    """What started a run."""

    CLI = "cli"
    SCHEDULE = "schedule"
    WEBHOOK = "webhook"
    WATCH = "watch"
    API = "api"


class Command(StrEnum):
    PLAN = "plan"
    APPLY = "apply"
    ROLLBACK = "rollback"
    DRIFT = "drift"


class NodeStatus(StrEnum):
    """Where one node ended up in a run."""

    IN_PROGRESS = "in_progress"
    CONVERGED = "converged"
    ROLLED_BACK = "rolled_back"  # a write failed; every change made was undone
    FAILED = "failed"  # failed and could not be (fully) rolled back, or could not be read
    SKIPPED = "skipped"


class RunStatus(StrEnum):
    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"  # every node converged (or was skipped)
    PARTIAL = "partial"  # some nodes converged, others did not
    FAILED = "failed"  # no node converged
    INTERRUPTED = "interrupted"  # the controller stopped before finishing the run


def overall_status(nodes: Iterable[NodeStatus]) -> RunStatus:
    """The status a finished run gets from its nodes' statuses."""
    statuses = list(nodes)
    if NodeStatus.IN_PROGRESS in statuses:
        return RunStatus.INTERRUPTED
    bad = [s for s in statuses if s in (NodeStatus.FAILED, NodeStatus.ROLLED_BACK)]
    if not bad:
        return RunStatus.SUCCEEDED
    return RunStatus.PARTIAL if NodeStatus.CONVERGED in statuses else RunStatus.FAILED


@dataclass(frozen=True)
class NodeResult:
    node: str
    status: NodeStatus
    message: str
    seconds: float


@dataclass(frozen=True)
class RunSummary:
    """A run as ``fazai history`` lists it: everything but the (possibly large) plan."""

    id: int
    started: datetime
    finished: datetime | None
    trigger: Trigger
    command: Command
    source: str
    revision: str | None  # the git commit SHA, None for a plain directory
    status: RunStatus
    nodes: tuple[NodeResult, ...]  # sorted by node name
    actor: str = ""  # who started it ("" for runs recorded before actors were)
    source_name: str = ""  # the configured source of a `fazai serve` run ("": unknown)


@dataclass(frozen=True)
class Run(RunSummary):
    plan: Mapping[str, Any] | None = None  # the plan as JSON (``plan_json.to_dict``), redacted


class TransactionStatus(StrEnum):
    OPEN = "open"
    COMMITTED = "committed"
    ROLLED_BACK = "rolled_back"


class StepStatus(StrEnum):
    INTENDED = "intended"  # written before the change was sent: it may or may not have landed
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class Snapshot:
    """The state of one object before a transaction touched it."""

    id: int
    kind: str
    name: str
    key: str  # the object on the platform: a file path, an OPNsense uuid...
    before: Mapping[str, Any] | None  # None: the object did not exist (undo = delete it)


@dataclass(frozen=True)
class Intent:
    """A change about to be sent, as the journal records it before sending it."""

    kind: str
    name: str
    action: str
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class Step:
    id: int
    seq: int
    kind: str
    name: str
    action: str
    payload: Mapping[str, Any]
    status: StepStatus
    message: str


@dataclass(frozen=True)
class Transaction:
    id: int
    run_id: int
    node: str
    started: datetime
    status: TransactionStatus
    snapshots: tuple[Snapshot, ...]  # newest first: the order to restore them in
    steps: tuple[Step, ...]  # by seq


@dataclass(frozen=True)
class OwnedObject:
    """An object FazAI created on a node, and so may delete."""

    node: str
    kind: str
    name: str
    platform_id: str  # the object on the platform: an OPNsense uuid, a file path...
    run_id: int | None  # the run that created it (None once that run is pruned)
    created: datetime


@dataclass(frozen=True)
class VerifiedToolRecord:
    """A tool the agent verified for a goal on a node, kept so that the goal is resolved
    again with no model call until its ``resolvedBy`` is desired state."""

    id: int
    goal: str
    node: str | None  # the node it was verified on
    tool: str
    spec: Mapping[str, Any]  # redacted
    params: Mapping[str, Any]  # redacted
    masked: bool  # redaction masked part of spec or params: not to be applied as it is
    verified_at: datetime
    run_id: int | None  # None once that run is pruned
    reference: str = ""  # the commit or pull request it was committed back as ("": none)
