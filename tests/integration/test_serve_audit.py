"""The audit trail of `fazai serve`: a git-triggered apply is recorded as the commit's
author with its signature check; approvals approved and aborted leave their records.
Against the OPNsense emulator, a real git remote and the real controller loop."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.events import EventType
from controller.reconcile.config import ControllerConfig, SignatureConfig
from controller.reconcile.handle import Mode
from controller.store import Command, StateStore
from controller.testing.opnsense import EmulatorServer
from tests.integration.servekit import Infra, firewall_node, rule_doc, running, source
from tests.signkit import SshKey, commit


@pytest.fixture
def firewall() -> Iterator[EmulatorServer]:
    with EmulatorServer(version="26.1") as emu:
        yield emu


def files(emu: EmulatorServer, tmp_path: Path, *ports: int) -> dict[str, str]:
    node = firewall_node(emu, tmp_path / "secrets")
    rules = [rule_doc(f"port-{p}", p, sequence=p) for p in ports]
    return {"desired/state.yaml": yaml.safe_dump_all([node, *rules], sort_keys=False)}


def config(tmp_path: Path, infra: Infra, **overrides: Any) -> ControllerConfig:
    return ControllerConfig(
        sources=(dataclasses.replace(source(infra), **overrides),),
        state=tmp_path / "state.db",
        cache_dir=tmp_path / "cache",
        drift_check=0,
        settle=0.05,
    )


async def test_a_signed_commit_is_applied_as_its_author_with_the_signature(
    firewall: EmulatorServer, tmp_path: Path
) -> None:
    infra = Infra(tmp_path / "infra")
    alice = SshKey(tmp_path, "alice")
    signers = tmp_path / "allowed_signers"
    signers.write_text(alice.allowed_signers_line("alice@example.invalid"))
    head = commit(infra.work, files(firewall, tmp_path, 22), "ssh", ssh=alice)
    infra.push()
    settings = config(tmp_path, infra, mode=Mode.AUTO, signatures=SignatureConfig(signers, ()))
    async with running(settings) as loop:
        await loop.until(
            lambda: bool(loop.of(EventType.RUN_FINISHED, command="apply")), what="the apply"
        )
        store = loop.controller.shared.store
        (apply_run,) = [r for r in store.list_runs() if r.command is Command.APPLY]
        records = [r for r in store.audit_records() if r.run_id == apply_run.id]
    assert apply_run.revision == head
    assert apply_run.actor.startswith("Test <test@example.invalid> [SSH signature by alice@")
    (txn,) = [r for r in records if r.action == "node.transaction"]
    assert (txn.actor, txn.trigger, txn.node) == (apply_run.actor, "schedule", "edge-fw")
    assert json.loads(txn.payload)["result"] == "converged"


async def test_approvals_aborted_and_approved_are_audited(
    firewall: EmulatorServer, tmp_path: Path
) -> None:
    infra = Infra(tmp_path / "infra")
    head = commit(infra.work, files(firewall, tmp_path, 25), "manual")
    infra.push()
    async with running(config(tmp_path, infra, mode=Mode.MANUAL)) as loop:
        controller = loop.controller
        await loop.until(lambda: bool(controller.approvals()), what="an approval")
        (first,) = controller.approvals()
        await controller.abort(first.id)
        await controller.trigger("infra")
        await loop.until(lambda: bool(controller.approvals()), what="a new approval")
        (second,) = controller.approvals()
        run_id = await controller.approve(second.id, "ops")
        await loop.until(lambda: bool(loop.of(EventType.RUN_FINISHED, run_id=run_id)))
    with StateStore(tmp_path / "state.db") as store:
        records = list(store.audit_records())
        (run,) = [r for r in store.list_runs() if r.command is Command.PLAN][-1:]
        assert store.audit_verify().ok
    decisions = [
        (r.action, json.loads(r.payload)["approval"])
        for r in records
        if r.action.startswith("approval.")
    ]
    assert decisions == [("approval.aborted", first.id), ("approval.approved", second.id)]
    approved = next(r for r in records if r.action == "approval.approved")
    assert json.loads(approved.payload)["revision"] == head
    # The plan runs of an unsigned source: the author, signatures not checked.
    assert run.actor == "Test <test@example.invalid> [signature not checked]"
    assert [r.action for r in records if r.run_id == run_id][-1] == "run.finished"
