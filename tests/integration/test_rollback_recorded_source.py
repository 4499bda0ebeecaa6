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


def _committed(firewall: EmulatorServer, tmp_path: Path) -> tuple[Path, git.Repo, str]:
    """A repository whose first commit holds the firewall, then a branch that moved on to
    a commit without it."""
    root = tmp_path / "repo"
    root.mkdir()
    (root / "fw.yaml").write_text(yaml.safe_dump_all(_documents(firewall, tmp_path / "s")))
    repo = git.Repo.init(root, initial_branch="main")
    repo.index.add(["fw.yaml"])
    applied_at = repo.index.commit("fw", author=AUTHOR, committer=AUTHOR).hexsha
    return root, repo, applied_at


def _move_on(root: Path, repo: git.Repo) -> None:
    (root / "fw.yaml").write_text("")
    repo.index.add(["fw.yaml"])
    repo.index.commit("emptied", author=AUTHOR, committer=AUTHOR)


def test_a_folder_named_like_the_recorded_git_source_is_not_read(
    firewall: EmulatorServer, tmp_path: Path
) -> None:
    """Recorded `.../repo@applied`: a folder literally named so must not stand in for the
    commit (its documents could send the rollback to another node)."""
    root, repo, applied_at = _committed(firewall, tmp_path)
    repo.git.branch("applied", applied_at)
    db = str(tmp_path / "state.db")
    before = _aliases(firewall)
    applied = fazai(tmp_path, "apply", "repo", "--ref", "applied", "--state", db, "--auto-approve")
    assert applied.returncode == 0, applied.stderr
    look_alike = tmp_path / "repo@applied"
    look_alike.mkdir()
    (look_alike / "fw.yaml").write_text("apiVersion: fazai.dev/v1alpha1\nkind: Decoy\n")
    rolled = fazai(_elsewhere(tmp_path), "rollback", "1", "--state", db, "--auto-approve")
    assert rolled.returncode == 0, rolled.stderr
    assert "Decoy" not in rolled.stderr
    assert f"git::{root}@applied at {applied_at[:12]}" in rolled.stderr
    assert _aliases(firewall) == before


def test_a_folder_run_at_a_clean_commit_is_rolled_back_from_that_commit(
    firewall: EmulatorServer, tmp_path: Path
) -> None:
    """A working copy recorded at a clean commit, which then moved on: rollback reads the
    folder at the run's commit, not as it is now (where the node is gone)."""
    root, repo, applied_at = _committed(firewall, tmp_path)
    db = str(tmp_path / "state.db")
    before = _aliases(firewall)
    applied = fazai(tmp_path, "apply", "repo", "--state", db, "--auto-approve")
    assert applied.returncode == 0, applied.stderr
    _move_on(root, repo)
    rolled = fazai(_elsewhere(tmp_path), "rollback", "1", "--state", db, "--auto-approve")
    assert rolled.returncode == 0, rolled.stderr
    assert f"reading run 1's source {root} at {applied_at[:12]}" in rolled.stderr
    assert "as it is now" not in rolled.stderr
    assert _aliases(firewall) == before
