"""What a platform provider offers the engine."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from controller.engine.diff import Observed
from controller.model.document import Document
from controller.source.tree import SourceTree


class Provider(Protocol):
    platform: str

    async def observe(
        self, node: Document, resources: Sequence[Document], tree: SourceTree
    ) -> Mapping[Document, Observed]:
        """Read the live state ``resources`` need from ``node`` in one bulk read, and
        return each resource's desired and live essence. Raises NodeError when the
        node as a whole cannot be read."""
        ...
