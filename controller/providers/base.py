"""What a platform provider offers the engine."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from controller.engine.diff import Observed
from controller.model.document import Document
from controller.source.tree import SourceTree


@dataclass(frozen=True)
class Unmanaged:
    """An object found on the node that no document describes."""

    kind: str
    name: str
    live: Mapping[str, Any]


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
    store). ``intend`` is on disk before the change is sent."""

    def intend(self, kind: str, name: str, action: str, payload: Mapping[str, Any]) -> int: ...

    def done(self, step: int) -> None: ...

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
