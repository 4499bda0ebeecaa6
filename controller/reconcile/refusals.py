"""Nodes that refused us for good, remembered per node.

A node whose read failed permanently (its credentials refused, its host key or
certificate not verifying, a secret that cannot be read) is not read again at the pace of
another node's temporary failure: every try would be one more refused login, which is
what gets the controller's address locked out (fail2ban on a Linux node, OPNsense's
lockout on a firewall). It is skipped, and reported as still refused, until

* the backoff ceiling passes since it refused (then it is tried once more),
* its Node document or a file or environment variable it references (keys, secrets,
  known_hosts) changes: the digest of those changes, so a fix is tried at once,
* or someone asks by hand (``fazai`` CLI, ``POST /api/v1/.../reconcile``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from controller.model.document import Document
from controller.store import Trigger

# Reading a referenced file for its digest stops here: keys and known_hosts are small.
_MAX_READ = 1 << 20
# A retry timer may fire a little before the ceiling recorded here; this much early still
# counts as "the ceiling passed", so a node refusing alone is not skipped for two ceilings.
_EARLY = timedelta(seconds=1)
MANUAL = frozenset({Trigger.CLI, Trigger.API})


@dataclass(frozen=True)
class Refusal:
    message: str  # what the node's read said (no secret: the exception tree's words)
    digest: str  # of the Node document and what it references, when it refused
    until: datetime  # tried again from then on


def _references(spec: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """("file", path) and ("env", name) of every reference in a Node's spec: the
    ``*Ref`` mappings and the ``*File`` paths."""
    if isinstance(spec, Mapping):
        if key.endswith("Ref"):
            for kind in ("file", "env"):
                if isinstance(spec.get(kind), str):
                    yield kind, spec[kind]
        for name, value in spec.items():
            if str(name).endswith("File") and isinstance(value, str):
                yield "file", value
            else:
                yield from _references(value, str(name))
    elif isinstance(spec, list):
        for item in spec:
            yield from _references(item, key)


def _read(path: str) -> bytes:
    try:
        with Path(os.path.expanduser(path)).open("rb") as handle:
            return handle.read(_MAX_READ)
    except OSError as exc:
        return f"unreadable: {exc.errno}".encode()


def digest(node: Document) -> str:
    """A digest of the node's document and of what its references point at. Only the
    digest is kept: no secret is held in memory longer than the hash takes."""
    hashed = hashlib.sha256()
    document = {"kind": node.kind, "name": node.name, "labels": dict(node.labels)}
    hashed.update(json.dumps(document, sort_keys=True, default=str).encode())
    hashed.update(json.dumps(node.spec, sort_keys=True, default=str).encode())
    for kind, where in sorted(set(_references(node.spec))):
        hashed.update(f"\0{kind}:{where}\0".encode())
        if kind == "env":
            hashed.update(os.environ.get(where, "\0unset").encode())
        else:
            hashed.update(_read(where))
    return hashed.hexdigest()


class Refusals:
    """The nodes of one source that refused us, and when each is tried again."""

    def __init__(self) -> None:
        self._nodes: dict[str, Refusal] = {}

    def __contains__(self, node: str) -> bool:
        return node in self._nodes

    def skip(
        self, nodes: Mapping[str, Document], trigger: Trigger, now: datetime
    ) -> dict[str, str]:
        """The nodes not to read in this pass, with what to report for each. Forgets the
        refusals that no longer hold (ceiling passed, document or references changed, a
        node gone, a manual trigger)."""
        if trigger in MANUAL:
            self._nodes.clear()
        out: dict[str, str] = {}
        for name, refusal in list(self._nodes.items()):
            node = nodes.get(name)
            if node is None or now >= refusal.until - _EARLY or digest(node) != refusal.digest:
                del self._nodes[name]
                continue
            out[name] = (
                f"still refused: {refusal.message}, retrying at "
                f"{refusal.until.strftime('%Y-%m-%d %H:%M:%S %Z').strip()} "
                "(or at once when its Node document or what it references changes)"
            )
        return out

    def refused(self, node: Document, message: str, until: datetime) -> None:
        self._nodes[node.name] = Refusal(message, digest(node), until)

    def forget(self, node: str) -> None:
        self._nodes.pop(node, None)
