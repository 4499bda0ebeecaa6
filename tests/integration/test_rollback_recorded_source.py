"""`fazai rollback RUN_ID` without PATH reads the run's recorded source: a folder at its
path, a git source at the run's commit. Real CLI, real git, the OPNsense emulator over
real HTTP, started from a folder full of unrelated YAML (as a source checkout is)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import git
import pytest
import yaml

from controller.testing.opnsense import EmulatorServer
from tests.integration.servekit import firewall_node, resource

AUTHOR = git.Actor("Test", "test@example.invalid")


@pytest.fixture
def firewall() -> Iterator[EmulatorServer]:
    with EmulatorServer(version="26.1") as emu:
        yield emu


def _documents(emu: EmulatorServer, secrets: Path) -> list[dict[str, Any]]:
    alias = resource(
        "FirewallAlias", "web", {"node": "edge-fw"}, name="web", type="host", content=["10.0.0.1"]
    )
    return [firewall_node(emu, secrets), alias]


def fazai(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from controller.cli import run; run()", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _elsewhere(tmp_path: Path) -> Path:
    """A working directory holding YAML that reading `.` would drown in."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    (cwd / "broken.yaml").write_text("apiVersion: fazai.dev/v1alpha1\nkind: Nope\n")
    return cwd


def _aliases(emu: EmulatorServer) -> list[str]:
    return sorted(a.get("name", "") for a in emu.state.list("alias").values())


def _apply_then_roll_back(emu: EmulatorServer, tmp_path: Path, *source: str) -> str:
    db = str(tmp_path / "state.db")
    before = _aliases(emu)
    applied = fazai(tmp_path, "apply", *source, "--state", db, "--auto-approve")
    assert applied.returncode == 0, applied.stderr
    assert "web" in _aliases(emu)
    rolled = fazai(_elsewhere(tmp_path), "rollback", "1", "--state", db, "--auto-approve")
    assert rolled.returncode == 0, rolled.stderr
    assert _aliases(emu) == before
    return rolled.stderr


def test_directory_run_is_rolled_back_from_its_recorded_path(
    firewall: EmulatorServer, tmp_path: Path
) -> None:
    folder = tmp_path / "state"
    folder.mkdir()
    (folder / "fw.yaml").write_text(yaml.safe_dump_all(_documents(firewall, tmp_path / "s")))
    # Applied with a relative PATH: the run must still be found from another directory.
    said = _apply_then_roll_back(firewall, tmp_path, "state")
    assert f"reading run 1's source {folder}" in said
    assert "Nope" not in said


def test_git_run_is_rolled_back_at_its_commit(firewall: EmulatorServer, tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "desired").mkdir(parents=True)
    (root / "desired" / "fw.yaml").write_text(
        yaml.safe_dump_all(_documents(firewall, tmp_path / "s"))
    )
    (root / "ci.yaml").write_text("apiVersion: fazai.dev/v1alpha1\nkind: Broken\n")
    repo = git.Repo.init(root, initial_branch="main")
    repo.index.add(["desired/fw.yaml", "ci.yaml"])
    applied_at = repo.index.commit("fw", author=AUTHOR, committer=AUTHOR).hexsha
    # The branch moves on to a commit that no longer has the node: the run's commit is read.
    (root / "desired" / "fw.yaml").write_text("")
    repo.index.add(["desired/fw.yaml"])
    repo.index.commit("emptied", author=AUTHOR, committer=AUTHOR)
    repo.git.branch("applied", applied_at)

    db = str(tmp_path / "state.db")
    before = _aliases(firewall)
    applied = fazai(
        tmp_path, "apply", "repo", "--ref", "applied", "--subdir", "desired", "--state", db,
        "--auto-approve",
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    repo.git.branch("-f", "applied", "main")  # the ref now names the emptied commit
    rolled = fazai(_elsewhere(tmp_path), "rollback", "1", "--state", db, "--auto-approve")
    assert rolled.returncode == 0, rolled.stderr
    assert _aliases(firewall) == before
    assert f"{root}//desired@applied at {applied_at[:12]}" in rolled.stderr
