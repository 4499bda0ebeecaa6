"""The GitOps loop end to end: a real git remote, the real SSH fleet, the OPNsense
emulator, and the controller reconciling on webhooks, watches and drift checks."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.engine import plan as planning
from controller.events import EventType
from controller.model import loader
from controller.reconcile.config import ControllerConfig
from controller.reconcile.handle import Mode
from controller.source.open import open_source
from controller.store import Command, StateStore
from controller.testing.fleet import Fleet
from controller.testing.opnsense import EmulatorServer
from tests.integration.servekit import (
    Infra,
    file_doc,
    firewall_node,
    linux_node,
    resource,
    rule_doc,
    running,
    source,
    started_fleet,
)


@pytest.fixture(scope="module")
def serve_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with started_fleet(tmp_path_factory.mktemp("serve-fleet")) as fleet:
        yield fleet


@pytest.fixture
def firewall() -> Iterator[EmulatorServer]:
    with EmulatorServer(version="26.1") as emu:
        yield emu


def settings(tmp_path: Path, infra: Infra, **source_options: object) -> ControllerConfig:
    return ControllerConfig(
        sources=(source(infra, **source_options),),
        state=tmp_path / "state.db",
        cache_dir=tmp_path / "cache",
        drift_check=0,
        settle=0.1,
        backoff_initial=0.2,
        backoff_max=1.0,
    )


def cat(fleet: Fleet, node: str, path: str) -> str | None:
    result = fleet.nodes[node].run(f"cat {path}", check=False)
    return result.stdout.decode() if result.returncode == 0 else None


def rule_descriptions(emu: EmulatorServer) -> set[str]:
    return {item.get("description", "") for item in emu.state.list("rule").values()}


async def in_sync(infra: Infra, revision: str, cache: Path) -> bool:
    state = loader.load(open_source(infra.url, revision, "desired", cache))
    return (await planning.build(state)).exit_code == 0


async def test_a_pushed_commit_is_reconciled_within_a_second_of_its_webhook(
    serve_fleet: Fleet, firewall: EmulatorServer, tmp_path: Path
) -> None:
    infra = Infra(tmp_path / "infra")
    base = [linux_node(serve_fleet, "web-1"), firewall_node(firewall, tmp_path / "secrets")]
    motd = "/etc/fazai-serve/webhook/motd"
    web = {"node": "web-1"}
    # As found: the file already as v1 wants it, the firewall without the rule.
    serve_fleet.nodes["web-1"].run(
        f"mkdir -p /etc/fazai-serve/webhook && printf 'v1\\n' > {motd} && chmod 0644 {motd}"
    )
    v1 = infra.commit([*base, file_doc("motd", web, motd, "v1\n"), rule_doc("allow-ssh", 22)], "v1")
    infra.push()
    config = settings(tmp_path, infra, mode=Mode.AUTO)
    async with running(config) as loop:
        worker = loop.controller.workers["infra"]
        await loop.until(lambda: worker.revision == v1 and worker.last_sync is not None, what="v1")
        assert cat(serve_fleet, "web-1", motd) == "v1\n"
        assert "allow-ssh to 22" in rule_descriptions(firewall)

        # One file changed, one rule added.
        v2 = infra.commit(
            [
                *base,
                file_doc("motd", web, motd, "v2\n"),
                rule_doc("allow-ssh", 22),
                rule_doc("allow-https", 443, sequence=110),
            ],
            "v2",
        )
        infra.push()
        pushed = time.monotonic()
        assert await loop.controller.notify_push(infra.url, "refs/heads/main", v2)
        await loop.until(lambda: worker.revision == v2 and not worker.busy, what="v2")
        converged = time.monotonic() - pushed

        (start,) = loop.times(EventType.RUN_STARTED, command="plan", revision=v2)
        assert start - pushed < 1.0, f"reconcile started {start - pushed:.3f} s after the push"
        (plan_started,) = loop.of(EventType.RUN_STARTED, command="plan", revision=v2)
        assert plan_started.data["trigger"] == "webhook"
        assert cat(serve_fleet, "web-1", motd) == "v2\n"
        assert "allow-https to 443" in rule_descriptions(firewall)
        (finished,) = loop.of(EventType.RUN_FINISHED, command="apply", revision=v2)
        assert finished.data["status"] == "succeeded"
        applied = {(e.data["node"], e.data["kind"]) for e in loop.of(EventType.CHANGE_APPLIED)}
        assert {("web-1", "File"), ("edge-fw", "FirewallRule")} <= applied
        verified = {e.data["node"] for e in loop.of(EventType.NODE_VERIFIED)}
        assert verified >= {"web-1", "edge-fw"}
        assert all(e.data["source"] == "infra" for _, e in loop.events)
        (status,) = loop.controller.sources()
        assert (status.revision, status.error, status.retry_at) == (v2, None, None)
        assert loop.controller.ready()
        assert all(d.drifted == 0 for d in loop.controller.drift())
        assert await in_sync(infra, v2, tmp_path / "cache")
        print(f"webhook: start {start - pushed:.3f} s, converged {converged:.3f} s")

        # A replayed delivery of what is reconciled, another repository, another branch.
        runs = len(loop.of(EventType.RUN_STARTED))
        assert await loop.controller.notify_push(f"{infra.url}/", "main", v2)
        assert not await loop.controller.notify_push("https://git.example/other.git", "main", v2)
        assert not await loop.controller.notify_push(infra.url, "refs/heads/dev", v2)
        await asyncio.sleep(0.4)
        assert len(loop.of(EventType.RUN_STARTED)) == runs


async def test_a_burst_of_fifty_pushes_is_one_reconcile_of_the_newest(
    firewall: EmulatorServer, tmp_path: Path
) -> None:
    infra = Infra(tmp_path / "infra")
    node = firewall_node(firewall, tmp_path / "secrets")

    def alias(i: int) -> dict[str, object]:
        return resource(
            "FirewallAlias", "burst", {"node": "edge-fw"}, type="host", content=[f"10.9.0.{i}"]
        )

    infra.commit([node, alias(0)], "start")
    infra.push()
    async with running(settings(tmp_path, infra, mode=Mode.AUTO)) as loop:
        worker = loop.controller.workers["infra"]
        await loop.until(lambda: worker.last_sync is not None, what="first sync")
        await loop.idle()
        before = len(loop.of(EventType.RUN_STARTED, command="plan"))
        commits = [infra.commit([node, alias(i)], f"{i}") for i in range(1, 51)]
        infra.push()
        # Fifty pushes' webhooks arrive in quick succession, each naming its commit.
        for revision in commits:
            await loop.controller.notify_push(infra.url, "main", revision)
        await loop.until(lambda: worker.revision == commits[-1], what="newest commit")
        await loop.idle()
        await asyncio.sleep(0.3)
        plans = loop.of(EventType.RUN_STARTED, command="plan")[before:]
        assert [e.data["revision"] for e in plans] == [commits[-1]]
        assert len(loop.of(EventType.RUN_STARTED, command="apply", revision=commits[-1])) == 1
        queued = loop.of(EventType.RECONCILE_QUEUED, reason="webhook")
        assert len(queued) == 50
        assert sum(1 for e in queued if not e.data["coalesced"]) == 1
        contents = [i.get("content") for i in firewall.state.list("alias").values()]
        assert "10.9.0.50" in contents


async def test_a_commit_in_a_watched_working_copy_is_reconciled(
    firewall: EmulatorServer, tmp_path: Path
) -> None:
    infra = Infra(tmp_path / "infra")
    node = firewall_node(firewall, tmp_path / "secrets")
    infra.commit([node, rule_doc("watched", 8080)], "one")
    config = settings(tmp_path, infra, mode=Mode.AUTO, url=str(infra.root), watch=infra.root)
    async with running(config) as loop:
        worker = loop.controller.workers["infra"]
        await loop.until(lambda: worker.last_sync is not None, what="first sync")
        await loop.idle()
        assert "watched to 8080" in rule_descriptions(firewall)
        await asyncio.sleep(0.3)  # the watch is set up
        # An uncommitted edit is not the desired state: nothing happens.
        runs = len(loop.of(EventType.RUN_STARTED))
        (infra.root / "desired" / "state.yaml").write_text("not: even valid\n")
        await asyncio.sleep(1.0)
        assert len(loop.of(EventType.RUN_STARTED)) == runs
        committed_at = time.monotonic()
        two = infra.commit([node, rule_doc("watched", 8443)], "two")
        await loop.until(lambda: worker.revision == two and not worker.busy, what="watched commit")
        (start,) = loop.times(EventType.RUN_STARTED, command="plan", revision=two)
        assert start - committed_at < 1.0
        (started,) = loop.of(EventType.RUN_STARTED, command="plan", revision=two)
        assert started.data["trigger"] == "watch"
        assert "watched to 8443" in rule_descriptions(firewall)
        print(f"watch: start {start - committed_at:.3f} s")


async def test_detect_mode_publishes_drift_and_never_writes(
    serve_fleet: Fleet, firewall: EmulatorServer, tmp_path: Path
) -> None:
    infra = Infra(tmp_path / "infra")
    path = "/etc/fazai-serve/detect"
    serve_fleet.nodes["web-2"].run(f"mkdir -p /etc/fazai-serve && printf 'by hand\\n' > {path}")
    infra.commit(
        [
            linux_node(serve_fleet, "web-2"),
            firewall_node(firewall, tmp_path / "secrets"),
            file_doc("detect", {"node": "web-2"}, path, "from git\n"),
            rule_doc("allow-dns", 53),
        ]
    )
    infra.push()
    firewall.requests.clear()
    config = dataclasses.replace(settings(tmp_path, infra, mode=Mode.DETECT), drift_check=1.0)
    async with running(config) as loop:
        await loop.until(
            lambda: len(loop.of(EventType.RUN_FINISHED, command="plan")) >= 2,
            what="two plans (at start and at a drift check)",
        )
        drift = {e.data["node"]: e for e in loop.of(EventType.DRIFT_DETECTED)}
        assert set(drift) == {"web-2", "edge-fw"}
        assert drift["web-2"].data["mode"] == "detect"
        assert [(i["kind"], i["action"]) for i in drift["web-2"].data["items"]] == [
            ("File", "update")
        ]
        assert [(i["kind"], i["action"]) for i in drift["edge-fw"].data["items"]] == [
            ("FirewallRule", "create")
        ]
        table = {d.node: d for d in loop.controller.drift()}
        assert table["web-2"].drifted == 1 and table["edge-fw"].drifted == 1
        assert table["web-2"].mode is Mode.DETECT
        # Nothing was written: the file's bytes, the firewall's request log, the journal.
        assert cat(serve_fleet, "web-2", path) == "by hand\n"
        assert firewall.requests.count(method="POST") == 0
        assert firewall.requests.count(method="GET") > 0
        assert not loop.of(EventType.CHANGE_APPLIED)
        assert not loop.of(EventType.RUN_STARTED, command="apply")
        scheduled = loop.of(EventType.RECONCILE_QUEUED, reason="drift")
        assert scheduled, "the periodic drift check did not run"
    with StateStore(config.state) as store:
        runs = store.list_runs(100)
        assert runs and {r.command for r in runs} == {Command.PLAN}
        assert store.open_transactions() == []


async def test_manual_mode_waits_for_approval_and_abort_drops_it(
    serve_fleet: Fleet, firewall: EmulatorServer, tmp_path: Path
) -> None:
    infra = Infra(tmp_path / "infra")
    path = "/etc/fazai-serve/manual"
    serve_fleet.nodes["web-1"].run(f"rm -f {path}")
    docs = [
        linux_node(serve_fleet, "web-1"),
        firewall_node(firewall, tmp_path / "secrets"),
        file_doc("manual", {"node": "web-1"}, path, "approved\n"),
        rule_doc("allow-smtp", 25),
    ]
    v1 = infra.commit(docs)
    infra.push()
    firewall.requests.clear()
    async with running(settings(tmp_path, infra, mode=Mode.MANUAL)) as loop:
        controller = loop.controller
        await loop.until(lambda: bool(controller.approvals()), what="an approval")
        (pending,) = controller.approvals()
        assert (pending.source, pending.revision) == ("infra", v1)
        assert sorted(pending.nodes) == ["edge-fw", "web-1"]
        assert {c["kind"] for c in pending.plan["changes"]} == {"File", "FirewallRule"}
        (event,) = loop.of(EventType.APPROVAL_PENDING)
        assert event.data["approval_id"] == pending.id

        # The same plan found again keeps the same approval.
        await controller.trigger("infra")
        await loop.until(lambda: len(loop.of(EventType.RUN_FINISHED, command="plan")) == 2)
        await loop.idle()
        assert [a.id for a in controller.approvals()] == [pending.id]

        await controller.abort(pending.id)
        assert controller.approvals() == []
        with pytest.raises(LookupError):
            await controller.approve(pending.id, "ops")
        assert cat(serve_fleet, "web-1", path) is None
        assert firewall.requests.count(method="POST") == 0

        # Asked again, then approved: exactly that plan is applied.
        await controller.trigger("infra")
        await loop.until(lambda: bool(controller.approvals()), what="a new approval")
        (again,) = controller.approvals()
        assert again.id != pending.id
        run_id = await controller.approve(again.id, "ops")
        await loop.until(
            lambda: bool(loop.of(EventType.RUN_FINISHED, run_id=run_id)), what="approved run"
        )
        (finished,) = loop.of(EventType.RUN_FINISHED, run_id=run_id)
        assert finished.data["status"] == "succeeded"
        assert finished.data["approval_id"] == again.id
        assert cat(serve_fleet, "web-1", path) == "approved\n"
        assert "allow-smtp to 25" in rule_descriptions(firewall)
        assert controller.approvals() == []
        assert all(d.drifted == 0 for d in controller.drift() if d.node in ("web-1", "edge-fw"))

        # A plan the live state moved away from is refused at approve time.
        moved = "/etc/fazai-serve/moved"
        infra.commit([*docs, file_doc("moved", {"node": "web-1"}, moved, "from git\n")])
        infra.push()
        await controller.notify_push(infra.url, "main", None)
        await loop.until(lambda: bool(controller.approvals()), what="approval of the new file")
        (third,) = controller.approvals()
        serve_fleet.nodes["web-1"].run(f"printf 'from git\\n' > {moved}")  # made by hand
        refused_run = await controller.approve(third.id, "ops")
        await loop.until(lambda: bool(loop.of(EventType.RUN_FINISHED, run_id=refused_run)))
        (failed,) = loop.of(EventType.NODE_FAILED, run_id=refused_run)
        assert failed.data["node"] == "web-1"
        assert "changed since the plan was approved" in failed.data["reason"]
        assert not loop.of(EventType.CHANGE_APPLIED, run_id=refused_run)
    serve_fleet.nodes["web-1"].run(f"rm -f {path} {moved}")


async def test_polling_notices_a_push_and_the_drift_check_heals_in_auto_mode(
    firewall: EmulatorServer, tmp_path: Path
) -> None:
    from controller.testing.opnsense import Drift

    infra = Infra(tmp_path / "infra")
    node = firewall_node(firewall, tmp_path / "secrets")
    infra.commit([node, rule_doc("polled", 7000)])
    infra.push()
    config = dataclasses.replace(
        settings(tmp_path, infra, mode=Mode.AUTO, poll=0.3), drift_check=1.0
    )
    async with running(config) as loop:
        worker = loop.controller.workers["infra"]
        await loop.until(lambda: worker.last_sync is not None, what="first sync")
        # No webhook, no watch: the poller sees the new head.
        newer = infra.commit([node, rule_doc("polled", 7000), rule_doc("later", 7001, sequence=2)])
        infra.push()
        await loop.until(lambda: worker.revision == newer and not worker.busy, what="polled")
        started = loop.of(EventType.RUN_STARTED, command="plan", revision=newer)[0]
        assert started.data["trigger"] == "schedule"
        assert loop.of(EventType.RECONCILE_QUEUED, reason="poll", revision=newer)
        assert "later to 7001" in rule_descriptions(firewall)

        # An admin deletes the rule by hand; the next drift check puts it back.
        (uuid,) = [
            u for u, item in firewall.state.list("rule").items()
            if item.get("description") == "later to 7001"
        ]  # fmt: skip
        Drift(firewall.state).remove("rule", uuid)
        assert "later to 7001" not in rule_descriptions(firewall)
        await loop.until(
            lambda: "later to 7001" in rule_descriptions(firewall), what="healed by a drift check"
        )
        healing = [
            e
            for e in loop.of(EventType.DRIFT_DETECTED, node="edge-fw")
            if e.data["revision"] == newer
        ]
        assert healing and healing[-1].data["items"][0]["action"] == "create"
        assert loop.of(EventType.RECONCILE_QUEUED, reason="drift")
