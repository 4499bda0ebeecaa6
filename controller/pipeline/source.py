"""The source stage: documents read from a source tree (a folder, a git ref) into a
validated desired state, with every kind known (the platforms' and the Policy kind), so that a
repository's guardrails are loaded, and checked, with the rest of its documents."""

from __future__ import annotations

import controller.policy  # noqa: F401  (importing the evaluator registers the Policy kind)
from controller import providers
from controller.model import loader
from controller.model.state import DesiredState
from controller.source.tree import SourceTree


def load(tree: SourceTree) -> DesiredState:
    """``tree``'s desired state (InvalidInputError with every problem found)."""
    providers.load_all()
    return loader.load(tree)
