"""``fazai serve`` from the command line: config errors, and the services it starts."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from controller import daemon
from controller.events import EventBus
from controller.reconcile import serve
from controller.reconcile.config import ControllerConfig, SourceConfig
from controller.reconcile.controller import Controller
from controller.store import StateStore

COMMAND = [sys.executable, "-c", "from controller.cli import run; run()"]


def test_a_bad_config_is_exit_2_with_file_line_and_field(tmp_path: Path) -> None:
    config = tmp_path / "fazai.yaml"
    config.write_text(
        "apiVersion: fazai.dev/v1alpha1\nkind: ControllerConfig\n"
        "sources:\n  - {name: infra, url: /srv/x, mode: sometimes}\n"
    )
    result = subprocess.run(
        [*COMMAND, "serve", "--config", str(config), "--no-api"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 2
    assert f"{config}:4:32: ControllerConfig: sources[0].mode: must be one of" in (
        " ".join(result.stderr.split())
    )
    assert "1 error(s) in the controller's config" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("poll", "words"),
    [("500ms", "--poll: must be at least 1s"), ("999999999999d", "--poll: must be at most 365d")],
)
def test_poll_from_the_command_line_has_the_config_file_s_bounds(
    tmp_path: Path, poll: str, words: str
) -> None:
    config = tmp_path / "fazai.yaml"
    config.write_text(
        "apiVersion: fazai.dev/v1alpha1\nkind: ControllerConfig\nstate: state.db\n"
        "sources:\n  - {name: infra, url: /srv/x}\n"
    )
    result = subprocess.run(
        [*COMMAND, "serve", "--config", str(config), "--no-api", "--poll", poll],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert words in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "state.db").exists()


def test_without_a_config_it_says_what_to_do(tmp_path: Path) -> None:
    result = subprocess.run(
        [*COMMAND, "serve"], capture_output=True, text=True, timeout=60, cwd=tmp_path,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 2
    assert "no fazai.yaml here" in result.stderr


def test_the_services_are_those_configured_and_the_api_unless_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = ControllerConfig(sources=(SourceConfig("infra", str(tmp_path)),))

    async def check() -> None:
        with StateStore(tmp_path / "s.db") as store:
            controller = Controller(config, store, EventBus())
            stop = asyncio.Event()
            assert daemon.Services()(controller, config, stop, api=False) == {}
            started = daemon.Services()(controller, config, stop, api=True)
            assert list(started) == ["http"]
            for coroutine in started.values():
                coroutine.close()  # never run: only which services start is checked

    with caplog.at_level(logging.INFO, logger="fazai.serve"):
        asyncio.run(check())
    assert "HTTP API off (--no-api)" in caplog.text


def test_without_services_the_loop_runs_alone_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = ControllerConfig(
        sources=(SourceConfig("infra", str(tmp_path / "nowhere")),), state=tmp_path / "s.db"
    )

    async def check() -> int:
        task = asyncio.create_task(serve.serve(config))
        for _ in range(200):
            if "running the loop only" in caplog.text:
                break
            await asyncio.sleep(0.05)
        signal.raise_signal(signal.SIGTERM)
        return await asyncio.wait_for(task, 30)

    with caplog.at_level(logging.INFO, logger="fazai.serve"):
        code = asyncio.run(check())
    assert "no HTTP API, reports or notifications: running the loop only" in caplog.text
    assert code == 0
