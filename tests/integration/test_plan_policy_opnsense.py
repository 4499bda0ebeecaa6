"""`fazai plan` and `plan --base --head` (the pull-request review) against the OPNsense
emulator over real HTTPS: every output carries the policies' verdicts next to the item."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import git
import jsonschema
import pytest
import yaml

from controller.plan import plan_json
from controller.testing.opnsense import EmulatorServer
from tests.integration.firewallkit import firewall_node

AUTHOR = git.Actor("Test", "test@example.invalid")


def fazai(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from controller.cli import run; run()", *args],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "300"},
    )  # fmt: skip


def doc(kind: str, name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "fazai.dev/v1alpha1", "kind": kind, "metadata": {"name": name},
            "spec": {"target": {"node": "edge-fw"}, **spec}}  # fmt: skip


DENY_HOST = {
    "apiVersion": "fazai.dev/v1alpha1", "kind": "Policy", "metadata": {"name": "dns-names"},
    "spec": {"match": {"kinds": ["HostOverride"]}, "rules": [
        {"name": "no-intranet", "effect": "deny", "message": "intranet names stay internal",
         "expression": '"hostname" in item.spec && item.spec.hostname == "intranet"'}]},
}  # fmt: skip


@pytest.fixture
def emu() -> Any:
    with EmulatorServer(version="26.1", tls=True) as server:
        yield server


def write(folder: Path, emu: EmulatorServer, tmp_path: Path, mp: pytest.MonkeyPatch,
          *documents: dict[str, Any]) -> None:  # fmt: skip
    node = firewall_node("edge-fw", emu, tmp_path, mp)
    node["spec"]["controllerInterfaces"] = ["lan"]
    folder.mkdir(exist_ok=True)
    (folder / "fw.yaml").write_text(yaml.safe_dump_all([node, *documents], sort_keys=False))


def test_plan_shows_verdicts_in_every_output(
    emu: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "state"
    write(
        folder, emu, tmp_path, monkeypatch,
        doc("FirewallRule", "block-lan", action="block", interface="lan", protocol="TCP",
            destination={"port": 22}, sequence=10),
        doc("FirewallRule", "block-wan", action="block", interface="wan", sequence=20),
        doc("HostOverride", "intranet", hostname="intranet", domain="example.net",
            server="10.0.0.9"),
        DENY_HOST,
    )  # fmt: skip
    done = fazai("plan", str(folder), "--output", "json")
    assert done.returncode == 1, done.stderr
    out = json.loads(done.stdout)
    jsonschema.validate(out, plan_json.schema())
    verdicts = {c["name"]: c.get("verdicts", []) for c in out["changes"]}
    assert verdicts["block-lan"] == [
        {"policy": "fazai-firewall-rules", "rule": "block-on-controller-interface",
         "effect": "requireApproval", "approvals": 1,
         "message": "a block or reject rule on an interface the controller reaches the "
                    "firewall through could lock it out"}
    ]  # fmt: skip
    assert verdicts["block-wan"] == []  # the controller arrives on lan
    assert [(v["policy"], v["effect"]) for v in verdicts["intranet"]] == [("dns-names", "deny")]

    text = fazai("plan", str(folder))
    lines = text.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if "HostOverride/intranet" in line)
    assert lines[at + 1].strip() == (
        "policy denied by dns-names/no-intranet: intranet names stay internal"
    )
    assert "policy: 1 change(s) denied; nothing of this plan is applied" in text.stdout

    markdown = fazai("plan", str(folder), "--output", "markdown").stdout
    assert (
        "  - ✋ policy **needs approval** by `fazai-firewall-rules/block-on-controller-interface`"
        in markdown
    )


def test_pull_request_plan_shows_the_heads_verdicts(
    emu: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "infra"
    repository = git.Repo.init(root, initial_branch="main")
    www = doc("HostOverride", "www", hostname="www", domain="example.net", server="10.0.0.8")
    write(root, emu, tmp_path, monkeypatch, www)
    repository.index.add(["fw.yaml"])
    repository.index.commit("base", author=AUTHOR, committer=AUTHOR)
    repository.create_head("feature").checkout()
    write(root, emu, tmp_path, monkeypatch,
          www,
          doc("HostOverride", "intranet", hostname="intranet", domain="example.net",
              server="10.0.0.9"),
          DENY_HOST)  # fmt: skip
    repository.index.add(["fw.yaml"])
    repository.index.commit("head", author=AUTHOR, committer=AUTHOR)
    done = fazai("plan", str(root), "--base", "main", "--head", "feature", "-o", "markdown")
    assert done.returncode == 1, done.stderr
    assert "⛔ policy **denied** by `dns-names/no-intranet`: intranet names stay internal" in (
        done.stdout
    )
    assert "**⛔ policy: 1 change(s) denied; nothing of this plan is applied**" in done.stdout
