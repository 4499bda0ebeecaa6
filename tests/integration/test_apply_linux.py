"""Apply and rollback on real SSH nodes: converge, fail midway, lose the connection.

Every test leaves web-1/db-1 as it found them (other tests share the fleet); most do so
through rollback itself, and then check, byte for byte, that it did.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from controller.engine import apply as applying
from controller.engine import plan as planning
from controller.errors import UnreachableError
from controller.model import loader
from controller.model.state import DesiredState
from controller.plan.diff import Action, Observed, compare
from controller.providers.base import Change, Intent
from controller.providers.linux import snapshot as snapshots
from controller.providers.linux.apply import (
    LinuxTransaction,
    RollbackIncompleteError,
    StepFailedError,
)
from controller.providers.linux.provider import PROVIDER
from controller.source.open import open_source
from controller.store import Command, NodeStatus, StateStore, StepStatus, Trigger
from controller.testing.fleet import Fleet, FleetNode
from tests.integration.statekit import node_doc, resource, write_state

GOOD_NFT = """chain input {
  type filter hook input priority 10; policy accept;
  tcp dport 8443 counter accept
}"""
# Passes `nft -c` (each chain is valid alone); the kernel refuses the jump loop only when
# the base chain is loaded ("Too many links").
BAD_NFT = """chain a { jump b; }
chain b { jump a; }
chain c { type filter hook input priority 0; jump a; }"""

# Everything on a node these tests may touch, read without SSH, to compare byte for byte.
PROBE = r"""
for f in /etc/fazai-apply/app.conf /etc/fazai-apply/deep/er/x.conf /etc/fazai-apply-old.conf \
         /etc/sysctl.d/99-fazai.conf /etc/zz-fzapply-blocker; do
  if [ -e "$f" ]; then echo "== $f $(stat -c '%a %u %g %F' "$f")"; base64 -w0 "$f"; echo;
  else echo "== $f absent"; fi
done
for d in /etc/fazai-apply /etc/fazai-apply/deep /etc/fazai-apply/deep/er; do
  [ -e "$d" ] && echo "dir $d $(stat -c '%a' "$d")" || echo "dir $d absent"
done
echo "== users"; grep -E '^(fzapply|fzold|adm|fzapply-grp):' /etc/passwd /etc/shadow /etc/group \
  /etc/gshadow || true
echo "== sysctl"; cat /proc/sys/net/ipv4/ip_default_ttl /proc/sys/net/ipv4/icmp_echo_ignore_all
echo "== nft"; nft list table inet fzapply_ok 2>&1 || true; nft list table inet fzapply_bad 2>&1
echo "== end"
"""


def probe(node: FleetNode) -> str:
    return node.run(PROBE, check=False).stdout.decode()


class MemoryJournal:
    """A StepJournal that keeps steps in memory; ``after_done`` runs after each done()."""

    def __init__(self, after_done: Callable[[int], None] | None = None) -> None:
        self.steps: list[dict[str, Any]] = []
        self.after_done = after_done

    def intend(self, kind: str, name: str, action: str, payload: Mapping[str, Any]) -> int:
        self.steps.append({"kind": kind, "name": name, "action": action, "status": "intended"})
        return len(self.steps) - 1

    def done(self, step: int) -> None:
        self.steps[step]["status"] = "done"
        if self.after_done:
            self.after_done(step)

    def intend_many(self, intents: Sequence[Intent]) -> list[int]:
        return [self.intend(i.kind, i.name, i.action, i.payload) for i in intents]

    def done_many(self, steps: Sequence[int]) -> None:
        for step in steps:
            self.done(step)

    def failed(self, step: int, message: str) -> None:
        self.steps[step].update(status="failed", message=message)


class StoreJournal:
    """The state store behind the StepJournal protocol, as the engine will wire it."""

    def __init__(self, store: StateStore, txn: int, after_done: Callable[[int], None]) -> None:
        self.store, self.txn, self.seq, self.after_done = store, txn, 0, after_done

    def intend(self, kind: str, name: str, action: str, payload: Mapping[str, Any]) -> int:
        self.seq += 1
        return self.store.intend(self.txn, self.seq, kind, name, action, payload)

    def done(self, step: int) -> None:
        self.store.mark_done(step)
        self.after_done(step)

    def intend_many(self, intents: Sequence[Intent]) -> list[int]:
        steps = self.store.intend_many(self.txn, self.seq + 1, intents)
        self.seq += len(intents)
        return steps

    def done_many(self, steps: Sequence[int]) -> None:
        self.store.mark_done_many(steps)
        for step in steps:
            self.after_done(step)

    def failed(self, step: int, message: str) -> None:
        self.store.mark_failed(step, message)


def load(folder: Path) -> DesiredState:
    return loader.load(open_source(str(folder)))


def changes_for(state: DesiredState, node: str) -> list[Change]:
    """What the engine hands a transaction: each resource's plan action and observation."""
    resources = state.resources_for(node)
    observed = asyncio.run(PROVIDER.observe(state.nodes[node], resources, state.source))
    out = []
    for doc in resources:
        action, _ = compare(observed.resources[doc])
        if action in (Action.CREATE, Action.UPDATE, Action.DELETE):
            out.append(Change(doc.kind, doc.name, action.value, doc, observed.resources[doc]))
    return out


def transaction(state: DesiredState, node: str, *forced: str) -> LinuxTransaction:
    """The node's transaction; ``forced`` names documents to create whatever the plan said
    (the plan reports them as errors: these tests make them fail at apply time)."""
    changes = changes_for(state, node)
    for doc in state.resources_for(node):
        if doc.name in forced:
            changes.append(Change(doc.kind, doc.name, "create", doc, Observed(None, None)))
    return PROVIDER.transaction(state.nodes[node], changes, state.resources_for(node), state.source)


def actions(state: DesiredState, node: str) -> dict[str, str]:
    resources = state.resources_for(node)
    observed = asyncio.run(PROVIDER.observe(state.nodes[node], resources, state.source))
    return {d.subject: compare(observed.resources[d])[0].value for d in resources}


def desired(fleet: Fleet, node: str, *extra: dict[str, Any]) -> list[dict[str, Any]]:
    on = {"node": node}
    return [
        node_doc(fleet, node),
        resource(
            "User",
            "fzapply",
            on,
            uid=2301,
            shell="/bin/sh",
            home="/home/fzapply",
            comment="FazAI apply test",
            groups=["adm"],
        ),
        resource(
            "File",
            "app",
            on,
            path="/etc/fazai-apply/app.conf",
            content="port = 8443\n",
            mode="0640",
            owner="fzapply",
            group="adm",
        ),
        resource("File", "old", on, path="/etc/fazai-apply-old.conf", content="new\n"),
        resource("Sysctl", "ttl", on, key="net.ipv4.ip_default_ttl", value=77),
        resource("Sysctl", "echo", on, key="net.ipv4.icmp_echo_ignore_all", value=1),
        resource("NftTable", "ok", on, family="inet", name="fzapply_ok", definition=GOOD_NFT),
        *extra,
    ]


SAVE = """
mkdir -p /run/fzapply-save
cp -p /etc/sysctl.d/99-fazai.conf /run/fzapply-save/ 2>/dev/null || true
cat /proc/sys/net/ipv4/ip_default_ttl > /run/fzapply-save/ttl
cat /proc/sys/net/ipv4/icmp_echo_ignore_all > /run/fzapply-save/echo
"""
# A safety net independent of the code under test, for when a test fails before its
# rollback: other tests share these nodes.
RESTORE = """
rm -rf /etc/fazai-apply /etc/fazai-apply-old.conf /etc/zz-fzapply-blocker
userdel fzapply 2>/dev/null
nft delete table inet fzapply_ok 2>/dev/null; nft delete table inet fzapply_bad 2>/dev/null
rm -f /etc/sysctl.d/99-fazai.conf
cp -p /run/fzapply-save/99-fazai.conf /etc/sysctl.d/ 2>/dev/null
sysctl -qw net.ipv4.ip_default_ttl=$(cat /run/fzapply-save/ttl)
sysctl -qw net.ipv4.icmp_echo_ignore_all=$(cat /run/fzapply-save/echo)
rm -rf /run/fzapply-save
true
"""


@pytest.fixture
def web1(fleet: Fleet) -> Iterator[FleetNode]:
    """web-1 with a pre-existing file the tests overwrite; the same state afterwards."""
    node = fleet.nodes["web-1"]
    node.run(SAVE)
    node.run("printf 'old\\n' > /etc/fazai-apply-old.conf && chmod 0604 /etc/fazai-apply-old.conf")
    yield node
    node.run(RESTORE)


def test_apply_converges_and_rollback_restores_byte_for_byte(
    fleet: Fleet, web1: FleetNode, tmp_path: Path
) -> None:
    state = load(write_state(tmp_path / "s", desired(fleet, "web-1")))
    before = probe(web1)
    txn = transaction(state, "web-1")
    snap = asyncio.run(txn.snapshot())
    journal = MemoryJournal()
    asyncio.run(txn.write(journal))
    observed = asyncio.run(txn.verify())
    try:
        assert {compare(o)[0] for o in observed.resources.values()} == {Action.NOOP}
        assert set(actions(state, "web-1").values()) == {"noop"}
        assert [s["status"] for s in journal.steps] == ["done"] * len(journal.steps)
        assert [(s["kind"], s["action"]) for s in journal.steps] == [
            ("User", "create"),
            ("File", "update"),  # /etc/fazai-apply-old.conf sorts first
            ("File", "create"),
            ("Sysctl", "update"),
            ("Sysctl", "update"),
            ("Sysctl", "update"),  # the persisted file, holding both values
            ("NftTable", "create"),
        ]
        assert (
            web1.run("stat -c '%a %U %G' /etc/fazai-apply/app.conf").stdout == b"640 fzapply adm\n"
        )
        assert web1.run("id -nG fzapply").stdout.split() == [b"fzapply", b"adm"]
        persisted = web1.run("cat /etc/sysctl.d/99-fazai.conf").stdout.decode()
        assert "net.ipv4.icmp_echo_ignore_all = 1\nnet.ipv4.ip_default_ttl = 77\n" in persisted
        # a second apply of the same state has nothing to do
        again = transaction(state, "web-1")
        asyncio.run(again.snapshot())
        assert again.steps() == []
    finally:
        asyncio.run(txn.rollback(snap))
    assert probe(web1) == before
    # idempotent: a second rollback finds nothing to restore and changes nothing
    asyncio.run(LinuxTransaction(state.nodes["web-1"]).rollback(snap))
    assert probe(web1) == before


def test_failure_at_load_time_rolls_everything_back(
    fleet: Fleet, web1: FleetNode, tmp_path: Path
) -> None:
    bad = resource(
        "NftTable", "bad", {"node": "web-1"}, family="inet", name="fzapply_bad", definition=BAD_NFT
    )
    state = load(write_state(tmp_path / "s", desired(fleet, "web-1", bad)))
    before = probe(web1)
    # nft -c in a throwaway namespace (the plan) refuses it too: forced past the plan
    txn = transaction(state, "web-1", "bad")
    snap = asyncio.run(txn.snapshot())
    journal = MemoryJournal()
    with pytest.raises(StepFailedError) as failure:
        asyncio.run(txn.write(journal))
    # everything before the bad table landed; the batch stopped there: the table after it
    # was journaled with the batch (write-ahead) but never run
    assert failure.value.step.name == "bad"
    assert [s["status"] for s in journal.steps] == ["done"] * 6 + ["failed", "intended"]
    assert "Too many links" in journal.steps[6]["message"]
    assert "the 1 step(s) after it in its batch were not run" in journal.steps[6]["message"]
    assert web1.run("nft list table inet fzapply_ok", check=False).returncode != 0
    assert probe(web1) != before
    asyncio.run(txn.rollback(snap))
    assert probe(web1) == before


def test_file_under_a_regular_file_fails_and_rolls_back(
    fleet: Fleet, web1: FleetNode, tmp_path: Path
) -> None:
    on = {"node": "web-1"}
    docs = [
        node_doc(fleet, "web-1"),
        resource("File", "deep", on, path="/etc/fazai-apply/deep/er/x.conf", content="x\n"),
        resource("File", "old", on, path="/etc/fazai-apply-old.conf", content="new\n"),
        resource("File", "blocked", on, path="/etc/zz-fzapply-blocker/x", content="y\n"),
    ]
    state = load(write_state(tmp_path / "s", docs))
    txn = transaction(state, "web-1")
    # between plan and apply, someone puts a regular file where the directory must go
    web1.run("echo blocker > /etc/zz-fzapply-blocker")
    before = probe(web1)
    snap = asyncio.run(txn.snapshot())
    journal = MemoryJournal()
    with pytest.raises(StepFailedError, match="Not a directory"):
        asyncio.run(txn.write(journal))
    assert [(s["name"], s["status"]) for s in journal.steps] == [
        ("old", "done"),
        ("deep", "done"),
        ("blocked", "failed"),
    ]
    assert web1.run("cat /etc/fazai-apply/deep/er/x.conf").stdout == b"x\n"
    asyncio.run(txn.rollback(snap))
    after = probe(web1)
    assert after == before
    # the directories apply created for the file are gone again
    assert "dir /etc/fazai-apply absent" in after


def sysctls_of(probed: str) -> str:
    return probed.split("== sysctl", 1)[1].split("== nft", 1)[0]


def test_failing_middle_step_of_a_batch_is_journaled_and_rolled_back_wholly(
    fleet: Fleet, web1: FleetNode, tmp_path: Path
) -> None:
    on = {"node": "web-1"}
    docs = [
        node_doc(fleet, "web-1"),
        resource("File", "old", on, path="/etc/fazai-apply-old.conf", content="new\n"),
        resource("File", "deep", on, path="/etc/fazai-apply/deep/er/x.conf", content="x\n"),
        resource("File", "blocked", on, path="/etc/zz-fzapply-blocker/x", content="y\n"),
        resource("Sysctl", "ttl", on, key="net.ipv4.ip_default_ttl", value=77),
        resource("Sysctl", "echo", on, key="net.ipv4.icmp_echo_ignore_all", value=1),
        resource("NftTable", "ok", on, family="inet", name="fzapply_ok", definition=GOOD_NFT),
    ]
    state = load(write_state(tmp_path / "s", docs))
    txn = transaction(state, "web-1")
    # between plan and apply, a regular file takes the place of a directory the third
    # step needs
    web1.run("echo blocker > /etc/zz-fzapply-blocker")
    before = probe(web1)
    with StateStore(tmp_path / "state.db") as store:
        txn_id = store.begin_transaction(
            store.start_run(Trigger.CLI, Command.APPLY, "test", None), "web-1"
        )
        snap = asyncio.run(txn.snapshot())
        planned = [(s.kind, s.name) for s in txn.steps()]
        assert planned == [
            ("File", "old"),
            ("File", "deep"),
            ("File", "blocked"),
            ("Sysctl", "echo"),
            ("Sysctl", "ttl"),
            ("Sysctl", "echo,ttl"),  # the persisted file
            ("NftTable", "ok"),
        ]
        journaled_at_first_result: list[int] = []

        def first_result(step: int) -> None:
            if not journaled_at_first_result:
                steps = store.transaction(txn_id).steps  # type: ignore[union-attr]
                journaled_at_first_result.append(len(steps))

        with pytest.raises(StepFailedError, match="Not a directory") as failure:
            asyncio.run(txn.write(StoreJournal(store, txn_id, first_result)))
        # write-ahead: the whole batch was on disk before the node answered for any step
        assert journaled_at_first_result == [7]
        assert failure.value.step.name == "blocked"
        steps = store.transaction(txn_id).steps  # type: ignore[union-attr]
        assert [(s.name, s.status) for s in steps] == [
            ("old", StepStatus.DONE),
            ("deep", StepStatus.DONE),
            ("blocked", StepStatus.FAILED),
            ("echo", StepStatus.INTENDED),
            ("ttl", StepStatus.INTENDED),
            ("echo,ttl", StepStatus.INTENDED),
            ("ok", StepStatus.INTENDED),
        ]
        assert "Not a directory" in steps[2].message
        assert "the 4 step(s) after it in its batch were not run" in steps[2].message
    # the steps before it were made, the ones after it were not
    assert web1.run("cat /etc/fazai-apply-old.conf /etc/fazai-apply/deep/er/x.conf").stdout == (
        b"new\nx\n"
    )
    assert sysctls_of(probe(web1)) == sysctls_of(before)
    assert web1.run("nft list table inet fzapply_ok", check=False).returncode != 0
    asyncio.run(txn.rollback(snap))
    assert probe(web1) == before


# Drops new SSH connections to the node and keeps established ones: applied, it would lock
# the controller out of the node from the next connection on.
LOCKOUT_NFT = """chain input {
  type filter hook input priority 0; policy accept;
  ct state established,related accept
  tcp dport 22 drop
}"""


def test_a_change_that_stops_new_ssh_connections_fails_verify_and_is_rolled_back(
    fleet: Fleet, web1: FleetNode, tmp_path: Path
) -> None:
    """Verify reads over a new connection, so the lockout is seen; the rollback goes
    through the connection held since the snapshot, so the node is reachable again."""
    on = {"node": "web-1"}
    docs = [
        node_doc(fleet, "web-1"),
        resource("File", "old", on, path="/etc/fazai-apply-old.conf", content="new\n"),
        resource("NftTable", "ok", on, family="inet", name="fzapply_ok", definition=LOCKOUT_NFT),
    ]
    state = load(write_state(tmp_path / "s", docs))
    before = probe(web1)
    plan = asyncio.run(planning.build(state))
    assert plan.has_changes and not plan.has_errors
    with StateStore(tmp_path / "state.db") as store:
        result = asyncio.run(applying.apply(state, plan, store))
        (outcome,) = result.nodes
        assert outcome.status is NodeStatus.ROLLED_BACK, outcome.message
        # verify could not connect; the rollback could, over the held connection
        assert f"no answer from {web1.address}:22" in outcome.message
        assert "rolled back to the snapshot" in outcome.message
        assert store.open_transactions() == []
    assert probe(web1) == before
    # and the node takes new connections again
    assert set(actions(state, "web-1").values()) == {"update", "create"}


def test_rollback_goes_over_a_new_connection_when_the_held_one_died(
    fleet: Fleet, web1: FleetNode, tmp_path: Path
) -> None:
    state = load(write_state(tmp_path / "s", desired(fleet, "web-1")))
    before = probe(web1)
    txn = transaction(state, "web-1")

    async def scenario() -> None:
        async with txn:
            snap = await txn.snapshot()
            await txn.write(MemoryJournal())
            assert probe(web1) != before
            # sshd restarted: the connection held since the snapshot is gone
            web1.stop()
            web1.start()
            await txn.rollback(snap)

    asyncio.run(scenario())
    assert probe(web1) == before


# Holds the shadow-utils lock (/etc/.pwd.lock, fcntl) until /run/fzapply-lock.release
# appears: userdel waits for it (lckpwdf waits up to 15 s), so a userdel step is certainly
# still running when a test cuts the connection.
LOCK_HOLDER = """
import fcntl, os, time
lock = open("/etc/.pwd.lock", "w")
fcntl.lockf(lock, fcntl.LOCK_EX)
open("/run/fzapply-lock.held", "w").close()
deadline = time.monotonic() + 60
while not os.path.exists("/run/fzapply-lock.release") and time.monotonic() < deadline:
    time.sleep(0.02)
"""


def wait_on_node(node: FleetNode, condition: str, seconds: float = 30) -> None:
    node.run(
        f"i=0; until {condition}; do i=$((i+1)); [ $i -lt {int(seconds * 50)} ] || exit 1;"
        " sleep 0.02; done",
        timeout=seconds + 10,
    )


def test_connection_killed_mid_batch_then_rollback_from_the_journal_in_a_new_process(
    fleet: Fleet, tmp_path: Path
) -> None:
    node = fleet.nodes["db-1"]
    node.run(SAVE)
    node.run("printf 'old\\n' > /etc/fazai-apply-old.conf && chmod 0604 /etc/fazai-apply-old.conf")
    node.run("useradd -u 2303 -s /bin/sh -c 'old account' fzold && useradd -u 2304 fzold2")
    on = {"node": "db-1"}
    docs = [
        node_doc(fleet, "db-1"),
        resource("File", "old", on, path="/etc/fazai-apply-old.conf", content="new\n"),
        resource("File", "app", on, path="/etc/fazai-apply/app.conf", content="port = 8443\n"),
        resource("Sysctl", "ttl", on, key="net.ipv4.ip_default_ttl", value=77),
        resource("NftTable", "ok", on, family="inet", name="fzapply_ok", definition=GOOD_NFT),
        resource("User", "fzold", on, state="absent"),
        resource("User", "fzold2", on, state="absent"),
    ]
    state = load(write_state(tmp_path / "s", docs))
    before = probe(node)
    store_path = tmp_path / "state.db"
    try:
        node.run(f"cat > /run/fzapply-lock.py <<'EOF'\n{LOCK_HOLDER}EOF")
        node.run("python3 /run/fzapply-lock.py </dev/null >/dev/null 2>&1 &")
        wait_on_node(node, "[ -e /run/fzapply-lock.held ]")
        with StateStore(store_path) as store:
            txn_id = store.begin_transaction(
                store.start_run(Trigger.CLI, Command.APPLY, "test", None), "db-1"
            )
            txn = transaction(state, "db-1")
            snap = asyncio.run(txn.snapshot())
            for kind, name, key, prior in snapshots.journal_records(snap):
                store.record_snapshot(txn_id, kind, name, key, prior)
            planned = [(s.kind, s.name) for s in txn.steps()]
            # one batch: 5 steps, then userdel fzold (waits for the lock), then fzold2
            assert planned[-2:] == [("User", "fzold"), ("User", "fzold2")]
            assert len(planned) == 7

            cut: list[int] = []

            def cut_while_userdel_waits(step: int) -> None:
                done = store.transaction(txn_id).steps  # type: ignore[union-attr]
                # Steps reported together are marked together: cut once, after the fifth.
                if not cut and sum(s.status is StepStatus.DONE for s in done) == 5:
                    cut.append(step)
                    wait_on_node(node, "pgrep -x userdel >/dev/null")
                    node.stop()

            with pytest.raises(UnreachableError):
                asyncio.run(txn.write(StoreJournal(store, txn_id, cut_while_userdel_waits)))
            steps = store.transaction(txn_id).steps  # type: ignore[union-attr]
            # every step was journaled before the batch left; the one in flight is marked
            # as unknown, and the one after it stays only intended
            assert [s.status for s in steps] == [StepStatus.DONE] * 5 + [
                StepStatus.FAILED,
                StepStatus.INTENDED,
            ]
            assert (steps[5].kind, steps[5].name) == ("User", "fzold")
            assert "may or may not have been made" in steps[5].message
            assert "the 1 step(s) after it" in steps[5].message
        # The step in flight was not stopped by the lost connection: it lands once the lock
        # goes. The runner, with nobody left to report to, runs nothing after it.
        node.run("touch /run/fzapply-lock.release")
        wait_on_node(node, "! pgrep -x userdel >/dev/null && ! id fzold >/dev/null 2>&1")
        wait_on_node(node, "! pgrep -f 'python3 -I -S -[c]' >/dev/null")
        assert node.run("id -u fzold2").stdout == b"2304\n"
        node.start()
        assert probe(node) != before
        # A controller restarted after the crash: only the node document and the journal.
        script = (
            "import asyncio, json, sys\n"
            "from controller.model.document import Document\n"
            "from controller.providers.linux import snapshot\n"
            "from controller.providers.linux.apply import LinuxTransaction\n"
            "from controller.store import StateStore\n"
            "node = Document('Node', 'db-1', json.loads(sys.argv[2]))\n"
            "with StateStore(sys.argv[1]) as store:\n"
            "    (txn,) = store.open_transactions()\n"
            "    snap = snapshot.from_journal('db-1', txn.snapshots)\n"
            "    asyncio.run(LinuxTransaction(node).rollback(snap))\n"
            "    store.mark_rolled_back(txn.id, 'connection lost')\n"
        )
        spec = json.dumps(node_doc(fleet, "db-1")["spec"])
        result = subprocess.run(
            [sys.executable, "-c", script, str(store_path), spec],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert probe(node) == before
        assert node.run("id -u fzold").stdout == b"2303\n"
    finally:
        node.run("touch /run/fzapply-lock.release")
        node.start()
        node.run(RESTORE)
        node.run("userdel fzold; userdel fzold2; rm -f /run/fzapply-lock.*; true")


def test_user_removed_then_restored_with_its_exact_lines(
    fleet: Fleet, web1: FleetNode, tmp_path: Path
) -> None:
    web1.run(
        "useradd -u 2302 -s /bin/bash -c 'old account' -G adm fzold"
        " && echo 'fzold:$6$salt$hashhashhash' | chpasswd -e && chage -M 90 fzold"
    )
    try:
        docs = [
            node_doc(fleet, "web-1"),
            resource("User", "fzold", {"node": "web-1"}, state="absent"),
        ]
        state = load(write_state(tmp_path / "s", docs))
        before = probe(web1)
        txn = transaction(state, "web-1")
        snap = asyncio.run(txn.snapshot())
        # the hash sits apart, where the store masks it, not inside the shadow line
        record, _tag = snap["objects"]  # the account, then its temp file tag
        assert "$6$" not in record["before"]["shadow"]
        assert record["before"]["passwordHash"] == "$6$salt$hashhashhash"
        asyncio.run(txn.write(MemoryJournal()))
        assert web1.run("id fzold", check=False).returncode != 0
        asyncio.run(txn.rollback(snap))
        assert probe(web1) == before
        # from the journal the hash is masked: the account comes back, locked, and says so
        web1.run("userdel fzold")
        masked = json.loads(json.dumps(snap).replace("$6$salt$hashhashhash", "***"))
        with pytest.raises(RollbackIncompleteError, match="restored locked"):
            asyncio.run(txn.rollback(masked))
        assert web1.run("getent shadow fzold").stdout.split(b":")[1] == b"!"
    finally:
        web1.run("userdel fzold 2>/dev/null; true")


# -- packages: a tiny .deb served from a file: repository inside the node -----------------

APT_CONF = """Dir::Etc::SourceList "/srv/fzrepo/sources.list";
Dir::Etc::SourceParts "/srv/fzrepo/parts.d";
Dir::State::Lists "/srv/fzrepo/lists";
"""


def build_deb(folder: Path, version: str) -> bytes:
    root = folder / f"fazai-probe-{version}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "usr/share/fazai-probe").mkdir(parents=True)
    (root / "usr/share/fazai-probe/VERSION").write_text(version + "\n")
    (root / "DEBIAN/control").write_text(
        f"Package: fazai-probe\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: FazAI tests <tests@fazai.invalid>\nDescription: apply test package\n"
    )
    out = folder / f"fazai-probe_{version}_all.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "--build", str(root), str(out)],
        check=True,
        capture_output=True,
    )
    return out.read_bytes()


@pytest.fixture
def local_repo(fleet: Fleet, tmp_path: Path) -> Iterator[FleetNode]:
    """web-1 with apt pointed at a file: repository holding fazai-probe 1.0 and 2.0 only
    (no network here); apt's own configuration and lists are put back afterwards."""
    node = fleet.nodes["web-1"]
    node.run("mkdir -p /srv/fzrepo/parts.d /srv/fzrepo/lists/partial")
    for version in ("1.0", "2.0"):
        data = build_deb(tmp_path, version)
        node.run(f"cat > /srv/fzrepo/fazai-probe_{version}_all.deb", input=data)
    node.run(
        "cd /srv/fzrepo && dpkg-scanpackages -m . > Packages 2>/dev/null"
        " && echo 'deb [trusted=yes] file:/srv/fzrepo ./' > sources.list"
    )
    node.run(f"cat > /etc/apt/apt.conf.d/99fazai-test <<'EOF'\n{APT_CONF}EOF")
    update = node.run("apt-get update -qq", check=False, timeout=120)
    if update.returncode != 0:
        node.run("rm -rf /srv/fzrepo /etc/apt/apt.conf.d/99fazai-test")
        pytest.skip(f"no offline apt repository here: {update.stderr.decode()[-300:]}")
    yield node
    node.run(
        "dpkg --purge fazai-probe >/dev/null 2>&1; rm -rf /srv/fzrepo"
        " /etc/apt/apt.conf.d/99fazai-test; true"
    )


def installed(node: FleetNode) -> str:
    out = node.run("dpkg-query -W -f '${db:Status-Abbrev}${Version}' fazai-probe", check=False)
    return out.stdout.decode().strip()


def test_package_install_and_upgrade_roll_back(
    fleet: Fleet, local_repo: FleetNode, tmp_path: Path
) -> None:
    on = {"node": "web-1"}
    state = load(
        write_state(
            tmp_path / "a",
            [
                node_doc(fleet, "web-1"),
                resource("Package", "probe", on, name="fazai-probe"),
            ],
        )
    )
    txn = transaction(state, "web-1")
    snap = asyncio.run(txn.snapshot())
    asyncio.run(txn.write(MemoryJournal()))
    assert installed(local_repo) == "ii 2.0"
    assert set(actions(state, "web-1").values()) == {"noop"}
    asyncio.run(txn.rollback(snap))
    assert installed(local_repo) == ""  # purged: not even configuration left

    # a pinned downgrade, rolled back to the version that was there
    local_repo.run("apt-get install -y -qq fazai-probe=2.0 >/dev/null", timeout=120)
    state = load(
        write_state(
            tmp_path / "b",
            [
                node_doc(fleet, "web-1"),
                resource("Package", "probe", on, name="fazai-probe", version="1.0"),
            ],
        )
    )
    txn = transaction(state, "web-1")
    snap = asyncio.run(txn.snapshot())
    with pytest.raises(StepFailedError, match="downgrade"):
        # apply never downgrades silently: apt refuses without --allow-downgrades
        asyncio.run(txn.write(MemoryJournal()))
    assert installed(local_repo) == "ii 2.0"
    asyncio.run(txn.rollback(snap))
    assert installed(local_repo) == "ii 2.0"


def test_package_removal_rolls_back_by_reinstalling(
    fleet: Fleet, local_repo: FleetNode, tmp_path: Path
) -> None:
    local_repo.run("apt-get install -y -qq fazai-probe=1.0 >/dev/null", timeout=120)
    state = load(
        write_state(
            tmp_path / "s",
            [
                node_doc(fleet, "web-1"),
                resource("Package", "probe", {"node": "web-1"}, name="fazai-probe", state="absent"),
            ],
        )
    )
    txn = transaction(state, "web-1")
    snap = asyncio.run(txn.snapshot())
    asyncio.run(txn.write(MemoryJournal()))
    assert installed(local_repo) == ""  # no conffiles: nothing left at all
    asyncio.run(txn.rollback(snap))
    assert installed(local_repo) == "ii 1.0"
    # offline and the repository gone: the reinstall fails and rollback says so plainly
    asyncio.run(txn.write(MemoryJournal()))
    local_repo.run("rm -f /srv/fzrepo/*.deb")
    with pytest.raises(RollbackIncompleteError, match="fazai-probe"):
        asyncio.run(txn.rollback(snap))
