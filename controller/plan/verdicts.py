"""What the policy stage says of a plan item, and the run it says it for.

A verdict names the policy and rule that produced it, so every output can show, next to
the item, why it is denied or waits for approval.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Effect(StrEnum):
    DENY = "deny"  # wins over everything: nothing of the plan is applied
    REQUIRE_APPROVAL = "requireApproval"  # applied only once approved, even in auto mode
    ALLOW = "allow"  # an explicit exception to a shipped default (carries a reason)


@dataclass(frozen=True)
class Verdict:
    policy: str  # the Policy document's metadata.name
    rule: str  # the rule's name, or its index in spec.rules
    effect: Effect
    message: str
    approvals: int = 1  # distinct approvers needed (requireApproval only)
    reason: str | None = None  # why an allow overrides a default


@dataclass(frozen=True)
class RunContext:
    """The run a plan is checked for: what started it, how it applies, and who asked."""

    trigger: str  # cli, commit, schedule, webhook, api, agent
    mode: str  # auto, manual, detect, or the CLI's apply/plan
    actor: str  # the OS user, the API token's name, the commit's author
    source: str = ""  # the source's name in fazai.yaml, or the directory/repository planned
