"""What a platform provider offers the engine."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from controller.model.document import Document
from controller.plan.diff import Observed
from controller.source.tree import SourceTree
from controller.store.records import Intent, OwnedObject

__all__ = [
    "NO_OWNERSHIP",
    "Absent",
    "Change",
    "Importer",
    "Intent",
    "NodeTransaction",
    "Observation",
    "Ownership",
    "PlatformIds",
    "Probed",
    "Probing",
    "Provider",
    "Reapplying",
    "SharedReader",
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
    ownership: Ownership  # what it says about the objects the inventory records

    def machine_key(self, spec: Mapping[str, Any]) -> str | None:
        """What a Node of this ``spec`` connects to, normalised as the connection would
        be (a default port spelled out, case where it does not matter): the machine-wide
        writer lock's key. None when the spec says no address."""
        ...

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


@dataclass(frozen=True)
class Probed:
    """What a read-only probe answered: its exit status (None when it did not end on its
    own), the start of its output, and why it did not run or finish."""

    exit: int | None
    output: str
    error: str | None = None
    truncated: bool = False


@runtime_checkable
class Probing(Protocol):
    """A provider that can run one read-only probe on a node (the agent's ``shell``)."""

    async def probe(
        self, node: Document, argv: Sequence[str], timeout: float, keep: int
    ) -> Probed: ...


@runtime_checkable
class Reapplying(NodeTransaction, Protocol):
    """A NodeTransaction that can write its steps a second time and say what that
    changed: how a tool the agent made is shown idempotent before it counts as
    verified (inside the same transaction, so a failure still rolls back)."""

    async def reapply(self, journal: StepJournal) -> list[str]:
        """Write the same steps again; the objects the snapshot holds that the second
        write changed (empty: idempotent)."""
        ...


# -- ownership (issue 10): the platform's side of prune, recorded bindings and import ------


@dataclass(frozen=True)
class Absent:
    """How an owned object is deleted: the spec fields that make a ``state: absent``
    document of its kind reach that object and no other, and what a person should know
    about what the delete leaves behind (None: nothing)."""

    fields: Mapping[str, Any]
    note: str | None = None


class Ownership(Protocol):
    """What a platform says about the objects the inventory records as FazAI's, so that
    the engine prunes, binds and imports without knowing how the platform names them."""

    # Kinds whose absent state removes the object (``absent`` answers for them).
    prunable_kinds: frozenset[str]
    # Kinds with no absent state: pruning lets go of the object and leaves it as it is.
    released_kinds: frozenset[str]

    def absent(self, obj: OwnedObject) -> Absent | None:
        """How the owned ``obj`` (of a prunable kind) is deleted; None when its record
        does not identify an object that an absent document would reach (it is then not
        pruned, and said so)."""
        ...

    def claim(self, node: str, doc: Document) -> str | None:
        """The platform's own id of the object ``doc`` binds on ``node`` (an OPNsense
        uuid), or None where the kind's instance key says which object it is."""
        ...

    def recorded(self, node: str, obj: OwnedObject) -> str | None:
        """The platform id that a document of ``obj``'s name must be bound to, because
        the document alone would not find that object again (an adopted rule's uuid);
        None when the document finds its object by itself."""
        ...


class _NoOwnership:
    """A platform that records nothing it could prune or bind."""

    prunable_kinds: frozenset[str] = frozenset()
    released_kinds: frozenset[str] = frozenset()

    def absent(self, obj: OwnedObject) -> Absent | None:
        return None

    def claim(self, node: str, doc: Document) -> str | None:
        return None

    def recorded(self, node: str, obj: OwnedObject) -> str | None:
        return None


NO_OWNERSHIP: Ownership = _NoOwnership()


@runtime_checkable
class Importer(Protocol):
    """A provider that can list what a node holds and no document describes, and state
    each such object as a document (``fazai import``)."""

    async def unmanaged(
        self, node: Document, resources: Sequence[Document], tree: SourceTree
    ) -> tuple[Unmanaged, ...]: ...

    def import_spec(self, item: Unmanaged) -> tuple[str, dict[str, Any]]:
        """(a name hint, the spec) of a document describing ``item`` as it is."""
        ...

    def owner(self, node: str, item: Unmanaged, owned: Sequence[OwnedObject]) -> OwnedObject | None:
        """The inventory record among ``owned`` that is ``item``, if FazAI owns it."""
        ...


# One node read for several desired states (a review's base and head): each part is the
# state's documents for the node and the tree they come from.
Part = tuple[Sequence[Document], SourceTree]


@runtime_checkable
class SharedReader(Protocol):
    """A provider that serves several desired states from one read of a node."""

    async def observe_many(self, node: Document, parts: Sequence[Part]) -> list[Observation]:
        """Each part's observation of ``node``, as ``observe`` would give it, from one
        live read."""
        ...
