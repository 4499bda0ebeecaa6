"""The policy stage on a real Linux node: the shipped default that never deletes a
system account stops `fazai apply`, exit 2 with the rule's message, nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from controller.store import StateStore
from controller.testing.fleet import Fleet
from tests.integration.statekit import node_doc, resource, write_state


def fazai(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from controller.cli import run; run()", *args],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip


def test_deleting_a_system_user_is_denied_and_nothing_is_written(
    fleet: Fleet, tmp_path: Path
) -> None:
    node = fleet.nodes["web-2"]
    on = {"node": "web-2"}
    node.run("userdel svc-legacy 2>/dev/null; useradd -u 990 -M -s /usr/sbin/nologin svc-legacy")
    try:
        state = write_state(
            tmp_path / "state",
            [
                node_doc(fleet, "web-2"),
                resource("User", "svc-legacy", on, name="svc-legacy", state="absent"),
                # Allowed on its own: written only if the whole plan may be.
                resource("File", "motd", on, path="/etc/fazai-policy-gate", content="hi\n"),
            ],
        )
        db = tmp_path / "state.db"
        refused = fazai("apply", str(state), "--state", str(db), "--auto-approve")
        assert refused.returncode == 2, refused.stderr
        said = " ".join(refused.stderr.split())
        assert (
            "denied: web-2: delete User/svc-legacy: fazai-system-users/no-system-user-delete: "
            "deleting a system account (uid below 1000 or 60000 and above) or root is refused"
            in said
        )
        assert "nothing applied" in said
        assert node.run("id -u svc-legacy").stdout.strip() == b"990"
        assert node.run("test -e /etc/fazai-policy-gate", check=False).returncode == 1
        with StateStore(db) as store:
            assert store.list_runs() == []
    finally:
        node.run("userdel svc-legacy 2>/dev/null; rm -f /etc/fazai-policy-gate", check=False)
