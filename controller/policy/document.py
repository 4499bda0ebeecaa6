"""The ``Policy`` kind as typed values: what a document says, before anything is compiled.

Shaped like Kubernetes' ValidatingAdmissionPolicy: ``spec.match`` says which plan items
the policy looks at, ``spec.rules`` what it says of each, as CEL expressions over the
item, its node and the run (see ``activation``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.model.document import Document
from controller.plan.verdicts import Effect


@dataclass(frozen=True)
class Match:
    """Which plan items a policy applies to; an empty tuple (or selector) matches all."""

    kinds: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()
    node_labels: Mapping[str, str] | None = None  # spec.match.nodeSelector.matchLabels
    actions: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    triggers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rule:
    name: str
    expression: str
    effect: Effect
    message: str
    approvals: int = 1
    reason: str | None = None
    overrides: frozenset[tuple[str, str]] = frozenset()  # allow: (policy, rule) it lifts


@dataclass(frozen=True)
class Policy:
    name: str
    match: Match
    rules: tuple[Rule, ...]
    shipped: bool = False  # one of FazAI's defaults (policies/), not the repository's
    document: Document | None = None


def from_document(document: Document, *, shipped: bool = False) -> Policy:
    """The typed policy of a schema-valid ``Policy`` document."""
    spec = document.spec
    match: Mapping[str, Any] = spec.get("match", {})
    selector = match.get("nodeSelector", {}).get("matchLabels")
    rules = tuple(
        Rule(
            name=str(rule.get("name") or index),
            expression=rule["expression"],
            effect=Effect(rule["effect"]),
            message=rule.get("message") or f"rule {rule.get('name') or index}",
            approvals=int(rule.get("approvals", 1)),
            reason=rule.get("reason"),
            overrides=frozenset(
                (policy, name)
                for policy, _, name in (str(o).partition("/") for o in rule.get("overrides", ()))
            ),
        )
        for index, rule in enumerate(spec["rules"])
    )
    return Policy(
        name=document.name,
        match=Match(
            kinds=tuple(match.get("kinds", ())),
            platforms=tuple(match.get("platforms", ())),
            node_labels=dict(selector) if selector else None,
            actions=tuple(match.get("actions", ())),
            sources=tuple(match.get("sources", ())),
            triggers=tuple(match.get("triggers", ())),
        ),
        rules=rules,
        shipped=shipped,
        document=document,
    )
