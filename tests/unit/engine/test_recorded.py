"""recorded.bind: documents get the uuid the inventory owns for them, and only that."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from controller.engine import recorded
from controller.model import loader
from controller.model.state import DesiredState
from controller.providers.opnsense.identity import object_uuid
from controller.source.open import open_source
from controller.store import OwnedObject

HAND = "0b9a5f38-0000-4000-8000-000000000000"
HAND_2 = "1c8d2a1f-4d2b-4e8f-8b66-2e3c4d5e6f70"


def node(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "fazai.dev/v1alpha1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"role": "firewall"}},
        "spec": {
            "platform": "opnsense",
            "url": f"https://{name}.example.net",
            "apiKeyRef": {"env": "FW_KEY"},
            "apiSecretRef": {"env": "FW_SECRET"},
        },
    }


def rule(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "fazai.dev/v1alpha1",
        "kind": "FirewallRule",
        "metadata": {"name": name},
        "spec": {"target": {"matchLabels": {"role": "firewall"}}, "interface": "lan", **spec},
    }


def load(tmp_path: Path, *docs: dict[str, Any]) -> DesiredState:
    (tmp_path / "docs.yaml").write_text(
        yaml.safe_dump_all([node("fw-a"), node("fw-b"), *docs], sort_keys=False)
    )
    return loader.load(open_source(str(tmp_path)))


def owned(node_name: str, name: str, platform_id: str) -> OwnedObject:
    return OwnedObject(node_name, "FirewallRule", name, platform_id, 1, datetime.now(UTC))


def test_each_node_s_recorded_uuid_is_given_to_a_document_without_adopt(tmp_path: Path) -> None:
    docs = [rule("ssh"), rule("web", adopt={"uuid": HAND_2}), rule("gone", state="absent")]
    state = load(tmp_path, *docs, rule("mine"))
    mine = object_uuid("fw-a", "FirewallRule", "mine")
    inventory = {
        "fw-a": [owned("fw-a", n, HAND) for n in ("ssh", "web", "gone")]
        + [owned("fw-a", "mine", mine)],
        "fw-b": [owned("fw-b", "ssh", HAND_2.upper()), owned("fw-b", "mine", "mine")],
    }
    bound = {d.name: d.spec for d in recorded.bind(state, inventory).resources}
    assert bound["ssh"]["recorded"] == {"fw-a": HAND, "fw-b": HAND_2}
    # spec.adopt decides; a deleting document and FazAI's own derived uuid need nothing.
    assert all("recorded" not in bound[name] for name in ("web", "gone", "mine"))
    assert recorded.bind(state, {}) is state
