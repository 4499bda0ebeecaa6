"""``fazai serve`` from the command line: config errors, and the services it starts."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path

import pytest

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
    assert f"{config}:4:32: ControllerConfig: sources[0].mode: 'sometimes' is not one of" in (
        " ".join(result.stderr.split())
    )
    assert "1 error(s) in the controller's config" in result.stderr
    assert "Traceback" not in result.stderr


def test_without_a_config_it_says_what_to_do(tmp_path: Path) -> None:
    result = subprocess.run(
        [*COMMAND, "serve"], capture_output=True, text=True, timeout=60, cwd=tmp_path,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 2
    assert "no fazai.yaml here" in result.stderr


def test_the_loop_runs_alone_when_the_api_is_off_or_absent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    config = ControllerConfig(
        sources=(SourceConfig("infra", str(tmp_path)),),
        sections={"reports": {"dir": "r"}},
    )

    async def check() -> None:
        with StateStore(tmp_path / "s.db") as store:
            controller = Controller(config, store, EventBus())
            stop = asyncio.Event()
            monkeypatch.setattr(serve, "_service", lambda module, attribute: None)
            assert serve.services(controller, config, stop, api=False) == {}
            assert serve.services(controller, config, stop, api=True) == {}

    with caplog.at_level(logging.INFO, logger="fazai.serve"):
        asyncio.run(check())
    assert "HTTP API off (--no-api)" in caplog.text
    assert "controller.server is not installed; running the loop only" in caplog.text
    assert "reports configured, but controller.reports is not installed" in caplog.text
