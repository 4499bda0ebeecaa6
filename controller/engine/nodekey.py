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
from urllib.parse import urlsplit

SSH_PORT = 22
_HTTP_PORTS = {"http": 80, "https": 443}


def node_key(spec: Mapping[str, Any]) -> str | None:
    """``linux:ADDRESS:PORT`` or ``opnsense:SCHEME://HOST:PORT/PATH``; None when the
    document says no address (validation refuses that before any write)."""
    platform = spec.get("platform")
    if platform == "opnsense":
        url = spec.get("url")
        if not isinstance(url, str) or not url:
            return None
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        try:
            port = parts.port or _HTTP_PORTS.get(scheme, 0)
        except ValueError:
            port = 0
        host = (parts.hostname or "").lower()
        return f"opnsense:{scheme}://{host}:{port}{parts.path.rstrip('/')}"
    address = spec.get("address")
    if not isinstance(address, str) or not address:
        return None
    host = address.strip().lower().removeprefix("[").removesuffix("]")
    return f"{platform}:{host}:{spec.get('port') or SSH_PORT}"
