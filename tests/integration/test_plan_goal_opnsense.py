"""`fazai plan` of an OPNsense node with a Goal, against the emulator over real HTTPS.

A failing goal is a difference no handler can write: the plan shows it unresolved with
the failing checks, exits 1, and its JSON says "unresolved"; a goal whose checks pass
plans in sync next to the node's other objects.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from controller.plan import plan_json
from controller.store import StateStore
from controller.testing.opnsense import EmulatorServer
from tests.integration.firewallkit import firewall_node


def fazai(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from controller.cli import run; run()", *args],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "300"},
    )  # fmt: skip


def doc(kind: str, doc_name: str, /, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "fazai.dev/v1alpha1", "kind": kind, "metadata": {"name": doc_name},
            "spec": {"target": {"node": "edge-fw"}, **spec}}  # fmt: skip


def goal(name: str, *checks: dict[str, Any]) -> dict[str, Any]:
    return doc("Goal", name, description=f"{name}, as the operator wants it", checks=list(checks))


@pytest.fixture
def emu() -> Iterator[EmulatorServer]:
    with EmulatorServer(version="26.1", tls=True) as server:
        yield server


def write(folder: Path, emu: EmulatorServer, tmp_path: Path, mp: pytest.MonkeyPatch,
          *documents: dict[str, Any]) -> None:  # fmt: skip
    node = firewall_node("edge-fw", emu, tmp_path, mp)
    folder.mkdir(exist_ok=True)
    (folder / "fw.yaml").write_text(yaml.safe_dump_all([node, *documents], sort_keys=False))


DNS_UP = {"name": "dns-up", "get": "unbound/service/status",
          "expect": {"path": "status", "equals": "running"}}  # fmt: skip
IDS_ON = {"name": "ids-on", "get": "ids/settings/get",
          "expect": {"path": "ids.general.enabled", "equals": "1"}}  # fmt: skip
SERIES = {"name": "series", "get": "core/firmware/status",
          "expect": {"path": "product.product_series", "equals": "25.7"}}  # fmt: skip


def test_failing_goal_plans_unresolved_and_exits_1(
    emu: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "state"
    write(
        folder, emu, tmp_path, monkeypatch,
        doc("FirewallAlias", "web", name="web", type="host", content=["192.0.2.10"]),
        goal("ids", IDS_ON, SERIES, DNS_UP),
        goal("dns", DNS_UP),
    )  # fmt: skip
    done = fazai("plan", str(folder), "--output", "json")
    assert done.returncode == 1, done.stderr
    out = json.loads(done.stdout)
    jsonschema.validate(out, plan_json.schema())
    by_name = {(c["kind"], c["name"]): c for c in out["changes"]}
    ids = by_name[("Goal", "ids")]
    assert ids["action"] == "unresolved"
    if "reason" in ids:  # the plan JSON's reason field is being added alongside
        assert ids["reason"] == "checks failing: ids-on (HTTP 404), series (value differs)"
    assert by_name[("FirewallAlias", "web")]["action"] == "create"
    dns = by_name.get(("Goal", "dns"))
    assert dns is None or dns["action"] == "noop"
    assert "26.1" not in json.dumps(ids)  # the live value is never shown

    text = fazai("plan", str(folder))
    assert text.returncode == 1, text.stderr
    assert "Goal/ids" in text.stdout
    assert "unresolved" in text.stdout
    assert "Goal/dns" not in text.stdout  # in sync: not listed
    assert emu.requests.count("POST") == 0  # a plan writes nothing


def test_goal_that_passes_plans_in_sync(
    emu: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "state"
    write(folder, emu, tmp_path, monkeypatch, goal("dns", DNS_UP))
    done = fazai("plan", str(folder), "--output", "json")
    assert done.returncode == 0, (done.stdout, done.stderr)
    out = json.loads(done.stdout)
    assert [c for c in out["changes"] if c["action"] != "noop"] == []


def test_apply_writes_the_objects_and_never_the_goal(
    emu: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, db = tmp_path / "state", tmp_path / "state.db"
    write(
        folder, emu, tmp_path, monkeypatch,
        doc("FirewallAlias", "web", name="web", type="host", content=["192.0.2.10"]),
        goal("ids", IDS_ON),
    )  # fmt: skip
    applied = fazai("apply", str(folder), "--state", str(db), "--auto-approve")
    assert applied.returncode == 1, (applied.stdout, applied.stderr)  # converged, one left
    assert "Goal/ids: checks failing: ids-on (HTTP 404)" in applied.stdout + applied.stderr
    writes = [r.path for r in emu.requests if r.method == "POST"]
    assert writes == ["/api/firewall/alias/addItem", "/api/firewall/alias/reconfigure"]
    with StateStore(db) as store:
        assert {(o.kind, o.name) for o in store.owned("edge-fw")} == {("FirewallAlias", "web")}
    after = json.loads(fazai("plan", str(folder), "-o", "json").stdout)
    assert {(c["kind"], c["action"]) for c in out_changes(after)} == {("Goal", "unresolved")}


def out_changes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in plan["changes"] if c["action"] != "noop"]
