"""Secrets a rollback needs, through the escrow, on real SSH nodes with the real CLI.

A sensitive file's content and an account's password hash are kept in the journal only
encrypted (the key next to the state file); ``fazai rollback RUN`` and the recovery at
the next start put them back byte for byte. Every test also checks that the secret never
reaches the state file, its WAL, or anything the commands print.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.store import StateStore, default_escrow_key_path
from controller.testing.fleet import Fleet, FleetNode
from tests.integration.statekit import done_steps, node_doc, resource, write_state

SECRET = b"\x00\xfftoken=s3cr3t-escrow-\x7f\n"  # binary on purpose: byte for byte or nothing
HASH = "$6$fzescrowsalt$XkTQ0bGR1y3uGJvZfhWm8SX0Tn1Vb2dV9Eo3Q5z1hJ7lP4cA6sK8wN2rY0mD"
NODE = "web-2"
DIR = "/etc/fzescrow"
TOKEN = f"{DIR}/a-token"
PLAIN = f"{DIR}/plain.conf"
CLI = [sys.executable, "-c", "from controller.cli import run; run()"]


def fazai(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL
    )


def secrets_in(folder: Path, *more: str) -> list[str]:
    """Which forms of the secrets appear in the files under ``folder`` (the state file,
    its WAL, the key) or in ``more`` (command output)."""
    needles = {
        "the secret": SECRET,
        "the secret in base64": base64.b64encode(SECRET),
        "the hash": HASH.encode(),
        "the secret's text": b"s3cr3t-escrow",
    }
    blobs = [p.read_bytes() for p in folder.rglob("*") if p.is_file()]
    blobs += [text.encode() for text in more]
    return sorted({name for name, needle in needles.items() for blob in blobs if needle in blob})


def token_state(node: FleetNode) -> tuple[bytes, bytes]:
    """(content, "mode owner group") of the sensitive file, read without FazAI."""
    content = node.run(f"cat {TOKEN}").stdout
    meta = node.run(f"stat -c '%a %U %G' {TOKEN}").stdout.strip()
    return content, meta


@pytest.fixture
def node(fleet: Fleet) -> Iterator[FleetNode]:
    """web-2 with a sensitive file (mode 0640, daemon:adm) and a plain one; removed after."""
    target = fleet.nodes[NODE]
    target.run(f"mkdir -p {DIR} && printf 'plain-old\\n' > {PLAIN}")
    target.run(f"cat > {TOKEN} && chown daemon:adm {TOKEN} && chmod 0640 {TOKEN}", input=SECRET)
    yield target
    target.run(f"rm -rf {DIR} /etc/fzescrow-crash; userdel fzesc 2>/dev/null; "
               "groupdel fzesc 2>/dev/null; true")  # fmt: skip


def test_rollback_of_a_run_restores_a_sensitive_file_byte_for_byte(
    fleet: Fleet, node: FleetNode, tmp_path: Path
) -> None:
    on = {"node": NODE}
    state_dir = write_state(
        tmp_path / "desired",
        [
            node_doc(fleet, NODE),
            resource("File", "token", on, path=TOKEN, content="rotated\n", mode="0600",
                     owner="root", group="root", sensitive=True),
            resource("File", "plain", on, path=PLAIN, content="plain-new\n"),
        ],
    )  # fmt: skip
    store_dir = tmp_path / "store"
    db = store_dir / "state.db"
    before = token_state(node)
    assert before == (SECRET, b"640 daemon adm")

    applied = fazai("apply", str(state_dir), "--state", str(db), "--auto-approve")
    assert applied.returncode == 0, applied.stderr
    assert token_state(node) == (b"rotated\n", b"600 root root")
    assert secrets_in(store_dir, applied.stdout, applied.stderr) == []
    key = default_escrow_key_path(db)
    assert key.stat().st_mode & 0o777 == 0o600
    with StateStore(db) as store:
        (run,) = store.list_runs()

    # Without the key: everything else is restored, the secret is named, not shown.
    key.rename(tmp_path / "away.key")
    blind = fazai("rollback", str(run.id), str(state_dir), "--state", str(db), "--auto-approve")
    assert blind.returncode == 2
    output = " ".join(blind.stderr.split())  # rich wraps long lines
    assert (
        f"File/token ({TOKEN}): secretContent could not be restored from the escrow: "
        f"no escrow key: key file {key} does not exist" in output
    )
    assert node.run(f"cat {PLAIN}").stdout == b"plain-old\n"
    assert token_state(node) == (b"rotated\n", b"640 daemon adm")  # mode and owner were
    assert secrets_in(store_dir, blind.stdout, blind.stderr) == []

    # With it: the content comes back byte for byte (a rollback may be run again).
    (tmp_path / "away.key").rename(key)
    undone = fazai("rollback", str(run.id), str(state_dir), "--state", str(db), "--auto-approve")
    assert undone.returncode == 0, undone.stderr
    assert token_state(node) == before
    assert node.run(f"cat {PLAIN}").stdout == b"plain-old\n"
    assert secrets_in(store_dir, undone.stdout, undone.stderr) == []


ACCOUNT = r"""
grep -E '^(fzesc|users):' /etc/passwd /etc/shadow /etc/group /etc/gshadow
id fzesc 2>&1 || true
"""


def test_rollback_of_a_run_brings_a_deleted_user_back_with_its_hash(
    fleet: Fleet, node: FleetNode, tmp_path: Path
) -> None:
    node.run(
        # users, not adm: joining adm is held for approval by a shipped default, and
        # this test is about the hash coming back, not about the policies.
        "useradd -u 2391 -s /bin/sh -c 'escrow test' -G users fzesc"
        f" && echo 'fzesc:{HASH}' | chpasswd -e && chage -M 90 fzesc"
    )
    state_dir = write_state(
        tmp_path / "desired",
        [node_doc(fleet, NODE), resource("User", "fzesc", {"node": NODE}, state="absent")],
    )
    store_dir = tmp_path / "store"
    db = store_dir / "state.db"
    before = node.run(ACCOUNT).stdout
    assert f"fzesc:{HASH}:".encode() in before

    applied = fazai("apply", str(state_dir), "--state", str(db), "--auto-approve")
    assert applied.returncode == 0, applied.stderr
    assert node.run("id fzesc", check=False).returncode != 0
    assert secrets_in(store_dir, applied.stdout, applied.stderr) == []
    with StateStore(db) as store:
        (run,) = store.list_runs()

    undone = fazai("rollback", str(run.id), str(state_dir), "--state", str(db), "--auto-approve")

    assert undone.returncode == 0, undone.stderr
    # the same passwd, shadow (hash, aging), group and gshadow lines as before
    assert node.run(ACCOUNT).stdout == before
    assert node.run("getent shadow fzesc").stdout.split(b":")[1] == HASH.encode()
    assert secrets_in(store_dir, undone.stdout, undone.stderr) == []


FILES = 120


def test_killed_controller_restores_the_sensitive_file_from_the_escrow_at_next_start(
    fleet: Fleet, node: FleetNode, tmp_path: Path
) -> None:
    on = {"node": NODE}
    crash_dir = "/etc/fzescrow-crash"
    token = f"{crash_dir}/a-token"  # sorts first: written before the many files after it
    node.run(f"mkdir -p {crash_dir} && cat > {token} && chmod 0600 {token}", input=SECRET)
    docs = [
        node_doc(fleet, NODE),
        resource("File", "token", on, path=token, content="rotated\n", sensitive=True),
        *[
            resource("File", f"f{i}", on, path=f"{crash_dir}/f{i}", content=f"{i}\n")
            for i in range(FILES)
        ],
    ]
    state_dir = write_state(tmp_path / "desired", docs)
    store_dir = tmp_path / "store"
    db = store_dir / "state.db"
    apply = subprocess.Popen(
        [*CLI, "apply", str(state_dir), "--state", str(db), "--auto-approve"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while done_steps(db) < 3 and apply.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert apply.poll() is None, "the apply finished before it could be killed"
        os.kill(apply.pid, signal.SIGKILL)
    finally:
        apply.kill()
        apply.wait(timeout=30)

    # Killed half-way: the secret file already holds its new content...
    assert node.run(f"cat {token}").stdout == b"rotated\n"
    written = int(node.run(f"ls {crash_dir} | wc -l").stdout)
    assert 1 < written < FILES + 1
    # ...and the journal it left (database and WAL, as the kill left them) holds it sealed.
    assert (store_dir / "state.db-wal").exists()
    assert secrets_in(store_dir) == []

    # The next start rolls the interrupted transaction back first (then refuses to apply
    # without a terminal): the secret comes back from the escrow, byte for byte.
    restart = fazai("apply", str(state_dir), "--state", str(db))
    output = " ".join(restart.stderr.split())
    assert "interrupted transaction" in output and "rolled back to its snapshot" in output
    assert "could not be restored" not in output
    assert node.run(f"cat {token}").stdout == SECRET
    assert node.run(f"stat -c %a {token}").stdout.strip() == b"600"
    assert node.run(f"ls {crash_dir}").stdout == b"a-token\n"
    assert secrets_in(store_dir, restart.stdout, restart.stderr) == []
    with StateStore(db) as store:
        assert store.open_transactions() == []
