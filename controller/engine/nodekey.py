"""What machine a Node document names, for the machine-wide writer lock.

Two state files (``sudo fazai apply`` and ``fazai apply``; a systemd ``serve`` and an
operator's default store) each have their own node locks; both must still exclude each
other on one machine. The key is what the provider connects to, normalised the way the
connection would be (a default port spelled out, case where it does not matter), so
two documents naming one node by one address share it. A DNS name and an IP address of
the same machine do not: this is exclusion on one controller host, not a cluster lock.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller import providers


def node_key(spec: Mapping[str, Any]) -> str | None:
    """``PLATFORM:WHAT-IT-CONNECTS-TO`` as the node's provider spells it (``linux:ADDRESS:
    PORT``, ``opnsense:SCHEME://HOST:PORT/PATH``); None when the document says no address
    (validation refuses that before any write)."""
    key = providers.for_platform(str(spec.get("platform"))).machine_key(spec)
    return None if key is None else f"{spec.get('platform')}:{key}"
