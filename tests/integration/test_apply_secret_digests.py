"""No plain digest of a secret file's content anywhere: state file, plans, command output.

A short secret's SHA-256 is as good as the secret to anyone who can guess it offline
("hunter2" is found at once), and a plan may be posted as a pull request comment. So a
sensitive file's content (and that of a file to delete, which nobody declared) shows only
as a keyed fingerprint, and the journal records no digest of the data a sensitive step
sends. Against a real SSH node, through the real CLI.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.testing.fleet import Fleet, FleetNode
from tests.integration.statekit import node_doc, resource, write_state

NODE = "web-1"
DIR = "/etc/fzdigest"
TOKEN = f"{DIR}/token"
OLD_TOKEN = f"{DIR}/old-token"
NEW, OLD, GONE = b"hunter2\n", b"letmein\n", b"qwerty\n"
CLI = [sys.executable, "-c", "from controller.cli import run; run()"]


def fazai(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL
    )


def needles(label: str, secret: bytes) -> dict[str, bytes]:
    """Every form of ``secret`` that would let it be read or guessed offline."""
    encoded = base64.b64encode(secret)
    out = {f"the {label} secret": secret.strip(), f"the {label} secret in base64": encoded}
    for form, data in (("", secret), (" of its base64", encoded)):
        digest = hashlib.sha256(data).hexdigest()
        out[f"the sha256{form} of the {label} secret"] = digest.encode()
        # what a plan on a terminal shows of a digest: its first 12 hex digits
        out[f"the sha256{form} of the {label} secret, shortened"] = digest[:12].encode()
    return out


def leaks(found: dict[str, bytes], blobs: list[bytes]) -> list[str]:
    return sorted({name for name, needle in found.items() for b in blobs if needle in b})


def files(folder: Path) -> list[bytes]:
    """The state file, its WAL, the escrow key: everything under ``folder``."""
    return [p.read_bytes() for p in folder.rglob("*") if p.is_file()]


@pytest.fixture
def node(fleet: Fleet) -> Iterator[FleetNode]:
    target = fleet.nodes[NODE]
    target.run(f"mkdir -p {DIR} && cat > {TOKEN} && chmod 0600 {TOKEN}", input=OLD)
    target.run(f"cat > {OLD_TOKEN}", input=GONE)
    yield target
    target.run(f"rm -rf {DIR}")


def test_no_plain_digest_of_a_secret_in_the_state_file_plans_or_output(
    fleet: Fleet, node: FleetNode, tmp_path: Path
) -> None:
    on = {"node": NODE}
    state = write_state(
        tmp_path / "docs",
        [
            node_doc(fleet, NODE),
            resource(
                "File", "token", on, path=TOKEN, content=NEW.decode(), mode="0600", sensitive=True
            ),
            resource("File", "old-token", on, path=OLD_TOKEN, state="absent"),
        ],
    )
    db_dir = tmp_path / "db"
    db = str(db_dir / "state.db")
    outputs = []
    for form in ("text", "json", "markdown"):
        planned = fazai("plan", str(state), "--state", db, "-o", form)
        assert planned.returncode == 1, planned.stderr
        outputs += [planned.stdout, planned.stderr]
    plan = json.loads(outputs[2])
    content = {
        c["name"]: next(f for f in c["changes"] if f["field"] == "content") for c in plan["changes"]
    }
    # A person still sees that the secret changes, and what goes, without its digest.
    assert content["token"]["live"].startswith("fingerprint:")
    assert content["token"]["desired"].startswith("fingerprint:")
    assert content["token"]["live"] != content["token"]["desired"]
    assert content["old-token"]["live"].startswith("fingerprint:")
    assert content["old-token"]["desired"] is None

    applied = fazai("apply", str(state), "--state", db, "--auto-approve")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    outputs += [applied.stdout, applied.stderr]
    assert node.run(f"cat {TOKEN}").stdout == NEW
    assert node.run(f"test -e {OLD_TOKEN}", check=False).returncode == 1
    # Equal contents have equal fingerprints within a run: in sync now.
    again = fazai("plan", str(state), "--state", db, "-o", "json")
    assert again.returncode == 0, again.stdout + again.stderr
    history = fazai("history", "--state", db)
    outputs += [again.stdout, history.stdout, history.stderr]

    printed = [text.encode() for text in outputs]
    secrets = {**needles("new", NEW), **needles("old", OLD)}
    assert leaks(secrets, files(db_dir) + printed) == []
    # A file deleted without ``sensitive: true`` keeps its content in the journal, for the
    # rollback, as any other file does; but no plan shows even its digest.
    assert leaks(needles("deleted", GONE), printed) == []
    # The check itself finds a digest where there is one.
    assert leaks(secrets, [hashlib.sha256(OLD).hexdigest().encode()]) == [
        "the sha256 of the old secret",
        "the sha256 of the old secret, shortened",
    ]
