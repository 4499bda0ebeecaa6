"""Write desired-state folders for integration tests against the fleet."""

from __future__ import annotations

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
