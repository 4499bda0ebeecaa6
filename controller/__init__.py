"""FazAI: a declarative GitOps reconciliation controller for OPNsense firewalls and Linux servers.

The public surface is small and re-exported here; internal code imports modules, not names.
"""

from controller.errors import (
    FazaiError,
    InvalidInputError,
    NodeError,
    SourceError,
)
from controller.model.state import DesiredState
from controller.engine.plan import Plan

__version__ = "0.1.0"

__all__ = [
    "DesiredState",
    "FazaiError",
    "InvalidInputError",
    "NodeError",
    "Plan",
    "SourceError",
    "__version__",
]
