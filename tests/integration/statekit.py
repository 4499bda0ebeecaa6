"""Write desired-state folders for integration tests against the fleet."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from controller.testing.fleet import Fleet


def node_doc(
    fleet: Fleet, name: str, known_hosts: Path | None = None, **spec: Any
) -> dict[str, Any]:
    node = fleet.nodes[name]
    return {
        "apiVersion": "fazai.dev/v1alpha1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"fleet": "test"}},
        "spec": {
            "platform": "linux",
            "address": node.address,
            "auth": {"privateKeyFile": str(fleet.private_key_file)},
            "knownHostsFile": str(known_hosts or fleet.known_hosts_file),
            "connectTimeout": 3,
            **spec,
        },
    }


def resource(kind: str, doc_name: str, target: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "fazai.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": doc_name},
        "spec": {"target": target, **spec},
    }


def write_state(folder: Path, documents: Iterable[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "state.yaml").write_text(yaml.safe_dump_all(list(documents), sort_keys=False))
    return folder


def done_steps(db: Path) -> int:
    """How many journal steps a running apply has marked done (0 before its store exists).

    The read-only connection is closed at once: one left open idle holds no lock on the
    WAL index, so another process closing the last writer deletes it, and a later
    connection of this process would share the dead mapping ("database disk image is
    malformed")."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
    except sqlite3.Error:
        return 0
    try:
        row = conn.execute("SELECT count(*) FROM steps WHERE status = 'done'").fetchone()
        return int(row[0])
    except sqlite3.Error:
        return 0
    finally:
        conn.close()
