"""A working copy with uncommitted edits is recorded and shown as ``SHA+dirty``, never as
the clean commit: real repositories, the real command line, a real state store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import git
import pytest

from controller.source.open import open_source

AUTHOR = git.Actor("Test", "test@example.invalid")

# Port 1 on loopback refuses at once: the plan records the node as unreadable, quickly.
NODE = """\
apiVersion: fazai.dev/v1alpha1
kind: Node
metadata: {name: web-1}
spec: {platform: linux, address: 127.0.0.1, port: 1}
"""
PACKAGE = """\
apiVersion: fazai.dev/v1alpha1
kind: Package
metadata: {name: curl}
spec: {target: {node: web-1}}
"""


@pytest.fixture
def repo(tmp_path: Path) -> git.Repo:
    root = tmp_path / "repo"
    (root / "state").mkdir(parents=True)
    (root / "state" / "nodes.yaml").write_text(NODE)
    (root / "state" / "pkg.yaml").write_text(PACKAGE)
    (root / "README.md").write_text("notes\n")
    made = git.Repo.init(root, initial_branch="main")
    made.index.add(["state/nodes.yaml", "state/pkg.yaml", "README.md"])
    made.index.commit("state", author=AUTHOR, committer=AUTHOR)
    return made


def _root(repo: git.Repo) -> Path:
    return Path(str(repo.working_tree_dir))


def test_clean_working_copy_is_the_commit(repo: git.Repo) -> None:
    assert open_source(str(_root(repo) / "state")).revision == repo.head.commit.hexsha


def test_modified_tracked_file_is_dirty(repo: git.Repo) -> None:
    (_root(repo) / "state" / "pkg.yaml").write_text(PACKAGE.replace("curl", "wget"))
    assert open_source(str(_root(repo))).revision == repo.head.commit.hexsha + "+dirty"


def test_staged_change_is_dirty(repo: git.Repo) -> None:
    (_root(repo) / "state" / "pkg.yaml").write_text(PACKAGE.replace("curl", "wget"))
    repo.index.add(["state/pkg.yaml"])
    assert open_source(str(_root(repo) / "state")).revision == repo.head.commit.hexsha + "+dirty"


def test_untracked_yaml_is_dirty(repo: git.Repo) -> None:
    (_root(repo) / "state" / "extra.yaml").write_text(PACKAGE.replace("curl", "htop"))
    assert open_source(str(_root(repo) / "state")).revision == repo.head.commit.hexsha + "+dirty"


def test_edits_beside_the_source_folder_do_not_count(repo: git.Repo) -> None:
    (_root(repo) / "README.md").write_text("more notes\n")
    (_root(repo) / "scratch.yaml").write_text("x: 1\n")
    assert open_source(str(_root(repo)), subdir="state").revision == repo.head.commit.hexsha


def _fazai(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-c", "from controller.cli import run; run()", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_dirty_revision_is_shown_and_stored_everywhere(repo: git.Repo, tmp_path: Path) -> None:
    state = str(_root(repo) / "state")
    (_root(repo) / "state" / "extra.yaml").write_text(PACKAGE.replace("curl", "htop"))
    sha = repo.head.commit.hexsha
    marked = f"{sha[:12]}+dirty"

    validated = _fazai("validate", state)
    assert validated.returncode == 0, validated.stderr
    assert f"at {marked}" in validated.stderr

    planned = _fazai("plan", state)
    assert f"at {marked}: planned with uncommitted changes" in planned.stdout
    assert json.loads(_fazai("plan", state, "-o", "json").stdout)["revision"] == sha + "+dirty"
    assert f"at `{marked}`" in _fazai("plan", state, "-o", "markdown").stdout

    store = str(tmp_path / "state.db")
    drift = _fazai("drift", state, "--state", store, "-o", "text")
    assert marked in drift.stdout, drift.stdout + drift.stderr
    runs = json.loads(_fazai("history", "--state", store, "-o", "json").stdout)
    assert [r["revision"] for r in runs] == [sha + "+dirty"]
    assert marked in _fazai("history", "--state", store).stdout


def test_watch_and_reports_keep_the_mark() -> None:
    from controller.reports.values import short
    from controller.server import watchview

    revision = "0123456789abcdef0123456789abcdef01234567+dirty"
    event = {"type": "run.started", "data": {"command": "apply", "revision": revision}}
    assert "0123456789ab+dirty" in watchview.line(event).plain
    assert short(revision) == "0123456789ab+dirty"
    assert short("0123456789abcdef0123456789abcdef01234567") == "0123456789ab"
