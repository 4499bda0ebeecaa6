"""`fazai drift` against real SSH nodes (10.231.23.0/24): the report of what differs, its
files, its history across runs, and plan's exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from controller.reports import render_json
from controller.testing.fleet import Fleet, NodeSpec, fleet_available
from tests.integration.statekit import resource, write_state

SUBNET = "10.231.23.0/24"
NODES = (NodeSpec("rep-web-1", "10.231.23.21"), NodeSpec("rep-db-1", "10.231.23.22"))
CONF = "listen 443\n"
PATH = "/etc/fazai-report.conf"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    reason = fleet_available()
    if reason is not None:
        pytest.skip(f"no fleet: {reason}")
    workdir = tmp_path_factory.mktemp("reports-fleet")
    with Fleet(NODES, workdir=workdir, subnet=SUBNET, subnet_wait=600) as started:
        yield started


def fazai(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from controller.cli import run; run()", *args],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def documents(fleet: Fleet, extra_node: bool = False) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    nodes = [(n.name, n.address) for n in NODES]
    if extra_node:
        nodes.append(("rep-gone", "10.231.23.99"))  # nothing answers there
    for name, address in nodes:
        docs.append(
            {
                "apiVersion": "fazai.dev/v1alpha1",
                "kind": "Node",
                "metadata": {"name": name},
                "spec": {
                    "platform": "linux",
                    "address": address,
                    "auth": {"privateKeyFile": str(fleet.private_key_file)},
                    "knownHostsFile": str(fleet.known_hosts_file),
                    "connectTimeout": 3,
                },
            }
        )
        docs.append(
            resource("File", f"conf-{name}", {"node": name}, path=PATH, content=CONF, mode="0644")
        )
    return docs


def put(fleet: Fleet, node: str, content: str) -> None:
    fleet.nodes[node].run(f"printf '%s' '{content}' > {PATH} && chmod 0644 {PATH}")


def test_drift_report_of_live_nodes_and_its_history(fleet: Fleet, tmp_path: Path) -> None:
    folder = write_state(tmp_path / "desired", documents(fleet))
    state = tmp_path / "state.db"
    out = tmp_path / "reports"
    put(fleet, "rep-db-1", CONF)
    put(fleet, "rep-web-1", "listen 80\n")
    try:
        drifted = fazai(
            "drift", str(folder), "-o", "json", "--report-dir", str(out), "--state", str(state)
        )
        assert drifted.returncode == 1, drifted.stderr
        document = json.loads(drifted.stdout)
        jsonschema.validate(document, render_json.schema())
        assert document["status"] == "drift" and document["summary"]["drifted"] == 1
        (conf,) = document["resources"]
        assert (conf["node"], conf["kind"], conf["name"], conf["action"]) == (
            "rep-web-1",
            "File",
            "conf-rep-web-1",
            "update",
        )
        (content,) = conf["changes"]
        assert content["field"] == "content"
        assert "-listen 80" in content["diff"] and "+listen 443" in content["diff"]
        assert {n["node"]: n["inSync"] for n in document["nodes"]} == {
            "rep-db-1": True,
            "rep-web-1": False,
        }
        assert {n["platform"] for n in document["nodes"]} == {"linux"}
        files = sorted(p.name for p in out.iterdir())
        assert {"latest.md", "latest.json", "latest.html"} <= set(files)
        assert len(files) == 6
        assert "conf-rep-web-1" in (out / "latest.html").read_text()
        assert "report written to" in drifted.stderr

        put(fleet, "rep-web-1", CONF)  # fixed by hand
        in_sync = fazai("drift", str(folder), "-o", "markdown", "--state", str(state))
        assert in_sync.returncode == 0, in_sync.stderr
        assert "**✅ in sync**: 0 drifted resources on 0 of 2 nodes." in in_sync.stdout
        assert "2 runs; most 1, latest 0" in in_sync.stdout

        history = fazai("history", "-o", "json", "--state", str(state))
        runs = json.loads(history.stdout)
        assert [(r["command"], r["trigger"]) for r in runs] == [("drift", "cli")] * 2
        assert [r["status"] for r in runs] == ["succeeded", "succeeded"]
        assert {n["node"]: n["status"] for n in runs[1]["nodes"]}["rep-web-1"] == "skipped"

        page = fazai("drift", str(folder), "-o", "html", "--state", str(state), "--days", "7")
        assert page.returncode == 0
        assert page.stdout.startswith("<!DOCTYPE html>") and "<svg" in page.stdout
        assert "Drift over the last 7 days" in page.stdout
    finally:
        fleet.nodes["rep-web-1"].run(f"rm -f {PATH}")
        fleet.nodes["rep-db-1"].run(f"rm -f {PATH}")


def test_an_unreachable_node_is_trouble(fleet: Fleet, tmp_path: Path) -> None:
    folder = write_state(tmp_path / "desired", documents(fleet, extra_node=True))
    result = fazai("drift", str(folder), "--state", str(tmp_path / "state.db"))
    assert result.returncode == 2
    assert "drift report fazai drift: trouble" in result.stdout
    assert "rep-gone (linux, -): unreadable: no answer from 10.231.23.99:22" in result.stdout
    unknown = fazai("drift", str(folder), "--node", "nope", "--state", str(tmp_path / "s.db"))
    assert unknown.returncode == 2 and "no Node named nope" in unknown.stderr
