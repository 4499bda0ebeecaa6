"""Control characters from documents, nodes and the store never reach a terminal raw.

A description holding ``\\e[2J\\e[31m`` (YAML's own escape for ESC), a bidi override and a
newline posing as a plan line go through the real command line against the OPNsense
emulator over real HTTP: text and markdown plans, the plan ``apply`` shows before it
asks, drift reports, history and diagnostics must show them as visible escapes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from controller.testing.opnsense import EmulatorServer
from tests.integration.servekit import firewall_node, resource

ESC = "\x1b"
CLEAR = "\x1b[2J"
RLO = "\u202e"
# Double-quoted YAML, as a hostile pull request would write it.
DESCRIPTION = '"\\e[2J\\e[31mWeb tier\\u202eok\\n  + FirewallAlias/trusted  create"'


@pytest.fixture
def firewall() -> Iterator[EmulatorServer]:
    with EmulatorServer(version="26.1") as emu:
        yield emu


@pytest.fixture
def hostile(firewall: EmulatorServer, tmp_path: Path) -> Path:
    # The folder's own name carries an escape too: it is the run's recorded source.
    folder = tmp_path / f"state{CLEAR}"
    folder.mkdir()
    node = firewall_node(firewall, tmp_path / "secrets")
    alias = resource(
        "FirewallAlias",
        "web-servers",
        {"node": "edge-fw"},
        name="web_servers",
        type="host",
        content=["10.0.10.11"],
        description="PLACEHOLDER",
    )
    text = yaml.safe_dump_all([node, alias]).replace("PLACEHOLDER", DESCRIPTION)
    (folder / "fw.yaml").write_text(text)
    return folder


def fazai(*args: str, colour: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("NO_COLOR", None)
    if colour:
        env["FORCE_COLOR"] = "1"  # rich styles on, as at a terminal: they must survive
    return subprocess.run(
        [sys.executable, "-c", "from controller.cli import run; run()", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _shown_safely(output: str) -> None:
    assert CLEAR not in output and RLO not in output
    assert "\\x1b[2J\\x1b[31mWeb tier\\u202eok" in output


def test_text_plan_escapes_control_characters_and_keeps_its_own_colours(hostile: Path) -> None:
    result = fazai("plan", str(hostile), colour=True)
    assert result.returncode == 1, result.stderr
    _shown_safely(result.stdout)
    assert f"{ESC}[" in result.stdout  # FazAI's own styling is still there
    # The newline stays inside the value: no line of the plan starts with the fake item.
    assert "\\n  + FirewallAlias/trusted  create" in result.stdout
    assert not any(
        line.strip().startswith("+ FirewallAlias/trusted") for line in result.stdout.splitlines()
    )


def test_plan_shown_before_apply_asks_is_escaped(hostile: Path, tmp_path: Path) -> None:
    result = fazai("apply", str(hostile), "--state", str(tmp_path / "s.db"))
    assert result.returncode == 2
    assert "no terminal to confirm on" in result.stderr
    _shown_safely(result.stdout)
    assert ESC not in result.stdout + result.stderr


def test_markdown_plan_and_drift_reports_are_escaped(hostile: Path, tmp_path: Path) -> None:
    markdown = fazai("plan", str(hostile), "-o", "markdown")
    assert markdown.returncode == 1, markdown.stderr
    assert ESC not in markdown.stdout and RLO not in markdown.stdout
    db = str(tmp_path / "s.db")
    for output in ("text", "markdown"):
        drift = fazai("drift", str(hostile), "--state", db, "-o", output)
        assert drift.returncode == 1, drift.stderr
        assert ESC not in drift.stdout + drift.stderr and RLO not in drift.stdout
    history = fazai("history", "--state", db)
    assert history.returncode == 0
    assert ESC not in history.stdout


def test_diagnostics_are_escaped(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "nodes.yaml").write_text(
        'apiVersion: fazai.dev/v1alpha1\nkind: Node\nmetadata: {name: "\\e[2Jweb"}\n'
        'spec: {platform: linux, address: "\\e[2J10.0.0.1\\u202e"}\n'
    )
    result = fazai("validate", str(folder), colour=True)
    assert result.returncode == 2
    assert CLEAR not in result.stderr and RLO not in result.stderr
    assert "nodes.yaml:3" in result.stderr
