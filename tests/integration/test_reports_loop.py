"""Scheduled reports and notifications beside the real controller, on real SSH nodes
(10.231.23.0/24): a node in ``detect`` gets a drift report and one notification instead
of a change; the report is committed to a reports branch of the repository; fixing the
drift by hand gets a "resolved" notice and an in-sync report."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest

from controller.events import EventType
from controller.notify.dispatcher import Notifier
from controller.notify.settings import NotifySettings, SecretRef, WebhookTarget
from controller.reconcile.config import ControllerConfig
from controller.reconcile.handle import Mode
from controller.reports import render_json
from controller.reports.clock import ManualClock
from controller.reports.scheduler import ReportScheduler
from controller.reports.settings import ReportSettings, Schedule
from controller.testing.fleet import Fleet, NodeSpec, fleet_available
from tests.integration.servekit import Infra, file_doc, linux_node, running, source
from tests.unit.notify.httpkit import HookServer

SUBNET = "10.231.23.0/24"
NODES = (NodeSpec("rep-web-1", "10.231.23.31"), NodeSpec("rep-db-1", "10.231.23.32"))
PATH = "/etc/fazai-loop-report.conf"
CONF = "listen 443\n"
SIX = datetime(2025, 3, 1, 6, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    reason = fleet_available()
    if reason is not None:
        pytest.skip(f"no fleet: {reason}")
    workdir = tmp_path_factory.mktemp("reports-loop-fleet")
    with Fleet(NODES, workdir=workdir, subnet=SUBNET, subnet_wait=600) as started:
        yield started


def cat(fleet: Fleet, node: str) -> str | None:
    result = fleet.nodes[node].run(f"cat {PATH}", check=False)
    return result.stdout.decode() if result.returncode == 0 else None


async def until(condition: object, timeout: float = 60.0) -> None:
    assert callable(condition)
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


async def test_detect_mode_gets_a_report_and_one_notification_instead_of_a_change(
    fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    infra = Infra(tmp_path)
    documents = [linux_node(fleet, n.name) for n in NODES]
    documents += [file_doc(f"conf-{n.name}", {"node": n.name}, PATH, CONF) for n in NODES]
    head = infra.commit(documents, "desired state")
    infra.push()
    fleet.nodes["rep-db-1"].run(f"printf '{CONF}' > {PATH} && chmod 0644 {PATH}")
    fleet.nodes["rep-web-1"].run(f"printf 'listen 80\\n' > {PATH} && chmod 0644 {PATH}")
    user_head = infra.work.head.commit.hexsha

    config = ControllerConfig(
        sources=(source(infra, mode=Mode.DETECT),),
        state=tmp_path / "state.db",
        cache_dir=tmp_path / "cache",
        drift_check=0,
        settle=0.1,
    )
    reports = ReportSettings(
        schedules=(Schedule(name="daily", cron="0 6 * * *"),),
        dir=tmp_path / "reports",
        branch="fazai-reports",
        repository=infra.root,  # the user's working copy: its branch and files stay as they are
        settle_timeout=60,
    )
    clock = ManualClock(SIX - timedelta(minutes=1))
    stop = asyncio.Event()
    try:
        with HookServer() as hook:
            monkeypatch.setenv("FAZAI_TEST_LOOP_HOOK", hook.url)
            notify = NotifySettings(
                (WebhookTarget(name="ops", url=SecretRef(env="FAZAI_TEST_LOOP_HOOK")),)
            )
            async with running(config) as loop:
                controller = loop.controller
                scheduler = ReportScheduler(reports, controller, clock=clock)
                notifier = Notifier(notify, controller, state_file=tmp_path / "notify.json")
                services = [
                    asyncio.create_task(scheduler.run(stop)),
                    asyncio.create_task(notifier.run(stop)),
                ]
                await asyncio.sleep(0.1)
                await loop.until(
                    lambda: loop.of(EventType.RUN_FINISHED), what="the first reconcile"
                )
                await until(lambda: len(hook.received) == 1)

                # 06:00: the schedule asks for a fresh check and reports it.
                await clock.sleeping()
                await clock.set(SIX)
                await until(lambda: len(scheduler.outcomes) == 1)
                outcome = scheduler.outcomes[0]
                assert outcome.settled
                assert len(loop.of(EventType.RUN_FINISHED)) >= 2  # the schedule's own check
                document = json.loads((tmp_path / "reports/daily/latest.json").read_text())
                jsonschema.validate(document, render_json.schema())
                assert document["status"] == "drift"
                assert document["sources"][0]["revision"] == head
                nodes = {n["node"]: n for n in document["nodes"]}
                assert nodes["rep-web-1"]["mode"] == "detect"
                assert (nodes["rep-web-1"]["update"], nodes["rep-db-1"]["inSync"]) == (1, True)
                assert nodes["rep-web-1"]["platform"] == "linux"
                (conf,) = document["resources"]
                assert conf["name"] == "conf-rep-web-1" and conf["action"] == "update"
                assert "+listen 443" in conf["changes"][0]["diff"]
                assert [p["drifted"] for p in document["series"]] == [1, 1]

                # detect never writes; the same drift, checked twice, was notified once.
                assert cat(fleet, "rep-web-1") == "listen 80\n"
                await asyncio.sleep(0.5)
                (drift,) = hook.bodies()
                assert (drift["type"], drift["node"], drift["revision"]) == (
                    "drift",
                    "rep-web-1",
                    head,
                )
                assert drift["resources"][0]["changes"][0]["field"] == "content"

                # Fixed by hand: resolved, once; the next report is in sync.
                fleet.nodes["rep-web-1"].run(f"printf '{CONF}' > {PATH}")
                await controller.trigger(reason="api")
                await until(lambda: len(hook.received) == 2)
                assert hook.bodies()[1]["type"] == "resolved"
                assert hook.bodies()[1]["node"] == "rep-web-1"
                await clock.sleeping()
                await clock.set(SIX + timedelta(days=1))
                await until(lambda: len(scheduler.outcomes) == 2)
                assert scheduler.outcomes[1].report.status == "in sync"
                stop.set()
                await asyncio.wait_for(asyncio.gather(*services), 15)
            assert len(hook.received) == 2
    finally:
        stop.set()
        for node in NODES:
            fleet.nodes[node.name].run(f"rm -f {PATH}")

    branch = infra.work.commit("fazai-reports")
    assert branch.hexsha == scheduler.outcomes[1].commit
    assert branch.parents[0].hexsha == scheduler.outcomes[0].commit
    assert infra.work.head.commit.hexsha == user_head and infra.work.active_branch.name == "main"
    assert not infra.work.is_dirty(untracked_files=True)
    latest = branch.tree / "daily" / "latest.json"
    assert json.loads(latest.data_stream.read())["status"] == "in sync"
