"""The OPNsense kinds and their own rules."""

from __future__ import annotations

from controller.model.kinds import NODE_CHECKS, Kind, register
from controller.providers.opnsense import checks

NODE_CHECKS["opnsense"] = checks.check_node

FIREWALL_ALIAS = register(
    Kind("FirewallAlias", lambda s: str(s["name"]), name_field="name", check=checks.check_alias)
)
# Rules have no name on the firewall: FazAI identifies them by a uuid derived from the
# document (see identity.py), so no two documents can claim the same rule.
FIREWALL_RULE = register(Kind("FirewallRule", check=checks.check_rule))
HOST_OVERRIDE = register(Kind("HostOverride", check=checks.check_host_override))
