"""What the running controller exposes to its HTTP API and CLI clients.

The reconcile loop implements :class:`ControllerHandle`; ``controller.server`` only
depends on this module, so either side can change behind it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from controller.errors import FazaiError
from controller.events import EventBus
from controller.plan.diff import Action
from controller.plan.items import PlanItem
from controller.store import StateStore


class Mode(StrEnum):
    AUTO = "auto"  # apply what the plan says
    DETECT = "detect"  # plan and report drift, never write
    MANUAL = "manual"  # plan, then apply only after an approval


@dataclass(frozen=True)
class SourceStatus:
    """One configured git source, as the loop last saw it."""

    name: str
    location: str  # credentials masked
    branch: str
    revision: str | None  # the last commit reconciled
    last_sync: datetime | None  # when a reconcile of this source last succeeded
    error: str | None = None  # the last failure, until a success clears it
    retry_at: datetime | None = None  # backing off until then
    busy: bool = False


@dataclass(frozen=True)
class NodeDrift:
    """The drift of one node at its last read."""

    node: str
    source: str
    mode: Mode
    checked: datetime
    revision: str | None
    # The node's plan items other than noop, with their secrets masked (plan/masked.py):
    # typed up to the edges that render them (reports, notifications, the API).
    items: tuple[PlanItem, ...] = ()
    error: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)  # the Node's, for API scopes

    @property
    def drifted(self) -> int:
        return sum(1 for i in self.items if i.action is not Action.NOOP)


@dataclass(frozen=True)
class PendingApproval:
    """A plan waiting for ``approve`` or ``abort``: in ``manual`` mode, or held by a
    policy's ``requireApproval``."""

    id: str
    source: str
    revision: str | None
    created: datetime
    nodes: Sequence[str]
    plan: Mapping[str, Any] = field(default_factory=dict)  # plan JSON
    required: int = 1  # distinct approvers (token names) needed before it is applied
    reasons: tuple[str, ...] = ()  # why it waits: the policies' messages
    # Who set the change going (reconcile.actors: token names, the commit's author and
    # committer), over every pass that offered this plan; none of them may approve it.
    actors: tuple[str, ...] = ()
    approved_by: tuple[str, ...] = ()  # the distinct approvers so far, in order
    labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # per node
    # Per node, its labels when it was last in sync (None: never seen so): a token's node
    # selector must match these and ``labels``, so a commit cannot relabel a node into the
    # scope of an approver who could not approve it before.
    settled: Mapping[str, Mapping[str, str] | None] = field(default_factory=dict)

    @property
    def missing(self) -> int:
        return max(self.required - len(self.approved_by), 0)


class UnknownApproval(LookupError):
    pass


class ApprovalRefused(FazaiError):
    """This approver may not approve this plan (it triggered the change); the HTTP API
    answers 403."""


class ApprovalSuperseded(FazaiError):
    """The approved plan is no longer the latest offer of its source (a pass started
    since, or is running: its plan replaces, withdraws or keeps it), or is already being
    applied; nothing was written. The HTTP API answers 409: look at the pending
    approvals again."""


class ControllerStopping(FazaiError):
    """The controller is shutting down and starts no new apply; the same request can
    succeed once it runs again (the HTTP API answers 503)."""

    retryable = True


class ControllerHandle(Protocol):
    events: EventBus
    store: StateStore

    def ready(self) -> bool:
        """Every source has been read at least once (or failed and is backing off)."""

    def sources(self) -> Sequence[SourceStatus]: ...

    def drift(self) -> Sequence[NodeDrift]: ...

    def approvals(self) -> Sequence[PendingApproval]: ...

    async def trigger(
        self, source: str | None = None, reason: str = "api", actor: str = ""
    ) -> None:
        """Queue a reconcile of ``source`` (every source when None); returns at once.
        Requests that arrive while one is queued are coalesced into it (keeping every
        ``actor``: the token name that asked, which may not approve what it plans).
        Raises ControllerStopping while the controller stops, KeyError for an unknown
        source."""

    async def notify_push(self, location: str, branch: str, revision: str | None) -> bool:
        """A push webhook said ``branch`` of ``location`` moved; False when no configured
        source matches."""

    async def approve(
        self, approval_id: str, by: str, identities: Sequence[str] = ()
    ) -> int | None:
        """Record ``by``'s approval of a pending plan (the same name twice counts once);
        once ``required`` distinct names have approved, apply it and return the run id;
        None while more approvals are needed. ``identities``: the emails and names the
        token ``by`` commits under. Raises UnknownApproval, ApprovalRefused (``by`` is
        empty or one of the plan's actors), ApprovalSuperseded (a pass replaced or
        withdrew the plan while the approval waited for its nodes, or it is already being
        applied), ControllerStopping while shutting down, or the FazaiError the apply
        failed with before its run was recorded."""

    async def abort(self, approval_id: str, by: str = "") -> None:
        """Drop a pending plan. Raises UnknownApproval."""
