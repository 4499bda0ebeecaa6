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
    items: Sequence[Mapping[str, Any]] = ()  # plan items as plan JSON writes them
    error: str | None = None

    @property
    def drifted(self) -> int:
        return sum(1 for i in self.items if i.get("action") not in ("noop", None))


@dataclass(frozen=True)
class PendingApproval:
    """A plan in ``manual`` mode waiting for ``approve`` or ``abort``."""

    id: str
    source: str
    revision: str | None
    created: datetime
    nodes: Sequence[str]
    plan: Mapping[str, Any] = field(default_factory=dict)  # plan JSON
    required: int = 1  # distinct approvals needed (a policy may ask for more than one)
    reasons: tuple[str, ...] = ()  # the policies' messages that call for the approval
    actor: str = ""  # who triggered the change (a commit's author, fazai-serve)


class UnknownApproval(LookupError):
    pass


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

    async def trigger(self, source: str | None = None, reason: str = "api") -> None:
        """Queue a reconcile of ``source`` (every source when None); returns at once.
        Requests that arrive while one is queued are coalesced into it. Raises
        ControllerStopping while the controller stops, KeyError for an unknown source."""

    async def notify_push(self, location: str, branch: str, revision: str | None) -> bool:
        """A push webhook said ``branch`` of ``location`` moved; False when no configured
        source matches."""

    async def approve(self, approval_id: str) -> int:
        """Apply a pending plan; returns the run id. Raises UnknownApproval,
        ControllerStopping while shutting down, or the FazaiError the apply failed with
        before its run was recorded."""

    async def abort(self, approval_id: str) -> None:
        """Drop a pending plan. Raises UnknownApproval."""
