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
