"""Does a webhook's repository URL name a configured source?

Forges send several URLs for one repository (``https://host/acme/infra.git``,
``git@host:acme/infra.git``, ``https://host/acme/infra``); they name the same source when
host and path agree, whatever the scheme, user, port, letter case or ``.git`` suffix.
Local paths compare by their real path.
"""

from __future__ import annotations

import os
import re
from urllib.parse import unquote, urlsplit

_SCP_LIKE = re.compile(r"^(?:[^@/]+@)?([^:/]+):(?!//)(.+)$")


def repository_key(location: str) -> str:
    text = location.strip()
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme == "file":
            return "file:" + os.path.realpath(unquote(parts.path))
        host, path = (parts.hostname or "").lower(), unquote(parts.path)
    else:
        scp = _SCP_LIKE.match(text)
        if scp is None or text.startswith(("/", ".", "~")):
            return "file:" + os.path.realpath(os.path.expanduser(text))
        host, path = scp.group(1).lower(), scp.group(2)
    path = path.strip("/").removesuffix(".git").rstrip("/").lower()
    return f"{host}/{path}"


def same_repository(a: str, b: str) -> bool:
    return repository_key(a) == repository_key(b)


def branch_name(ref: str) -> str:
    return ref.strip().removeprefix("refs/heads/")
