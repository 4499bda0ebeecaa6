"""``fazai serve`` as a process (issue 14): its log says what each reconcile did (applied,
drift found, failed, rolled back), as JSON lines carrying the run id with
``--log-format json``; and event ids keep increasing across a restart, so a client
resuming with the previous process's ``Last-Event-ID`` gets the new process's events."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from controller.server import sse
from controller.store import StateStore
from controller.testing.opnsense import EmulatorServer
from tests.integration.servekit import Infra, firewall_node, resource

COMMAND = [sys.executable, "-c", "from controller.cli import run; run()"]


@pytest.fixture
def firewall() -> Iterator[EmulatorServer]:
    with EmulatorServer(version="26.1") as emu:
        yield emu


def alias(i: int) -> dict[str, Any]:
    return resource(
        "FirewallAlias", f"out-{i}", {"node": "edge-fw"},
        name=f"out_{i}", type="host", content=[f"10.9.0.{i}"],
    )  # fmt: skip


def setup(tmp_path: Path, emu: EmulatorServer, count: int) -> tuple[Infra, Path, Path]:
    infra = Infra(tmp_path / "infra")
    node = firewall_node(emu, tmp_path / "secrets")
    infra.commit([node] + [alias(i) for i in range(count)])
    infra.push()
    config = tmp_path / "fazai.yaml"
    db = tmp_path / "state.db"
    config.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "fazai.dev/v1alpha1",
                "kind": "ControllerConfig",
                "state": str(db),
                "cacheDir": str(tmp_path / "cache"),
                "driftCheck": 0,
                "sources": [
                    {"name": "infra", "url": infra.url, "path": "desired", "mode": "auto",
                     "poll": 0},
                ],
            }
        )
    )  # fmt: skip
    return infra, config, db


def once(config: Path, *flags: str) -> tuple[int, list[dict[str, Any]]]:
    done = subprocess.run(
        [*COMMAND, "serve", "--config", str(config), "--once", "--log-format", "json", *flags],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    return done.returncode, lines


def outcome(lines: list[dict[str, Any]], event: str) -> dict[str, Any]:
    found = [line for line in lines if line.get("event") == event]
    assert found, f"no {event} line in:\n" + "\n".join(str(line) for line in lines)
    return found[-1]


def test_the_log_says_what_each_reconcile_did_as_json_lines_with_the_run_id(
    firewall: EmulatorServer, tmp_path: Path
) -> None:
    infra, config, db = setup(tmp_path, firewall, 3)

    code, lines = once(config)
    assert code == 0, lines
    for line in lines:  # every line is one JSON object with the basics
        assert {"time", "level", "logger", "message"} <= set(line), line
    applied = outcome(lines, "node.verified")
    assert applied["message"].startswith("node edge-fw: applied 3 changes (run ")
    assert applied["node"] == "edge-fw" and applied["source"] == "infra"
    finished = outcome(lines, "run.finished")
    with StateStore(db) as store:
        apply_run = next(r for r in store.list_runs(10) if r.command.value == "apply")
    assert applied["run_id"] == finished["run_id"] == apply_run.id

    # Drift in detect mode: found, counted, nothing written.
    infra.commit([firewall_node(firewall, tmp_path / "secrets")] + [alias(i) for i in range(4)])
    infra.push()
    code, lines = once(config, "--mode", "detect")
    assert code == 1, lines
    drift = outcome(lines, "drift.detected")
    assert drift["message"].startswith("node edge-fw: drift found, 1 item, mode detect (run ")
    assert isinstance(drift["run_id"], int) and drift["node"] == "edge-fw"

    # The firewall refuses the write: the apply fails and says why.
    firewall.faults.fail(500, method="POST", path="addItem", times=None)
    code, lines = once(config)
    assert code == 2, lines
    failures = [line for line in lines if line.get("event") in ("node.failed", "node.rolled_back")]
    assert failures, lines
    assert " because " in failures[0]["message"] and failures[0]["node"] == "edge-fw"
    assert failures[0]["level"] in ("warning", "error")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def events_after(url: str, last_id: int | None, until: str, timeout: float) -> list[dict[str, Any]]:
    """The stream's events (resuming after ``last_id``) up to the first of type ``until``."""
    headers = {"Last-Event-ID": str(last_id)} if last_id is not None else {}
    seen: list[dict[str, Any]] = []
    parser = sse.Parser()
    deadline = time.monotonic() + timeout
    try:
        with httpx.stream(
            "GET", f"{url}/api/v1/events", headers=headers, timeout=httpx.Timeout(timeout)
        ) as response:
            for text in response.iter_lines():
                message = parser.line(text)
                if message is not None:
                    seen.append(json.loads(message.data))
                    if seen[-1]["type"] == until:
                        return seen
                if time.monotonic() > deadline:
                    break
    except httpx.ReadTimeout:
        pass
    raise AssertionError(f"no {until} within {timeout} s after {last_id}; got {seen}")


def start_serving(config: Path, port: int) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [*COMMAND, "serve", "--config", str(config), "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, process.communicate()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "serve did not get ready"
        time.sleep(0.1)


def stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr


def test_a_client_resuming_across_a_restart_gets_the_new_process_events(
    firewall: EmulatorServer, tmp_path: Path
) -> None:
    """Before the fix the restarted process counted from 1 again: a client resuming with
    the first process's last id (higher) got none of the new process's events."""
    infra, config, _ = setup(tmp_path, firewall, 2)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    first = start_serving(config, port)
    try:
        before = events_after(url, 0, "run.finished", 60)
        # The start's plan and apply: wait for the apply's end too.
        if before[-1].get("data", {}).get("command") != "apply":
            before += events_after(url, before[-1]["id"], "run.finished", 60)
    finally:
        stop(first)
    last_id = before[-1]["id"]

    infra.commit([firewall_node(firewall, tmp_path / "secrets")] + [alias(i) for i in range(3)])
    infra.push()
    second = start_serving(config, port)
    try:
        resumed = events_after(url, last_id, "run.started", 30)
    finally:
        stop(second)
    ids = [e["id"] for e in resumed]
    assert all(i > last_id for i in ids) and ids == sorted(ids)
    assert resumed[-1]["type"] == "run.started"
