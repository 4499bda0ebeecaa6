"""The policy stage holds where the adversarial review found it could be walked around:
policies that cannot be loaded, approvals judged by stale policies or racing a pass,
changes edited between judgment and write, rollbacks undoing later runs. On the OPNsense
emulator over real HTTP, the real CLI and the real GitOps loop on a real git remote."""

from __future__ import annotations

import asyncio
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from controller.events import Event, EventType
from controller.reconcile.handle import ApprovalSuperseded
from controller.store import Command, RunStatus, Trigger
from controller.testing.opnsense import Drift, EmulatorServer
from tests.integration.servekit import Infra, firewall_node, rule_doc, running
from tests.integration.test_policy_gate import (
    NO_RULE_DELETE,
    commands,
    deny_rule_deletes,
    fazai,
    folder,
    policy,
    rules,
    settings,
)


@pytest.fixture
def firewall() -> EmulatorServer:  # type: ignore[misc]
    with EmulatorServer(version="26.1") as emu:
        yield emu


async def test_policies_that_cannot_be_loaded_fail_the_pass_not_the_worker(
    firewall: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import controller.policy as evaluator

    infra = Infra(tmp_path / "infra")
    node = firewall_node(firewall, tmp_path / "secrets")
    v1 = infra.commit([node, rule_doc("allow-ssh", 22)], "v1")
    infra.push()

    def broken(state: object) -> None:
        raise RuntimeError("defaults unreadable")

    monkeypatch.setattr(evaluator, "load", broken)
    async with running(settings(tmp_path, infra)) as loop:
        worker = loop.controller.workers["infra"]
        await loop.until(lambda: worker.error is not None, what="the pass to fail")
        assert worker.error is not None and "the policies could not be loaded" in worker.error
        assert "defaults unreadable" in worker.error
        assert rules(firewall) == set()  # fails closed
        runs = loop.controller.store.list_runs()
        assert runs and {(r.command, r.status) for r in runs} == {(Command.PLAN, RunStatus.FAILED)}
        task = loop.controller._worker_tasks["infra"]
        assert not task.done()  # the worker lives on
        monkeypatch.undo()
        await loop.controller.trigger("infra")
        await loop.until(lambda: worker.revision == v1 and worker.error is None, what="v1")
        assert "allow-ssh to 22" in rules(firewall)


def keep_guard() -> dict[str, object]:
    """Updates of a rule someone marked "keep" on the firewall are denied."""
    return policy(
        "keep-guard",
        "deny",
        "rules marked keep are not changed",
        'item.fields.description.live.startsWith("keep")',
        kinds=["FirewallRule"],
        actions=["update"],
    )


KEEP = "keep: the vendor's tunnel"


def test_cli_apply_refuses_a_node_edited_between_judgment_and_write(
    firewall: EmulatorServer, tmp_path: Path
) -> None:
    node = firewall_node(firewall, tmp_path / "secrets")
    db = tmp_path / "state.db"
    v1 = folder(tmp_path / "v1", [node, rule_doc("allow-ssh", 22)])
    assert fazai("apply", v1, "--state", str(db), "--auto-approve").returncode == 0
    v2 = folder(tmp_path / "v2", [node, rule_doc("allow-ssh", 2222), keep_guard()])
    master, slave = os.openpty()
    cli = [sys.executable, "-c", "from controller.cli import run; run()"]
    proc = subprocess.Popen(
        [*cli, "apply", v2, "--state", str(db)],
        stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    os.close(slave)
    try:
        assert proc.stderr is not None
        shown, deadline = "", time.monotonic() + 60
        while "Apply these changes?" not in shown and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stderr], [], [], 1)
            if ready:
                shown += os.read(proc.stderr.fileno(), 4096).decode()
        assert "Apply these changes?" in shown, shown
        # While the prompt waits, someone marks the rule "keep" on the firewall: the plan
        # judged (and shown) is no longer what would be written, and a fresh check denies.
        (uuid,) = firewall.state.list("rule")
        Drift(firewall.state).edit("rule", uuid, {"description": KEEP})
        os.write(master, b"y\n")
        _, err = proc.communicate(timeout=60)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2, err
    assert "changed since the plan was approved" in " ".join(err.split())
    assert rules(firewall) == {KEEP}  # nothing written


async def test_serve_auto_refuses_a_node_edited_between_judgment_and_write(
    firewall: EmulatorServer, tmp_path: Path
) -> None:
    infra = Infra(tmp_path / "infra")
    node = firewall_node(firewall, tmp_path / "secrets")
    v1 = infra.commit([node, rule_doc("allow-ssh", 22)], "v1")
    infra.push()
    async with running(settings(tmp_path, infra)) as loop:
        worker = loop.controller.workers["infra"]
        await loop.until(lambda: worker.revision == v1 and not worker.busy, what="v1")
        bus = loop.controller.shared.events
        publish = bus.publish

        def edit_after_the_plan(type: EventType, **data: Any) -> Event:
            # The pass has judged its plan (drift.detected comes before the apply): the
            # rule is marked on the firewall before the engine reads it to write.
            if type is EventType.DRIFT_DETECTED and rules(firewall) != {KEEP}:
                (uuid,) = firewall.state.list("rule")
                Drift(firewall.state).edit("rule", uuid, {"description": KEEP})
            return publish(type, **data)

        bus.publish = edit_after_the_plan  # type: ignore[method-assign]
        v2 = infra.commit([node, rule_doc("allow-ssh", 2222), keep_guard()], "port")
        infra.push()
        await loop.controller.trigger("infra")
        await loop.until(lambda: worker.revision == v2 and not worker.busy, what="v2")
        bus.publish = publish  # type: ignore[method-assign]
        applies = [r for r in loop.controller.store.list_runs() if r.command is Command.APPLY]
        assert applies and applies[0].revision == v2
        (edge,) = applies[0].nodes
        assert "changed since the plan was approved" in edge.message
        assert rules(firewall) == {KEEP}
        assert (firewall.state.list("rule").popitem()[1]).get("destination_port") == "22"


def test_a_denied_cli_apply_leaves_a_policy_denied_record_that_verifies(
    firewall: EmulatorServer, tmp_path: Path
) -> None:
    node = firewall_node(firewall, tmp_path / "secrets")
    db = tmp_path / "state.db"
    v1 = folder(tmp_path / "v1", [node, rule_doc("allow-ssh", 22)])
    assert fazai("apply", v1, "--state", str(db), "--auto-approve").returncode == 0
    denied = folder(tmp_path / "denied", [node, deny_rule_deletes()])
    refused = fazai("apply", denied, "--state", str(db), "--prune", "--auto-approve")
    assert refused.returncode == 2, refused.stderr
    trail = fazai("audit", "--state", str(db), "-o", "json")
    assert trail.returncode == 0, trail.stderr
    records = [json.loads(line) for line in trail.stdout.splitlines() if line.strip()]
    (record,) = [r for r in records if r["action"] == "policy.denied"]
    shown = json.dumps(record)
    assert NO_RULE_DELETE in shown and "allow-ssh" in shown
    verified = fazai("audit", "verify", "--state", str(db))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "allow-ssh to 22" in rules(firewall)


def audit_actions(loop: Any) -> list[str]:
    return [r.action for r in loop.controller.store.audit_records()]


async def test_an_approval_racing_a_pass_that_would_deny_it_is_refused(
    firewall: EmulatorServer, tmp_path: Path
) -> None:
    infra = Infra(tmp_path / "infra")
    node = firewall_node(firewall, tmp_path / "secrets")
    v1 = infra.commit([node, rule_doc("allow-ssh", 22)], "v1")
    infra.push()
    async with running(settings(tmp_path, infra)) as loop:
        worker = loop.controller.workers["infra"]
        await loop.until(lambda: worker.revision == v1 and not worker.busy, what="v1")
        infra.commit([node], "drop the rule")
        infra.push()
        await loop.controller.trigger("infra")
        await loop.until(lambda: bool(loop.controller.approvals()), what="a pending approval")
        (pending,) = loop.controller.approvals()
        await loop.idle()
        # The repository now denies rule deletes, and its pass is under way (slow reads)
        # when the approval comes: the approval waits for the pass, which withdraws it.
        infra.commit([node, deny_rule_deletes()], "deny rule deletes")
        infra.push()
        firewall.faults.delay(1.0, times=4)
        await loop.controller.trigger("infra")
        await loop.until(lambda: worker.busy, what="the pass of the deny")
        await asyncio.sleep(0.3)
        with pytest.raises(ApprovalSuperseded, match="no longer the latest offer"):
            await loop.controller.approve(pending.id, "bob")
        await loop.idle()
        assert "allow-ssh to 22" in rules(firewall)
        assert "approval.refused" in audit_actions(loop)
        assert Command.APPLY not in {
            r.command for r in loop.controller.store.list_runs() if r.trigger is Trigger.API
        }


async def test_an_approval_waiting_for_a_pass_applies_when_the_pass_offers_it_again(
    firewall: EmulatorServer, tmp_path: Path
) -> None:
    infra = Infra(tmp_path / "infra")
    node = firewall_node(firewall, tmp_path / "secrets")
    v1 = infra.commit([node, rule_doc("allow-ssh", 22)], "v1")
    infra.push()
    async with running(settings(tmp_path, infra)) as loop:
        worker = loop.controller.workers["infra"]
        await loop.until(lambda: worker.revision == v1 and not worker.busy, what="v1")
        infra.commit([node], "drop the rule")
        infra.push()
        await loop.controller.trigger("infra")
        await loop.until(lambda: bool(loop.controller.approvals()), what="a pending approval")
        (pending,) = loop.controller.approvals()
        await loop.idle()
        # A drift check re-plans the same commit while the approval comes: the pass offers
        # the same plan again (same id), so the approval stands and applies after it.
        firewall.faults.delay(1.0, times=2)
        await loop.controller.trigger("infra")
        await loop.until(lambda: worker.busy, what="the second pass")
        run_id = await loop.controller.approve(pending.id, "bob")
        assert run_id is not None
        await loop.until(lambda: "allow-ssh to 22" not in rules(firewall), what="the delete")


async def test_an_approval_is_judged_for_the_run_its_offer_was(
    firewall: EmulatorServer, tmp_path: Path
) -> None:
    # A policy that denies rule deletes outside auto mode: the offer (an auto node held
    # by the shipped default) was judged in auto mode, and so is its approval.
    not_by_hand = policy(
        "deletes-only-automatic",
        "deny",
        "rule deletes only in auto mode",
        'run.mode != "auto"',
        kinds=["FirewallRule"],
        actions=["delete"],
    )
    infra = Infra(tmp_path / "infra")
    node = firewall_node(firewall, tmp_path / "secrets")
    v1 = infra.commit([node, rule_doc("allow-ssh", 22), not_by_hand], "v1")
    infra.push()
    async with running(settings(tmp_path, infra)) as loop:
        worker = loop.controller.workers["infra"]
        await loop.until(lambda: worker.revision == v1 and not worker.busy, what="v1")
        infra.commit([node, not_by_hand], "drop the rule")
        infra.push()
        await loop.controller.trigger("infra")
        await loop.until(lambda: bool(loop.controller.approvals()), what="a pending approval")
        (pending,) = loop.controller.approvals()
        await loop.idle()
        run_id = await loop.controller.approve(pending.id, "bob")
        assert run_id is not None
        await loop.until(lambda: "allow-ssh to 22" not in rules(firewall), what="the delete")
        run = loop.controller.store.get_run(run_id)
        assert run is not None and "approved by bob" in (run.actor or "")


def test_rollback_of_a_run_a_later_one_built_on_is_refused_unless_forced_and_judged(
    firewall: EmulatorServer, tmp_path: Path
) -> None:
    node = firewall_node(firewall, tmp_path / "secrets")
    db = tmp_path / "state.db"
    runs = [
        [node, rule_doc("allow-ssh", 22)],
        [node, rule_doc("allow-ssh", 2222)],
        [node, rule_doc("allow-ssh", 2222), rule_doc("allow-https", 443, sequence=110)],
    ]
    for n, documents in enumerate(runs, 1):
        applied = fazai(
            "apply", folder(tmp_path / f"v{n}", documents), "--state", str(db), "--auto-approve"
        )
        assert applied.returncode == 0, applied.stderr
    latest = folder(tmp_path / "v3", runs[2])
    before = rules(firewall)
    assert "allow-https to 443" in before

    # Run 2's snapshot predates run 3's rule: restoring it would delete that rule unjudged.
    refused = fazai("rollback", "2", latest, "--state", str(db), "--auto-approve")
    assert refused.returncode == 2, refused.stderr
    said = " ".join(refused.stderr.split())
    assert "run 2 is not the last to change its nodes (edge-fw: run 3)" in said
    assert "nothing restored" in said
    assert rules(firewall) == before

    # Forced, run 3's changes are judged too: deleting its rule needs a second person.
    forced = fazai("rollback", "2", latest, "--state", str(db), "--auto-approve", "--force")
    assert forced.returncode == 2, forced.stderr
    said = " ".join(forced.stderr.split())
    assert "needs approval: edge-fw: delete FirewallRule/allow-https" in said
    assert rules(firewall) == before
    assert commands(db) == ["apply", "apply", "apply"]


def test_a_forced_rollback_whose_later_changes_pass_the_policies_restores(
    firewall: EmulatorServer, tmp_path: Path
) -> None:
    node = firewall_node(firewall, tmp_path / "secrets")
    db = tmp_path / "state.db"
    for n, port in enumerate((22, 2222, 8022), 1):
        documents = [node, rule_doc("allow-ssh", port)]
        applied = fazai(
            "apply", folder(tmp_path / f"v{n}", documents), "--state", str(db), "--auto-approve"
        )
        assert applied.returncode == 0, applied.stderr
    latest = folder(tmp_path / "v3", [node, rule_doc("allow-ssh", 8022)])
    assert fazai("rollback", "2", latest, "--state", str(db), "--auto-approve").returncode == 2
    forced = fazai("rollback", "2", latest, "--state", str(db), "--auto-approve", "--force")
    assert forced.returncode == 0, forced.stderr
    (rule,) = firewall.state.list("rule").values()
    assert rule.get("destination_port") == "22"  # run 2's snapshot: before it wrote
