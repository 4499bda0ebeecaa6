"""The policy stage holds where the adversarial review found it could be walked around:
policies that cannot be loaded, approvals judged by stale policies or racing a pass,
changes edited between judgment and write, rollbacks undoing later runs. On the OPNsense
emulator over real HTTP, the real CLI and the real GitOps loop on a real git remote."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from controller.store import Command, RunStatus
from controller.testing.opnsense import EmulatorServer
from tests.integration.servekit import Infra, firewall_node, rule_doc, running
from tests.integration.test_policy_gate import (
    deny_rule_deletes,
    fazai,
    folder,
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
        assert runs and {(r.command, r.status) for r in runs} == {
            (Command.PLAN, RunStatus.FAILED)
        }
        task = loop.controller._worker_tasks["infra"]
        assert not task.done()  # the worker lives on
        monkeypatch.undo()
        await loop.controller.trigger("infra")
        await loop.until(lambda: worker.revision == v1 and worker.error is None, what="v1")
        assert "allow-ssh to 22" in rules(firewall)
