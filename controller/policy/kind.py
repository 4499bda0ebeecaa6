"""The ``Policy`` kind, registered with the model's kinds the way platforms register theirs:
importing ``controller.policy`` makes Policy documents known to ``fazai validate`` with
their CEL checks. The model never imports this package; without it a Policy document is
an unknown kind, refused, never silently accepted."""

from __future__ import annotations

from controller.model import kinds
from controller.policy.check import check_policy

POLICY = kinds.register(kinds.Kind("Policy", check=check_policy, targeted=False))
