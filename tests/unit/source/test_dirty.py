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


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, timeout=60)


def test_an_ignored_file_the_source_reads_is_dirty(repo: git.Repo) -> None:
    """`git status` does not list ignored files, but the directory source reads them."""
    root = _root(repo)
    (root / ".gitignore").write_text("state/files/secret.conf\n")
    repo.index.add([".gitignore"])
    repo.index.commit("ignore", author=AUTHOR, committer=AUTHOR)
    (root / "state" / "files").mkdir()
    (root / "state" / "files" / "secret.conf").write_text("only here\n")
    assert open_source(str(root / "state")).revision == repo.head.commit.hexsha + "+dirty"


@pytest.mark.parametrize("flag", ["--assume-unchanged", "--skip-worktree"])
def test_an_edit_git_was_told_to_overlook_is_dirty(repo: git.Repo, flag: str) -> None:
    root = _root(repo)
    _git(root, "update-index", flag, "state/pkg.yaml")
    (root / "state" / "pkg.yaml").write_text(PACKAGE.replace("curl", "wget"))
    assert open_source(str(root / "state")).revision == repo.head.commit.hexsha + "+dirty"


def test_a_file_inside_a_submodule_is_dirty(repo: git.Repo, tmp_path: Path) -> None:
    """HEAD records a submodule's commit, not its files: its untracked files (and the
    rest, which `rollback` could not read back from the commit) are not HEAD's."""
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "extra.yaml").write_text(PACKAGE.replace("curl", "htop"))
    made = git.Repo.init(inner, initial_branch="main")
    made.index.add(["extra.yaml"])
    made.index.commit("inner", author=AUTHOR, committer=AUTHOR)
    root = _root(repo)
    _git(root, "-c", "protocol.file.allow=always", "submodule", "add", str(inner), "state/sub")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "sub")
    assert repo.is_dirty(untracked_files=True) is False
    (root / "state" / "sub" / "more.yaml").write_text(PACKAGE.replace("curl", "jq"))
    assert open_source(str(root / "state")).revision == repo.head.commit.hexsha + "+dirty"


def test_a_clean_working_copy_with_a_committed_link_is_still_the_commit(repo: git.Repo) -> None:
    root = _root(repo)
    (root / "state" / "alias.yaml").symlink_to("pkg.yaml")
    repo.index.add(["state/alias.yaml"])
    repo.index.commit("link", author=AUTHOR, committer=AUTHOR)
    assert open_source(str(root / "state")).revision == repo.head.commit.hexsha
