"""What one run of the agent on one goal and node came to: typed, frozen, JSON-free."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    RESOLVED = "resolved"  # a tool was verified on the node and applied
    UNRESOLVED = "unresolved"  # the budget, the model or verification ended it unmet
    ABORTED = "aborted"  # a person stopped it (Ctrl-C, the API, fazai watch)
    ASKED = "asked"  # it waits for a person's answer to a question
    PROPOSED = "proposed"  # fazai plan --agent: a tool it would try, not applied


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
    proposed: bool = False  # not tried: only proposed (fazai plan --agent)


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
    committed: str | None = None  # the commit or pull request it went back as, or why not

    @property
    def resolved(self) -> bool:
        return self.outcome is Outcome.RESOLVED

    def transcript(self) -> list[dict[str, Any]]:
        """The turns as plain data (already masked when they were recorded)."""
        return [
            {"index": t.index, "action": t.action, "observation": t.observation,
             "spent": t.tokens, "backend": t.backend}
            for t in self.turns
        ]  # fmt: skip

    def transcript_sha256(self) -> str:
        text = json.dumps(self.transcript(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """The episode as JSON for `fazai agent --output json`, the audit trail and the
        API (no key is named like a secret: the store would mask it)."""
        out: dict[str, Any] = {
            "goal": self.goal,
            "node": self.node,
            "outcome": self.outcome.value,
            "path": self.path.value,
            "reason": self.reason,
            "spent": self.tokens,
            "calls": self.calls,
            "seconds": round(self.seconds, 3),
            "model": self.model,
            "backend": self.backend,
            "transcriptSha256": self.transcript_sha256(),
            "turns": self.transcript(),
        }
        if self.question is not None:
            out["question"] = self.question
        if self.committed is not None:
            out["committed"] = self.committed
        if self.tool is not None:
            out["tool"] = {
                "name": self.tool.name,
                "spec": dict(self.tool.spec),
                "params": dict(self.tool.params),
                "evidence": list(self.tool.evidence),
            }
        return out
