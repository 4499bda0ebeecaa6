"""The policy stage gates every write, on the OPNsense emulator over real HTTP: the real
CLI (`apply`, `rollback`), the real GitOps loop on a real git remote (serve's passes and
approvals), and the pull-request review. Denied: nothing is written, on any node;
requireApproval: nothing is written until approved through serve's API."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import git
import pytest
import yaml

from controller.forges import command
from controller.pipeline.errors import PolicyDenied
from controller.reconcile.config import ControllerConfig
from controller.reconcile.handle import Mode
from controller.store import Command, NodeStatus, RunStatus, StateStore
from controller.testing.opnsense import Drift, EmulatorServer
from tests.integration.servekit import AUTHOR, Infra, firewall_node, rule_doc, running, source

API = "fazai.dev/v1alpha1"
NO_RULE_DELETE = "rule deletes are refused in this repository"


@pytest.fixture
def firewall() -> Iterator[EmulatorServer]:
    with EmulatorServer(version="26.1") as emu:
        yield emu


def policy(name: str, effect: str, message: str, expression: str, **match: Any) -> dict[str, Any]:
    rule = {"name": "the-rule", "effect": effect, "message": message, "expression": expression}
    spec: dict[str, Any] = {"rules": [rule]}
    if match:
        spec["match"] = match
    return {"apiVersion": API, "kind": "Policy", "metadata": {"name": name}, "spec": spec}


def deny_rule_deletes(expression: str = "true") -> dict[str, Any]:
    return policy(
        "no-rule-deletes",
        "deny",
        NO_RULE_DELETE,
        expression,
        kinds=["FirewallRule"],
        actions=["delete"],
    )


def fazai(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from controller.cli import run; run()", *args],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip


def folder(path: Path, documents: list[dict[str, Any]]) -> str:
    path.mkdir(parents=True, exist_ok=True)
    (path / "state.yaml").write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return str(path)


def rules(emu: EmulatorServer) -> set[str]:
    return {r.get("description", "") for r in emu.state.list("rule").values()}


def commands(db: Path) -> list[str]:
    with StateStore(db) as store:
        return [r.command.value for r in reversed(store.list_runs())]


# -- the CLI ---------------------------------------------------------------------------


def test_cli_apply_refuses_a_denied_delete_and_one_needing_approval(
    firewall: EmulatorServer, tmp_path: Path
) -> None:
    node = firewall_node(firewall, tmp_path / "secrets")
    db = tmp_path / "state.db"
    first = folder(tmp_path / "v1", [node, rule_doc("allow-ssh", 22)])
    applied = fazai("apply", first, "--state", str(db), "--auto-approve")
    assert applied.returncode == 0, applied.stderr
    assert "allow-ssh to 22" in rules(firewall)

    # The rule's document goes: prune would delete the rule FazAI created.
    denied = folder(tmp_path / "denied", [node, deny_rule_deletes()])
    refused = fazai("apply", denied, "--state", str(db), "--prune", "--auto-approve")
    assert refused.returncode == 2, refused.stderr
    said = " ".join(refused.stderr.split())
    assert (
        "denied: edge-fw: delete FirewallRule/allow-ssh: no-rule-deletes/the-rule: "
        f"{NO_RULE_DELETE}" in said
    )
    assert "a policy denies 1 change; nothing applied" in said
    assert "allow-ssh to 22" in rules(firewall)

    # Without the repository's deny, the shipped default asks for a second person, which
    # neither --auto-approve nor a y/N gives.
    held = folder(tmp_path / "held", [node])
    waiting = fazai("apply", held, "--state", str(db), "--prune", "--auto-approve")
    assert waiting.returncode == 2, waiting.stderr
    said = " ".join(waiting.stderr.split())
    assert (
        "needs approval: edge-fw: delete FirewallRule/allow-ssh: "
        "fazai-firewall-rules/rule-delete-needs-approval" in said
    )
    assert "fazai approve ID" in said and "--auto-approve or answering yes is not one" in said
    assert "allow-ssh to 22" in rules(firewall)
    assert commands(db) == ["apply"]  # no run was started by either refusal


def test_cli_rollback_is_refused_when_a_policy_denies_what_it_would_undo(
    firewall: EmulatorServer, tmp_path: Path
) -> None:
    node = firewall_node(firewall, tmp_path / "secrets")
    db = tmp_path / "state.db"
    first = folder(tmp_path / "v1", [node, rule_doc("allow-ssh", 22)])
    assert fazai("apply", first, "--state", str(db), "--auto-approve").returncode == 0
    # Rolling run 1 back deletes the rule it created: a delete this repository denies.
    guarded = folder(tmp_path / "guarded", [node, rule_doc("allow-ssh", 22), deny_rule_deletes()])
    refused = fazai("rollback", "1", guarded, "--state", str(db), "--auto-approve")
    assert refused.returncode == 2, refused.stderr
    said = " ".join(refused.stderr.split())
    assert f"delete FirewallRule/allow-ssh: no-rule-deletes/the-rule: {NO_RULE_DELETE}" in said
    assert "nothing restored" in said
    assert "allow-ssh to 22" in rules(firewall)
    assert commands(db) == ["apply"]


# -- serve -----------------------------------------------------------------------------


def settings(tmp_path: Path, infra: Infra, **options: Any) -> ControllerConfig:
    return ControllerConfig(
        sources=(dataclasses.replace(source(infra), mode=Mode.AUTO, prune=True, **options),),
        state=tmp_path / "state.db",
        cache_dir=tmp_path / "cache",
        drift_check=0,
        settle=0.1,
        backoff_initial=5.0,
        backoff_max=5.0,
    )


async def test_serve_auto_mode_holds_a_change_a_policy_requires_approval_for(
    firewall: EmulatorServer, tmp_path: Path
) -> None:
    infra = Infra(tmp_path / "infra")
    node = firewall_node(firewall, tmp_path / "secrets")
    v1 = infra.commit([node, rule_doc("allow-ssh", 22)], "v1")
    infra.push()
    async with running(settings(tmp_path, infra)) as loop:
        worker = loop.controller.workers["infra"]
        await loop.until(lambda: worker.revision == v1 and not worker.busy, what="v1")
        assert "allow-ssh to 22" in rules(firewall)

        v2 = infra.commit([node], "drop the rule")
        infra.push()
        await loop.controller.trigger("infra")
        await loop.until(lambda: bool(loop.controller.approvals()), what="a pending approval")
        (pending,) = loop.controller.approvals()
        assert (pending.revision, list(pending.nodes), pending.required) == (v2, ["edge-fw"], 1)
        assert f"{AUTHOR.name} <{AUTHOR.email}>" in pending.actors
        assert pending.reasons == (
            "edge-fw: delete FirewallRule/allow-ssh: fazai-firewall-rules/"
            "rule-delete-needs-approval: deleting a firewall rule can open or close a path; "
            "a second person checks it",
        )
        await loop.idle()
        assert "allow-ssh to 22" in rules(firewall)  # auto mode, yet nothing written
        assert worker.error is None
        assert Command.APPLY not in {
            r.command for r in loop.controller.store.list_runs() if r.revision == v2
        }

        run_id = await loop.controller.approve(pending.id, "ops")
        await loop.until(lambda: "allow-ssh to 22" not in rules(firewall), what="the delete")
        assert loop.controller.store.get_run(run_id) is not None


async def test_serve_writes_nothing_of_a_denied_plan_and_fails_the_pass(
    firewall: EmulatorServer, tmp_path: Path
) -> None:
    infra = Infra(tmp_path / "infra")
    node = firewall_node(firewall, tmp_path / "secrets")
    v1 = infra.commit([node, rule_doc("allow-ssh", 22)], "v1")
    infra.push()
    async with running(settings(tmp_path, infra)) as loop:
        worker = loop.controller.workers["infra"]
        await loop.until(lambda: worker.revision == v1 and not worker.busy, what="v1")
        # The rule goes (a delete, denied) while another one comes (allowed on its own).
        v2 = infra.commit([node, rule_doc("allow-https", 443, sequence=110), deny_rule_deletes()])
        infra.push()
        await loop.controller.trigger("infra")
        await loop.until(lambda: worker.error is not None, what="the pass to fail")
        assert worker.error is not None
        assert "a policy denies 1 change; nothing written, on any node" in worker.error
        assert NO_RULE_DELETE in worker.error
        assert rules(firewall) == {"allow-ssh to 22"}  # neither the delete nor the create
        assert loop.controller.approvals() == []
        runs = [r for r in loop.controller.store.list_runs() if r.revision == v2]
        assert runs and {r.command for r in runs} == {Command.PLAN}
        assert {r.status for r in runs} == {RunStatus.FAILED}
        (edge,) = runs[0].nodes
        assert (edge.status, NO_RULE_DELETE in edge.message) == (NodeStatus.FAILED, True)
        (denied,) = [
            r for r in loop.controller.store.audit_records() if r.action == "policy.denied"
        ]
        assert NO_RULE_DELETE in denied.payload


async def test_approving_checks_the_policies_again_on_a_fresh_plan(
    firewall: EmulatorServer, tmp_path: Path
) -> None:
    infra = Infra(tmp_path / "infra")
    node = firewall_node(firewall, tmp_path / "secrets")
    v1 = infra.commit([node, rule_doc("allow-ssh", 22)], "v1")
    infra.push()
    async with running(settings(tmp_path, infra)) as loop:
        worker = loop.controller.workers["infra"]
        await loop.until(lambda: worker.revision == v1 and not worker.busy, what="v1")
        # Deletes of rules someone marked "keep" are denied; this one is not marked yet.
        keep = deny_rule_deletes('item.fields.description.live.startsWith("keep")')
        infra.commit([node, keep], "drop the rule")
        infra.push()
        await loop.controller.trigger("infra")
        await loop.until(lambda: bool(loop.controller.approvals()), what="a pending approval")
        (pending,) = loop.controller.approvals()
        await loop.idle()
        # Meanwhile someone marks the rule on the firewall: the same delete, a new verdict.
        (uuid,) = firewall.state.list("rule")
        Drift(firewall.state).edit("rule", uuid, {"description": "keep: the vendor's tunnel"})
        with pytest.raises(PolicyDenied, match=NO_RULE_DELETE):
            await loop.controller.approve(pending.id, "ops")
        assert rules(firewall) == {"keep: the vendor's tunnel"}
        trail = {r.action: r for r in loop.controller.store.audit_records()}
        assert NO_RULE_DELETE in trail["policy.denied"].payload
        assert NO_RULE_DELETE in trail["approval.refused"].payload  # with the reason


# -- review ----------------------------------------------------------------------------


def test_a_review_plan_carries_the_policies_verdicts(
    firewall: EmulatorServer, tmp_path: Path
) -> None:
    repo = git.Repo.init(tmp_path / "repo", initial_branch="main")
    root = Path(str(repo.working_tree_dir))
    node = firewall_node(firewall, tmp_path / "secrets")

    def commit(documents: list[dict[str, Any]]) -> str:
        (root / "state.yaml").write_text(yaml.safe_dump_all(documents, sort_keys=False))
        repo.git.add("--all")
        return str(repo.index.commit("c", author=AUTHOR, committer=AUTHOR).hexsha)

    base = commit([node])
    block = rule_doc("block-mgmt", 8443)
    block["spec"]["action"] = "block"
    head = commit([node, block, rule_doc("allow-ssh", 22)])
    pair = command.load_pair(str(root), base, head, "")
    review = command.plan_pair(pair)
    items = {i.name: i for n in review.head.nodes for i in n.items}
    (verdict,) = items["block-mgmt"].verdicts
    assert (verdict.policy, verdict.rule, verdict.effect.value) == (
        "fazai-firewall-rules",
        "block-on-controller-interface",
        "requireApproval",
    )
    assert items["allow-ssh"].verdicts == ()
    assert pair.author == f"{AUTHOR.name} <{AUTHOR.email}>"
