"""The policy stage: Policy documents (the repository's and the shipped defaults),
compiled once, evaluated for every plan item before anything is applied.

``load(state)`` gives a :class:`PolicySet`; ``PolicySet.evaluate(plan, run, nodes)``
returns the plan with every item's ``verdicts`` set. A caller gates on the result:
``plan.denied`` (refuse, apply nothing) and ``plan.approvals_needed`` (hold for that
many distinct approvers). Importing this package registers the Policy kind.
"""

from __future__ import annotations

from controller.policy import kind as _kind  # noqa: F401  (registers the Policy kind)
from controller.policy.stage import PolicySet, load

__all__ = ["PolicySet", "load"]
