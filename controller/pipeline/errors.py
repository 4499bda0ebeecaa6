"""The pipeline's refusals, in the one exception tree (under ``FazaiError``).

    FazaiError
    ├── PolicyError           the policies could not be evaluated: fails closed, nothing
    │                         of the plan is written
    ├── PolicyRefused         the policy stage does not let the plan be written
    │   ├── PolicyDenied          a policy denies an item: nothing of the plan is written
    │   └── ApprovalRequired      a policy asks for an approval this entry point cannot give
    └── RollbackSuperseded    a rollback's snapshot would undo later runs not asked for

Both are permanent: the same plan is refused again until the documents, the policies or
the live state change. ``lines`` are the items and the policies' messages, for people.
"""

from __future__ import annotations

from collections.abc import Sequence

from controller.errors import FazaiError


class PolicyError(FazaiError):
    pass


class PolicyRefused(FazaiError):
    def __init__(self, summary: str, lines: Sequence[str]) -> None:
        self.lines = tuple(lines)
        super().__init__(summary + "".join(f"\n  {line}" for line in self.lines))


class PolicyDenied(PolicyRefused):
    pass


class ApprovalRequired(PolicyRefused):
    def __init__(self, summary: str, lines: Sequence[str], required: int) -> None:
        self.required = required
        super().__init__(summary, lines)


class RollbackSuperseded(FazaiError):
    pass
