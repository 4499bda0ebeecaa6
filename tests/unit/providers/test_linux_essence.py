"""Linux plans from recorded fact answers: state + desired documents -> plan items.

Each case under tests/data/linux_plans holds the documents, the answer remote_facts.py
gave (recorded), and the plan items expected; resources not listed must be in sync. An
expected ``{fingerprint-of: SHA256}`` is the keyed fingerprint this process gives that
digest (the key is drawn anew by every process, so no file can hold the value itself).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.model import loader
from controller.plan.diff import Action, compare
from controller.providers.linux import essence
from controller.source.open import open_source

CASES = sorted((Path(__file__).parents[2] / "data" / "linux_plans").glob("*.yaml"))
NODE = {
    "apiVersion": "fazai.dev/v1alpha1",
    "kind": "Node",
    "metadata": {"name": "web-1"},
    "spec": {"platform": "linux", "address": "192.0.2.10"},
}


def plan_items(case: dict[str, Any], tmp_path: Path) -> list[dict[str, Any]]:
    docs = [NODE]
    for doc in case["documents"]:
        spec = {"target": {"node": "web-1"}, **doc["spec"]}
        docs.append({"apiVersion": "fazai.dev/v1alpha1", **doc, "spec": spec})
    (tmp_path / "state.yaml").write_text(yaml.safe_dump_all(docs))
    state = loader.load(open_source(str(tmp_path)))
    request = essence.FactRequest()
    readers = {doc: essence.prepare(doc, state.source, request) for doc in state.resources}
    items = []
    for doc, read in readers.items():
        observed = read(case["answer"])
        action, changes = compare(observed, str(doc.spec.get("path") or doc.subject))
        item: dict[str, Any] = {
            "kind": doc.kind,
            "name": doc.name,
            "action": action.value,
            "changes": [
                {
                    "field": c.field,
                    "live": c.live,
                    "desired": c.desired,
                    **({"diff": c.diff} if c.diff else {}),
                }
                for c in changes
            ],
        }
        if observed.error:
            item["error"] = observed.error
        items.append(item)
    return items


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_recorded_answers_plan_as_expected(path: Path, tmp_path: Path) -> None:
    case = yaml.safe_load(path.read_text())
    items = plan_items(case, tmp_path)
    changed = [i for i in items if i["action"] != Action.NOOP.value]
    key = lambda i: (i["kind"], i["name"])  # noqa: E731
    assert sorted(changed, key=key) == sorted(_fingerprinted(case["expect"]), key=key)


def _fingerprinted(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"fingerprint-of"}:
        return essence.fingerprint(value["fingerprint-of"])
    if isinstance(value, dict):
        return {k: _fingerprinted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_fingerprinted(v) for v in value]
    return value


def test_sensitive_file_content_never_travels_or_shows(tmp_path: Path) -> None:
    case = yaml.safe_load((CASES[0].parent / "files.yaml").read_text())
    items = plan_items(case, tmp_path)
    secret = next(i for i in items if i["name"] == "secret")
    assert "s3cr3t" not in repr(secret)
    assert all("diff" not in c for c in secret["changes"])

    state = loader.load(open_source(str(tmp_path)))
    request = essence.FactRequest()
    for doc in state.resources:
        essence.prepare(doc, state.source, request)
    wants = {f["path"]: f["want_content"] for f in request.files}
    # The node is never asked to send a sensitive file's content.
    assert wants["/etc/app/token"] is False
    assert wants["/etc/motd"] is True
