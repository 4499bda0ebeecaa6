"""Prune of the Linux kinds with no delete, end to end with `fazai` on a real SSH node.

A pruned Sysctl leaves FazAI's persisted file and keeps its running value (a kernel
parameter cannot be removed); a pruned Service is released: left as it is and forgotten
by the inventory. Both plans say so.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from controller.store import StateStore
from controller.testing.fleet import Fleet
from tests.integration.statekit import node_doc, resource, write_state

PERSISTED = "/etc/sysctl.d/99-fazai.conf"
TTL = "net.ipv4.ip_default_ttl"
ECHO = "net.ipv4.icmp_echo_ignore_all"


def fazai(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from controller.cli import run; run()", *args],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_pruned_sysctl_leaves_the_file_and_a_pruned_service_is_released(
    fleet: Fleet, tmp_path: Path
) -> None:
    node = fleet.nodes["edge-1"]
    on = {"node": "edge-1"}
    ttl = resource("Sysctl", "ttl", on, key=TTL, value=65)
    echo = resource("Sysctl", "echo", on, key=ECHO, value=1)
    db = tmp_path / "state.db"
    before = {k: node.run(f"sysctl -n {k}").stdout.strip() for k in (TTL, ECHO)}
    try:
        both = write_state(tmp_path / "both", [node_doc(fleet, "edge-1"), ttl, echo])
        first = fazai("apply", str(both), "--state", str(db), "--auto-approve")
        assert first.returncode == 0, first.stderr
        assert node.run(f"cat {PERSISTED}").stdout.decode().splitlines()[1:] == [
            f"{ECHO} = 1",
            f"{TTL} = 65",
        ]
        with StateStore(db) as store:
            # As an earlier apply of a Service document would have recorded it (the test
            # nodes run no systemd, so no Service can be applied here).
            store.own("edge-1", "Service", "cron", "cron", None)

        one = write_state(tmp_path / "one", [node_doc(fleet, "edge-1"), ttl])
        planned = fazai("plan", str(one), "--state", str(db), "--prune", "-o", "json")
        assert planned.returncode == 1, planned.stderr
        plan = json.loads(planned.stdout)
        assert [(c["kind"], c["name"], c["action"], c["changes"]) for c in plan["changes"]] == [
            ("Sysctl", "echo", "delete", [{"field": "persisted", "live": "1", "desired": None}])
        ]
        assert plan["warnings"] == [
            "node edge-1: warning: Service/cron: no document describes it any more: released, "
            "left as it is",
            f"node edge-1: warning: Sysctl/echo: no document describes it any more: {ECHO} "
            f"leaves {PERSISTED}; its running value stays as it is (a kernel parameter cannot "
            "be removed)",
        ]

        applied = fazai("apply", str(one), "--state", str(db), "--prune", "--auto-approve")
        assert applied.returncode == 0, applied.stderr
        assert "prune: edge-1: Service/cron released, left as it is" in applied.stderr
        assert node.run(f"cat {PERSISTED}").stdout.decode().splitlines()[1:] == [f"{TTL} = 65"]
        assert node.run(f"sysctl -n {ECHO}").stdout.strip() == b"1"  # the running value stays
        with StateStore(db) as store:
            assert [(o.kind, o.name) for o in store.owned("edge-1")] == [("Sysctl", "ttl")]

        # Nothing is left to prune, and nothing to release.
        again = fazai("plan", str(one), "--state", str(db), "--prune", "-o", "json")
        assert again.returncode == 0, again.stdout
        assert json.loads(again.stdout)["warnings"] == []

        # An absent Sysctl whose key is not in the file any more is in sync.
        gone = resource("Sysctl", "echo", on, key=ECHO, state="absent")
        explicit = write_state(tmp_path / "explicit", [node_doc(fleet, "edge-1"), ttl, gone])
        assert fazai("plan", str(explicit), "--state", str(db)).returncode == 0
    finally:
        node.run(f"rm -f {PERSISTED}")
        for key, value in before.items():
            node.run(f"sysctl -qw {key}={value.decode()}")
