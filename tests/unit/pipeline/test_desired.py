"""The desired stage keeps the repository's guardrails: binding and pruning a state must
not drop its Policy documents, or a pruning apply would run with the defaults only."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import yaml

from controller.pipeline import desired, source
from controller.source.open import open_source
from controller.store import OwnedObject

WEB = {
    "apiVersion": "fazai.dev/v1alpha1",
    "kind": "Node",
    "metadata": {"name": "web-1"},
    "spec": {"platform": "linux", "address": "192.0.2.10", "prune": True},
}
GUARD = {
    "apiVersion": "fazai.dev/v1alpha1",
    "kind": "Policy",
    "metadata": {"name": "keep-motd"},
    "spec": {
        "match": {"kinds": ["File"], "actions": ["delete"]},
        "rules": [{"name": "no", "effect": "deny", "message": "keep it", "expression": "true"}],
    },
}


def test_pruning_keeps_the_policy_documents(tmp_path: Path) -> None:
    (tmp_path / "docs.yaml").write_text(yaml.safe_dump_all([WEB, GUARD], sort_keys=False))
    state = source.load(open_source(str(tmp_path)))
    assert [d.name for d in state.controls] == ["keep-motd"]
    owned = {
        "web-1": [
            OwnedObject(
                "web-1", "File", "motd", "/etc/motd", None, datetime(2026, 1, 1, tzinfo=UTC)
            )
        ]
    }
    pruning = desired.prepare(state, owned, prune_flag=False)
    assert [(d.kind, d.name) for d in pruning.state.resources] == [("File", "motd")]
    assert [d.name for d in pruning.state.controls] == ["keep-motd"]
