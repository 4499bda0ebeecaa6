"""`fazai watch`, `fazai approve` and `fazai approvals` as processes, against the API on
real uvicorn over loopback."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from controller.events import EventBus, EventType
from controller.server.settings import Role, SecretRef, TlsSetting, TokenScope, TokenSetting
from controller.store import StateStore
from controller.testing.opnsense.server import self_signed_certificate
from tests.unit.server.serverkit import FakeHandle, Tokens, serving, token_settings, with_tokens

READ = "env:FAZAI_TEST_READ_TOKEN"
WRITE = "env:FAZAI_TEST_WRITE_TOKEN"


@pytest.fixture
def handle(tmp_path: Path) -> Iterator[FakeHandle]:
    with StateStore(tmp_path / "state.db") as store:
        yield FakeHandle(store)


@pytest.fixture
def tokens(monkeypatch: pytest.MonkeyPatch) -> Tokens:
    monkeypatch.delenv("FAZAI_TOKEN", raising=False)
    monkeypatch.delenv("FAZAI_TOKEN_REF", raising=False)
    monkeypatch.delenv("FAZAI_URL", raising=False)
    return with_tokens(monkeypatch)


async def start(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from controller.cli import run; run()",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def fazai(*args: str) -> tuple[int, str, str]:
    process = await start(*args)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def line_matching(
    stream: asyncio.StreamReader, wanted: Callable[[str], bool], seen: list[str]
) -> str:
    while True:
        raw = await asyncio.wait_for(stream.readline(), 30)
        if not raw:
            raise AssertionError(f"stream ended; saw {seen}")
        line = raw.decode()
        seen.append(line)
        if wanted(line):
            return line


async def test_watch_renders_live_events_and_resumes_after_a_dropped_connection(
    handle: FakeHandle, tokens: Tokens
) -> None:
    bus = handle.events
    early = bus.publish(EventType.RECONCILE_QUEUED, source="infra", reason="webhook")
    out: list[str] = []
    err: list[str] = []
    async with serving(handle, token_settings()) as url:
        port = int(url.rsplit(":", 1)[1])
        watch = await start("watch", "--url", url, "--token-ref", READ, "--since", "0")
        assert watch.stdout is not None and watch.stderr is not None
        try:
            # --since 0 replays what the bus keeps.
            await line_matching(watch.stdout, lambda s: "reconcile.queued" in s, out)
            bus.publish(
                EventType.CHANGE_APPLIED,
                source="infra",
                run_id=7,
                node="edge-fw",
                kind="FirewallAlias",
                name="web",
                action="update",
            )
            line = await line_matching(watch.stdout, lambda s: "change.applied" in s, out)
            assert line.split("change.applied", 1)[1].split() == [
                "infra",
                "run",
                "7",
                "edge-fw",
                "FirewallAlias/web",
                "update",
            ]
        except BaseException:
            watch.kill()
            raise
    # The server is gone; events go on (the loop outlives its API).
    while_down = [
        bus.publish(EventType.NODE_VERIFIED, source="infra", run_id=7, node="edge-fw"),
        bus.publish(
            EventType.RUN_FINISHED,
            source="infra",
            run_id=7,
            status="succeeded",
            seconds=0.25,
            command="apply",
        ),
    ]
    await line_matching(watch.stderr, lambda s: "reconnecting" in s, err)
    try:
        async with serving(handle, token_settings(), port=port):
            await line_matching(watch.stdout, lambda s: "node.verified" in s, out)
            finished = await line_matching(watch.stdout, lambda s: "run.finished" in s, out)
            assert "run 7" in finished and "succeeded" in finished and "0.25s" in finished
            bus.publish(
                EventType.NODE_FAILED,
                source="infra",
                run_id=8,
                node="web-1",
                reason="verify mismatch",
            )
            failed = await line_matching(watch.stdout, lambda s: "node.failed" in s, out)
            assert "web-1" in failed and "reason: verify mismatch" in failed
            watch.send_signal(signal.SIGINT)
            code = await asyncio.wait_for(watch.wait(), 10)
    finally:
        if watch.returncode is None:
            watch.kill()
    assert code == 0
    rendered = [line for line in out if line.strip()]
    # Every event exactly once, in order, across the reconnection.
    types = [line.split()[1] for line in rendered]
    assert types == [
        "reconcile.queued",
        "change.applied",
        "node.verified",
        "run.finished",
        "node.failed",
    ]
    assert while_down[0].id == early.id + 2
    assert tokens.read not in "".join(out + err)


async def test_watch_json_output_and_refusals(handle: FakeHandle, tokens: Tokens) -> None:
    async with serving(handle, token_settings()) as url:
        event = handle.events.publish(EventType.RUN_STARTED, source="infra", run_id=1)
        watch = await start(
            "watch", "--url", url, "--token-ref", READ, "--since", "0", "-o", "json"
        )
        assert watch.stdout is not None
        try:
            raw = await asyncio.wait_for(watch.stdout.readline(), 30)
        finally:
            watch.send_signal(signal.SIGINT)
            await asyncio.wait_for(watch.wait(), 10)
        assert json.loads(raw) == event.to_dict()
        # Refusals that waiting cannot cure end the command at once, with exit 2.
        code, _, err = await fazai("watch", "--url", url)
        assert code == 2 and "401 a valid bearer token is needed" in err
        assert "--token-ref" in err


async def test_approvals_and_approve(handle: FakeHandle, tokens: Tokens) -> None:
    handle.add_approval("a1", ["edge-fw", "web-1"])
    handle.add_approval("a2")
    async with serving(handle, token_settings()) as url:
        code, out, _ = await fazai("approvals", "--url", url, "--token-ref", READ, "-o", "json")
        assert code == 0 and [a["id"] for a in json.loads(out)] == ["a1", "a2"]
        code, out, _ = await fazai("approvals", "--url", url, "--token-ref", READ)
        assert code == 0 and out.splitlines()[0].startswith("a1  ")
        assert "edge-fw +0 ~0 -0, web-1 +0 ~0 -0" in out.splitlines()[0]

        code, _, err = await fazai("approve", "a1", "--yes", "--url", url, "--token-ref", READ)
        assert code == 2 and "403 token 'dashboard' has the viewer role" in err
        assert handle.approved == []

        code, out, err = await fazai("approve", "a1", "--yes", "--url", url, "--token-ref", WRITE)
        assert code == 0 and "approved a1" in err
        run_id = int(out)
        assert handle.store.get_run(run_id) is not None and handle.approved == ["a1"]

        code, _, err = await fazai("approve", "a1", "--yes", "--url", url, "--token-ref", WRITE)
        assert code == 2 and "no pending approval 'a1'" in err
        code, _, err = await fazai("approve", "a1", "--url", url, "--token-ref", WRITE)
        assert code == 2 and "no pending approval 'a1'" in err

        code, _, err = await fazai("approve", "a2", "--abort", "--url", url, "--token-ref", WRITE)
        assert code == 0 and "aborted a2" in err and handle.aborted == ["a2"]

        code, out, err = await fazai("approvals", "--url", url, "--token-ref", READ)
        assert code == 0 and out == "" and "no pending approvals" in err

        code, _, err = await fazai("approvals", "--url", url, "--token-ref", "FAZAI_X")
        assert code == 2 and "env:NAME or file:PATH" in err
    # Nobody listens there any more.
    code, _, err = await fazai("approvals", "--url", url, "--token-ref", READ)
    assert code == 2 and "cannot connect" in err


async def test_approvals_show_how_many_approvals_a_plan_has_and_needs(
    handle: FakeHandle, tokens: Tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAZAI_TEST_OPS_TOKEN", "o" * 32)
    ops = TokenSetting("ops", Role.APPROVER, SecretRef(env="FAZAI_TEST_OPS_TOKEN"))
    settings = token_settings()
    settings = dataclasses.replace(settings, tokens=(*settings.tokens, ops))
    handle.add_approval("a1", required=2)
    async with serving(handle, settings) as url:
        code, out, _ = await fazai("approvals", "--url", url, "--token-ref", READ)
        assert code == 0 and out.rstrip().endswith("approvals 0/2")
        code, out, err = await fazai("approve", "a1", "-y", "--url", url, "--token-ref", WRITE)
        assert code == 0 and out == ""
        assert "approved a1: approvals 1/2 (by ci); not applied yet" in err
        code, out, err = await fazai("approve", "a1", "-y", "--url", url, "--token-ref", WRITE)
        assert code == 0 and out == ""
        assert "already approved by this token; approvals 1/2 (by ci)" in err
        code, out, _ = await fazai("approvals", "--url", url, "--token-ref", READ, "-o", "json")
        (shown,) = json.loads(out)
        assert (shown["required"], shown["approvals"], shown["approvedBy"]) == (2, 1, ["ci"])
        code, out, _ = await fazai("approvals", "--url", url, "--token-ref", READ)
        assert out.rstrip().endswith("approvals 1/2 (by ci)")
        args = ("approve", "a1", "-y", "--url", url, "--token-ref", "env:FAZAI_TEST_OPS_TOKEN")
        code, out, err = await fazai(*args)
        assert code == 0 and "approved a1: run" in err and int(out) > 0
    assert handle.approved == ["a1"] and handle.approvers == ["ci", "ci", "ops"]


async def test_the_cli_over_tls(handle: FakeHandle, tokens: Tokens, tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path, "127.0.0.1")
    handle.add_approval("a1")
    settings = dataclasses.replace(token_settings(), tls=TlsSetting(cert, key))
    async with serving(handle, settings) as url:
        assert url.startswith("https://")
        code, out, err = await fazai(
            "approvals", "--url", url, "--token-ref", READ, "--ca-file", str(cert), "-o", "json"
        )
        assert code == 0, err
        assert [a["id"] for a in json.loads(out)] == ["a1"]
        code, _, err = await fazai("approvals", "--url", url, "--token-ref", READ)
        assert code == 2 and "CERTIFICATE_VERIFY_FAILED" in err


PLAN = {
    "nodes": [{"node": "edge-fw"}, {"node": "web-1"}, {"node": "db-1"}],
    "changes": [
        {"node": "edge-fw", "kind": "FirewallAlias", "name": "admins", "action": "update",
         "changes": [{"field": "content", "live": ["10.0.0.1"], "desired": ["10.0.0.2"]}]},
        {"node": "edge-fw", "kind": "FirewallRule", "name": "old", "action": "delete",
         "changes": []},
        {"node": "web-1", "kind": "File", "name": "motd", "action": "create",
         "changes": [{"field": "content", "live": None, "desired": "hi\x1b[2J\n"}]},
    ],
}  # fmt: skip


def at_terminal(answer: str, *args: str) -> tuple[int, str]:
    """Run fazai with a terminal on stdin, answering the confirmation with ``answer``."""
    import os
    import pty
    import subprocess

    main, side = pty.openpty()
    try:
        os.write(main, answer.encode() + b"\n")
        done = subprocess.run(
            [sys.executable, "-c", "from controller.cli import run; run()", *args],
            stdin=side, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        os.close(main)
        os.close(side)
    return done.returncode, done.stderr


async def test_approve_shows_the_plan_and_asks_first(handle: FakeHandle, tokens: Tokens) -> None:
    """Approving applies changes to production: the person sees them first; `approvals`
    counts them per node."""
    handle.add_approval("a1", ["edge-fw", "web-1", "db-1"], PLAN)
    async with serving(handle, token_settings()) as url:
        code, out, _ = await fazai("approvals", "--url", url, "--token-ref", READ)
        assert code == 0 and "edge-fw +0 ~1 -1, web-1 +1 ~0 -0, db-1 +0 ~0 -0" in out

        code, _, err = await fazai("approve", "a1", "--url", url, "--token-ref", WRITE)
        assert code == 2 and "no terminal to confirm on; pass --yes" in err
        assert "~ FirewallAlias/admins" in err and "- FirewallRule/old" in err
        assert handle.approved == []

        args = ("approve", "a1", "--url", url, "--token-ref", WRITE)
        code, err = await asyncio.to_thread(at_terminal, "n", *args)
        assert code == 0, err
        assert "Approval cancelled: nothing applied" in err and handle.approved == []
        assert 'content: ["10.0.0.1"] → ["10.0.0.2"]' in err
        assert "\x1b" not in err and "hi\\x1b[2J" in err  # escapes shown, not sent
        assert (
            "Approving applies 3 changes (1 to create, 1 to update, 1 to delete) on 2 nodes" in err
        )

        code, err = await asyncio.to_thread(at_terminal, "y", *args)
        assert code == 0 and "approved a1" in err and handle.approved == ["a1"]


async def _watch_until(url: str, ref: str, since: int, last: str) -> tuple[list[str], str]:
    """Runs `fazai watch` until a line with ``last``; its stdout lines and its stderr."""
    watch = await start("watch", "--url", url, "--token-ref", ref, "--since", str(since))
    assert watch.stdout is not None and watch.stderr is not None
    out: list[str] = []
    try:
        await line_matching(watch.stdout, lambda s: last in s, out)
    finally:
        watch.send_signal(signal.SIGINT)
        await asyncio.wait_for(watch.wait(), 10)
    return out, (await watch.stderr.read()).decode()


async def test_watch_says_events_were_missed_only_when_the_server_says_so(
    tmp_path: Path, tokens: Tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAZAI_TEST_LAB_TOKEN", "l" * 32)
    lab = TokenSetting(
        "lab-ops",
        Role.VIEWER,
        SecretRef(env="FAZAI_TEST_LAB_TOKEN"),
        TokenScope(sources=frozenset({"lab"})),
    )
    settings = token_settings()
    settings = dataclasses.replace(settings, tokens=(*settings.tokens, lab))
    with StateStore(tmp_path / "state.db") as store:
        # A scoped stream leaves other sources' events out: its ids have gaps, no loss.
        handle = FakeHandle(store)
        handle.events.publish(EventType.NODE_FAILED, source="lab", node="lab-1", reason="a")
        for _ in range(5):
            handle.events.publish(EventType.NODE_FAILED, source="infra", node="fw", reason="x")
        handle.events.publish(EventType.NODE_FAILED, source="lab", node="lab-1", reason="b")
        async with serving(handle, settings) as url:
            out, err = await _watch_until(url, "env:FAZAI_TEST_LAB_TOKEN", 0, "reason: b")
        assert next(line for line in out if "node.failed" in line).endswith("reason: a\n")
        assert "missed" not in err
        # Resuming after events the bus no longer keeps: the server says how many.
        handle = FakeHandle(store, EventBus(history=3))
        sent = [
            handle.events.publish(EventType.NODE_READ, source="infra", node=f"n{i}")
            for i in range(6)
        ]
        async with serving(handle, settings) as url:
            out, err = await _watch_until(url, READ, sent[0].id, "n5")
        assert "2 events missed" in err
        assert [line.split()[3] for line in out if "node.read" in line] == ["n3", "n4", "n5"]
