"""`fazai apply` end to end on real nodes: converge, record the run, plan in sync after."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from controller.store import NodeStatus, RunStatus, StateStore
from controller.testing.fleet import Fleet
from tests.integration.statekit import node_doc, resource, write_state


def fazai(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from controller.cli import run; run()", *args],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_apply_converges_records_plans_in_sync_and_rolls_back(fleet: Fleet, tmp_path: Path) -> None:
    node = fleet.nodes["edge-1"]
    on = {"node": "edge-1"}
    state_dir = write_state(
        tmp_path / "state",
        [
            node_doc(fleet, "edge-1"),
            resource(
                "File",
                "banner",
                on,
                path="/etc/fazai-apply-cli.conf",
                content="managed\n",
                mode="0640",
            ),
            resource("Sysctl", "fwd", on, key="net.ipv4.ip_forward", value=1),
        ],
    )
    db = tmp_path / "state.db"
    before_fwd = node.run("sysctl -n net.ipv4.ip_forward").stdout.strip()
    before_conf = node.run("cat /etc/sysctl.d/99-fazai.conf", check=False).stdout
    try:
        refused = fazai("apply", str(state_dir), "--state", str(db))
        assert refused.returncode == 2
        assert "no terminal to confirm on" in refused.stderr
        assert node.run("test -e /etc/fazai-apply-cli.conf", check=False).returncode == 1

        applied = fazai("apply", str(state_dir), "--state", str(db), "--auto-approve")
        assert applied.returncode == 0, applied.stderr
        assert node.run("cat /etc/fazai-apply-cli.conf").stdout == b"managed\n"
        assert node.run("stat -c %a /etc/fazai-apply-cli.conf").stdout.strip() == b"640"
        assert node.run("sysctl -n net.ipv4.ip_forward").stdout.strip() == b"1"

        after = fazai("plan", str(state_dir), "--output", "json")
        assert after.returncode == 0, after.stdout
        assert json.loads(after.stdout)["changes"] == []

        with StateStore(db) as store:
            (run,) = store.list_runs()
            owned = {(o.kind, o.name, o.platform_id) for o in store.owned("edge-1")}
        assert owned == {
            ("File", "banner", "/etc/fazai-apply-cli.conf"),
            ("Sysctl", "fwd", "net.ipv4.ip_forward"),
        }
        assert run.status is RunStatus.SUCCEEDED
        assert [(n.node, n.status) for n in run.nodes] == [("edge-1", NodeStatus.CONVERGED)]
        listed = json.loads(fazai("history", "--state", str(db), "-o", "json").stdout)
        assert [r["id"] for r in listed] == [run.id]

        undone = fazai(
            "rollback", str(run.id), str(state_dir), "--state", str(db), "--auto-approve"
        )
        assert undone.returncode == 0, undone.stderr
        # Exactly as before the run: no file, forwarding off, no persisted sysctl file.
        assert node.run("test -e /etc/fazai-apply-cli.conf", check=False).returncode == 1
        assert node.run("sysctl -n net.ipv4.ip_forward").stdout.strip() == before_fwd
        assert node.run("cat /etc/sysctl.d/99-fazai.conf", check=False).stdout == before_conf
        with StateStore(db) as store:
            latest = store.list_runs()[0]
        assert (latest.command.value, latest.status) == ("rollback", RunStatus.SUCCEEDED)
    finally:
        node.run("rm -f /etc/fazai-apply-cli.conf /etc/sysctl.d/99-fazai.conf")
        node.run("sysctl -qw net.ipv4.ip_forward=0")


def test_prune_deletes_only_what_fazai_created(fleet: Fleet, tmp_path: Path) -> None:
    node = fleet.nodes["edge-1"]
    on = {"node": "edge-1"}
    keep = resource("File", "keep", on, path="/etc/fazai-keep", content="keep\n")
    gone = resource("File", "gone", on, path="/etc/fazai-gone", content="gone\n")
    db = tmp_path / "state.db"
    node.run("echo 'made by hand' > /etc/fazai-unowned")
    try:
        both = write_state(tmp_path / "both", [node_doc(fleet, "edge-1"), keep, gone])
        assert fazai("apply", str(both), "--state", str(db), "--auto-approve").returncode == 0

        # The document of /etc/fazai-gone is removed, and a document now describes neither
        # it nor /etc/fazai-unowned.
        one = write_state(tmp_path / "one", [node_doc(fleet, "edge-1"), keep])
        quiet = json.loads(fazai("plan", str(one), "--state", str(db), "-o", "json").stdout)
        assert quiet["changes"] == []  # without prune, nothing is ever deleted

        pruning = fazai("plan", str(one), "--state", str(db), "--prune", "-o", "json")
        assert pruning.returncode == 1
        planned = json.loads(pruning.stdout)["changes"]
        assert [(c["kind"], c["name"], c["action"]) for c in planned] == [
            ("File", "gone", "delete")
        ]

        applied = fazai("apply", str(one), "--state", str(db), "--prune", "--auto-approve")
        assert applied.returncode == 0, applied.stderr
        assert node.run("test -e /etc/fazai-gone", check=False).returncode == 1
        assert node.run("cat /etc/fazai-keep").stdout == b"keep\n"
        assert node.run("cat /etc/fazai-unowned").stdout == b"made by hand\n"
        with StateStore(db) as store:
            assert [(o.kind, o.name) for o in store.owned("edge-1")] == [("File", "keep")]
    finally:
        node.run("rm -f /etc/fazai-keep /etc/fazai-gone /etc/fazai-unowned")
