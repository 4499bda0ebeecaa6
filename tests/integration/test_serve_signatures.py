"""Signed commits only: an unsigned or foreign-signed head is reported and not applied."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.events import EventType
from controller.reconcile.config import ControllerConfig, SignatureConfig
from controller.reconcile.handle import Mode
from controller.testing.opnsense import EmulatorServer
from tests.integration.servekit import Infra, firewall_node, rule_doc, running, source
from tests.signkit import GpgKey, SshKey, commit


@pytest.fixture
def firewall() -> Iterator[EmulatorServer]:
    with EmulatorServer(version="26.1") as emu:
        yield emu


def descriptions(emu: EmulatorServer) -> set[str]:
    return {item.get("description", "") for item in emu.state.list("rule").values()}


def state_files(infra: Infra, emu: EmulatorServer, tmp_path: Path, *ports: int) -> dict[str, str]:
    import yaml

    node = firewall_node(emu, tmp_path / "secrets")
    rules = [rule_doc(f"port-{p}", p, sequence=p) for p in ports]
    return {"desired/state.yaml": yaml.safe_dump_all([node, *rules], sort_keys=False)}


async def test_only_commits_signed_by_allowed_keys_are_reconciled(
    firewall: EmulatorServer, tmp_path: Path
) -> None:
    infra = Infra(tmp_path / "infra")
    alice, mallory = SshKey(tmp_path, "alice"), SshKey(tmp_path, "mallory")
    signers = tmp_path / "allowed_signers"
    signers.write_text(alice.allowed_signers_line("alice@example.invalid"))
    with GpgKey("bob@example.invalid") as bob:
        bob_key = bob.export(tmp_path / "bob.asc")
        good = commit(infra.work, state_files(infra, firewall, tmp_path, 1), "ok", ssh=alice)
        infra.push()
        config = ControllerConfig(
            sources=(
                dataclasses.replace(
                    source(infra, mode=Mode.AUTO),
                    signatures=SignatureConfig(signers, (bob_key,)),
                ),
            ),
            state=tmp_path / "state.db",
            cache_dir=tmp_path / "cache",
            drift_check=0,
            settle=0.05,
        )
        async with running(config) as loop:
            controller = loop.controller
            worker = controller.workers["infra"]
            await loop.until(lambda: worker.revision == good and not worker.busy, what="good")
            assert "port-1 to 1" in descriptions(firewall)

            for signer, label, port in ((None, "unsigned", 666), (mallory, "foreign", 667)):
                posts = firewall.requests.count(method="POST")
                bad = commit(
                    infra.work, state_files(infra, firewall, tmp_path, 1, port), label, ssh=signer
                )
                infra.push()
                await controller.notify_push(infra.url, "main", bad)
                await loop.until(
                    lambda bad=bad: bool(loop.of(EventType.SIGNATURE_REFUSED, revision=bad)),
                    what=f"{label} refused",
                )
                await loop.idle()
                (refused,) = loop.of(EventType.SIGNATURE_REFUSED, revision=bad)
                expected = (
                    "the commit is not signed"
                    if signer is None
                    else "signed by an SSH key that is not in allowedSigners"
                )
                assert refused.data["reason"] == expected
                (status,) = controller.sources()
                assert status.error is not None and bad[:12] in status.error
                assert status.revision == good  # still the last accepted commit
                assert firewall.requests.count(method="POST") == posts  # nothing written
                assert f"port-{port} to {port}" not in descriptions(firewall)
                assert not loop.of(EventType.RUN_STARTED, revision=bad)

            # A drift check while the head is refused re-plans the last accepted commit.
            await controller.trigger("infra", "drift")
            await loop.until(lambda: len(loop.of(EventType.RUN_STARTED, revision=good)) >= 2)
            await loop.idle()
            assert worker.refusal is not None  # still shown

            # Signed with an allowed GPG key: reconciled, and the error clears.
            accepted = commit(
                infra.work, state_files(infra, firewall, tmp_path, 1, 443), "gpg", gpg=bob
            )
            infra.push()
            await controller.notify_push(infra.url, "main", accepted)
            await loop.until(lambda: worker.revision == accepted and not worker.busy)
            assert "port-443 to 443" in descriptions(firewall)
            (status,) = controller.sources()
            assert status.error is None
