"""FazAI: a declarative GitOps reconciliation controller for OPNsense firewalls and Linux servers.

The public surface is small and re-exported here; internal code imports modules, not names.
Re-exports resolve lazily so that ``fazai validate`` does not pay for the SSH and diff
machinery it never uses.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "FazaiError": "controller.errors",
    "InvalidInputError": "controller.errors",
    "NodeError": "controller.errors",
    "SourceError": "controller.errors",
    "DesiredState": "controller.model.state",
    "Plan": "controller.plan.items",
}

__all__ = sorted([*_EXPORTS, "__version__"])

if TYPE_CHECKING:
    from controller.errors import FazaiError as FazaiError
    from controller.errors import InvalidInputError as InvalidInputError
    from controller.errors import NodeError as NodeError
    from controller.errors import SourceError as SourceError
    from controller.model.state import DesiredState as DesiredState
    from controller.plan.items import Plan as Plan


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'controller' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
