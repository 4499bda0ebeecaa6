"""What a platform provider offers the engine."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from controller.model.document import Document
from controller.plan.diff import Observed
from controller.source.tree import SourceTree
from controller.store.records import Intent

__all__ = [
    "Change",
    "Intent",
    "NodeTransaction",
    "Observation",
    "PlatformIds",
    "Provider",
    "StepJournal",
    "Unmanaged",
]


@dataclass(frozen=True)
class Unmanaged:
    """An object found on the node that no document describes."""

    kind: str
    name: str
    live: Mapping[str, Any]
    platform_id: str = ""  # the platform's id of the object (an OPNsense uuid), if any


@dataclass(frozen=True)
class Observation:
    resources: Mapping[Document, Observed]
    unmanaged: tuple[Unmanaged, ...] = field(default=())


class Provider(Protocol):
    platform: str

    async def observe(
        self, node: Document, resources: Sequence[Document], tree: SourceTree
    ) -> Observation:
        """Read the live state ``resources`` need from ``node`` in one bulk read, and
        return each resource's desired and live essence, plus the objects of the same
        kinds that no document describes, where the platform can list them. Raises
        NodeError when the node as a whole cannot be read."""
        ...


# -- apply (issue 4): the contract between the engine and each platform's appliers -------


@dataclass(frozen=True)
class Change:
    """One resource instance to converge on a node: its document (None for a prune of an
    owned object no document describes any more) and what the plan observed."""

    kind: str
    name: str
    action: str  # create, update, delete
    document: Document | None
    observed: Observed


class StepJournal(Protocol):
    """Write-ahead journal of one node's transaction (the engine backs it with the state
    store, where each call is one commit, one fsync).

    A step's intent is on disk when ``intend`` (or ``intend_many``) returns, and must be
    before the change can reach the node: intend a batch of changes together, before
    sending any of it. ``done`` may come later than the node's report (a crash in between
    leaves the step intended, which rollback from the snapshot covers): mark the steps
    reported together with one ``done_many``."""

    def intend(self, kind: str, name: str, action: str, payload: Mapping[str, Any]) -> int: ...

    def intend_many(self, intents: Sequence[Intent]) -> list[int]:
        """The steps' ids, in order; all on disk, in one commit, when this returns."""
        ...

    def done(self, step: int) -> None: ...

    def done_many(self, steps: Sequence[int]) -> None: ...

    def failed(self, step: int, message: str) -> None: ...


class NodeTransaction(Protocol):
    """One node's apply, driven by the engine in this order:

    ``snapshot()`` (stored in the journal before any write) -> ``write(journal)`` ->
    ``verify()`` (a fresh read; the engine re-diffs and requires every change to be a
    noop) -> ``commit()``; on any failure, or a verify that is not clean,
    ``rollback(snapshot)``. ``rollback`` must work from the stored snapshot alone, so
    that a controller restarted after a crash can finish an interrupted transaction.
    """

    async def snapshot(self) -> Mapping[str, Any]: ...

    async def write(self, journal: StepJournal) -> None: ...

    async def verify(self) -> Observation: ...

    async def commit(self) -> None: ...

    async def rollback(self, snapshot: Mapping[str, Any]) -> None: ...


@runtime_checkable
class PlatformIds(Protocol):
    """A NodeTransaction that can say which object on the platform each change wrote, for
    the inventory that decides prune (where the document's name or key does not say it:
    an OPNsense uuid). The engine asks after a clean verify."""

    def platform_ids(self) -> Mapping[tuple[str, str], str]:
        """(kind, document name) -> the platform's id of the object written."""
        ...
