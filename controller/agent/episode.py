"""What one run of the agent on one goal and node came to: typed, frozen, JSON-free."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    RESOLVED = "resolved"  # a tool was verified on the node and applied
    UNRESOLVED = "unresolved"  # the budget, the model or verification ended it unmet
    ABORTED = "aborted"  # a person stopped it (Ctrl-C, the API, fazai watch)
    ASKED = "asked"  # it waits for a person's answer to a question


class Path(StrEnum):
    """How a goal was resolved, cheapest first (the metrics count each)."""

    BOUND = "bound"  # the goal's resolvedBy tool: no model call
    RETRIEVED = "retrieved"  # a verified tool from the knowledge base, params by the model
    SYNTHESIZED = "synthesized"  # a new tool the model wrote
    FAILED = "failed"


@dataclass(frozen=True)
class Verification:
    """A tool tried on a node inside one transaction: verified, or why not (the node was
    rolled back then)."""

    verified: bool
    reason: str
    evidence: tuple[str, ...] = ()


@dataclass(frozen=True)
class VerifiedTool:
    name: str
    spec: Mapping[str, Any] = field(compare=False)
    params: Mapping[str, Any] = field(compare=False)
    evidence: tuple[str, ...] = ()


@dataclass(frozen=True)
class Turn:
    """One iteration: the action as the model wrote it (normalized) and what came of it."""

    index: int
    action: str
    observation: str
    tokens: int = 0
    seconds: float = 0.0
    backend: str = ""


@dataclass(frozen=True)
class Episode:
    goal: str
    node: str
    outcome: Outcome
    path: Path
    reason: str
    turns: tuple[Turn, ...] = ()
    tokens: int = 0
    calls: int = 0  # model calls
    seconds: float = 0.0
    tool: VerifiedTool | None = None
    question: str | None = None  # ASKED: what it asks
    model: str = ""
    backend: str = ""

    @property
    def resolved(self) -> bool:
        return self.outcome is Outcome.RESOLVED
