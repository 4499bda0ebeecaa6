"""Who may approve a change, through the real controller and its HTTP API: the commit's
author and committer, and every token that asked for the pass, cannot; anyone else with
the approver role can."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import git
import httpx
import pytest
import yaml

from controller.reconcile.config import ControllerConfig
from controller.reconcile.handle import Mode
from controller.server.settings import Role, SecretRef, ServerSettings, TokenSetting
from controller.store import Command
from controller.testing.opnsense import EmulatorServer
from tests.integration.servekit import AUTHOR, Infra, firewall_node, rule_doc, running, source
from tests.unit.server.serverkit import bearer, serving

COMMITTER = git.Actor("Merge Bot", "merges@example.invalid")
NAMES = ("alice", "test", "bob", "ops", "merges")


@pytest.fixture
def firewall() -> Iterator[EmulatorServer]:
    with EmulatorServer(version="26.1") as emu:
        yield emu


@pytest.fixture
def values(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    found = {}
    for name in NAMES:
        found[name] = secrets.token_hex(16)
        monkeypatch.setenv(f"FAZAI_ACTOR_{name.upper()}", found[name])
    return found


def token(name: str, *identities: str) -> TokenSetting:
    ref = SecretRef(env=f"FAZAI_ACTOR_{name.upper()}")
    return TokenSetting(name, Role.APPROVER, ref, identities=identities)


SETTINGS = ServerSettings(
    tokens=(
        token("alice"),
        token("test"),  # named like the commit's author, "Test <test@example.invalid>"
        token("bob"),
        token("ops", "TEST@example.invalid"),  # the author, by a configured identity
        token("merges"),  # the committer's address's local part
    )
)


async def test_the_author_committer_and_the_token_that_asked_cannot_approve(
    firewall: EmulatorServer, tmp_path: Path, values: dict[str, str]
) -> None:
    infra = Infra(tmp_path / "infra")
    documents = [firewall_node(firewall, tmp_path / "secrets"), rule_doc("allow-smtp", 25)]
    folder = infra.root / "desired"
    folder.mkdir()
    (folder / "state.yaml").write_text(yaml.safe_dump_all(documents, sort_keys=False))
    infra.work.git.add("--all")
    infra.work.index.commit("change", author=AUTHOR, committer=COMMITTER)
    infra.push()
    config = ControllerConfig(
        sources=(source(infra, mode=Mode.MANUAL),),
        state=tmp_path / "state.db",
        cache_dir=tmp_path / "cache",
        drift_check=0,
        settle=0.1,
    )
    async with running(config) as loop:
        controller = loop.controller
        await loop.until(lambda: bool(controller.approvals()), what="an approval")
        (first,) = controller.approvals()
        assert set(first.actors) == {
            "Test <test@example.invalid>",
            "Merge Bot <merges@example.invalid>",
        }
        async with (
            serving(controller, SETTINGS) as url,  # type: ignore[arg-type]
            httpx.AsyncClient(base_url=url) as client,
        ):
            asked = await client.post(
                "/api/v1/reconcile", headers=bearer(values["alice"]), json={"source": "infra"}
            )
            assert asked.status_code == 202
            await loop.until(lambda: controller.workers["infra"].passes >= 2, what="alice's pass")
            await loop.idle()
            (pending,) = controller.approvals()
            # The same plan: the same approval, with alice among its actors now.
            assert pending.id == first.id
            assert "alice" in pending.actors
            shown = (await client.get("/api/v1/approvals", headers=bearer(values["bob"]))).json()
            assert set(shown["approvals"][0]["actors"]) == set(pending.actors)

            for name in ("test", "ops", "merges", "alice"):
                refused = await client.post(
                    f"/api/v1/approvals/{pending.id}/approve", headers=bearer(values[name]), json={}
                )
                assert refused.status_code == 403, (name, refused.text)
                assert "cannot approve it" in refused.json()["error"]
            assert controller.approvals()[0].approved_by == ()
            assert not firewall.state.list("rule")

            approved = await client.post(
                f"/api/v1/approvals/{pending.id}/approve", headers=bearer(values["bob"]), json={}
            )
            assert approved.status_code == 200, approved.text
            await loop.until(
                lambda: bool(firewall.state.list("rule")), what="the approved rule applied"
            )
            await loop.until(
                lambda: ("infra", "edge-fw") in controller.shared.settled,
                what="edge-fw's labels settled once it converged",
            )
        applies = [r for r in controller.store.list_runs(20, 0) if r.command is Command.APPLY]
        assert len(applies) == 1
        # The approved apply names who approved it after who set the change going.
        assert applies[0].actor.endswith(", approved by bob"), applies[0].actor
        # Every run of the pass and the approved apply names its source (monorepo scopes).
        runs = controller.store.list_runs(20, 0)
        assert {r.source_name for r in runs} == {"infra"}
        plans = [r for r in runs if r.command is Command.PLAN]
        assert any("(requested by alice)" in r.actor for r in plans)
