"""Committing reports to a branch of a real git repository while the user works in it."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import git
import pytest

from controller.reports import branch
from controller.reports.errors import ReportError


def run(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A user's repository: main checked out, a staged change, an unstaged one, an
    untracked file."""
    path = tmp_path / "infra"
    path.mkdir()
    run(path, "init", "-q", "-b", "main")
    run(path, "config", "user.name", "User")
    run(path, "config", "user.email", "user@example.net")
    (path / "state.yaml").write_text("a: 1\n")
    run(path, "add", "state.yaml")
    run(path, "commit", "-q", "-m", "desired state")
    (path / "state.yaml").write_text("a: 2\n")
    run(path, "add", "state.yaml")
    (path / "state.yaml").write_text("a: 3\n")
    (path / "scratch.txt").write_text("wip\n")
    return path


def user_view(path: Path) -> tuple[str, str, str, str, str]:
    index = hashlib.sha256((path / ".git" / "index").read_bytes()).hexdigest()
    return (
        run(path, "rev-parse", "HEAD"),
        run(path, "symbolic-ref", "HEAD"),
        # --no-optional-locks: status must not refresh (rewrite) the index it is judging
        run(path, "--no-optional-locks", "status", "--porcelain"),
        index,
        (path / "state.yaml").read_text(),
    )


def reports(tmp_path: Path, text: str) -> dict[str, Path]:
    folder = tmp_path / "out" / "daily"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "latest.md").write_text(text)
    (folder / "20250301T060000Z.md").write_text(text)
    return {
        "daily/latest.md": folder / "latest.md",
        "daily/20250301T060000Z.md": folder / "20250301T060000Z.md",
    }


def test_reports_go_to_an_orphan_branch_and_the_user_sees_no_change(
    repo: Path, tmp_path: Path
) -> None:
    before = user_view(repo)
    first = branch.commit_files(repo, "fazai-reports", reports(tmp_path, "one\n"), "report 1")
    assert first.commit is not None and not first.pushed
    assert user_view(repo) == before
    assert run(repo, "rev-parse", "fazai-reports") == first.commit
    assert run(repo, "rev-list", "--count", "fazai-reports") == "1"  # an orphan: no parent
    assert run(repo, "show", "fazai-reports:daily/latest.md") == "one"
    assert run(repo, "log", "-1", "--format=%an <%ae>|%s", "fazai-reports") == (
        "FazAI <fazai@localhost>|report 1"
    )
    assert run(repo, "ls-tree", "-r", "--name-only", "fazai-reports").splitlines() == [
        "daily/20250301T060000Z.md",
        "daily/latest.md",
    ]

    files = reports(tmp_path, "two\n")
    (tmp_path / "out" / "daily" / "20250302T060000Z.md").write_text("two\n")
    files["daily/20250302T060000Z.md"] = tmp_path / "out" / "daily" / "20250302T060000Z.md"
    second = branch.commit_files(repo, "fazai-reports", files, "report 2", author=("Bot", "b@x"))
    assert run(repo, "rev-parse", "fazai-reports^") == first.commit
    assert run(repo, "show", "fazai-reports:daily/latest.md") == "two"
    assert len(run(repo, "ls-tree", "-r", "--name-only", "fazai-reports").splitlines()) == 3
    assert second.commit is not None
    assert user_view(repo) == before

    again = branch.commit_files(repo, "fazai-reports", files, "report 3")
    assert again.commit is None  # the same files: no empty commit
    assert run(repo, "rev-parse", "fazai-reports") == second.commit


def test_the_checked_out_branch_is_refused(repo: Path, tmp_path: Path) -> None:
    before = user_view(repo)
    with pytest.raises(ReportError, match="main is checked out in"):
        branch.commit_files(repo, "main", reports(tmp_path, "x\n"), "report")
    assert user_view(repo) == before


def test_a_branch_checked_out_in_another_worktree_is_refused(repo: Path, tmp_path: Path) -> None:
    branch.commit_files(repo, "fazai-reports", reports(tmp_path, "x\n"), "report")
    run(repo, "worktree", "add", "-q", str(tmp_path / "wt"), "fazai-reports")
    with pytest.raises(ReportError, match="fazai-reports is checked out in"):
        branch.commit_files(repo, "fazai-reports", reports(tmp_path, "y\n"), "report")


def test_push_to_a_remote_and_errors_name_no_credentials(repo: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    git.Repo.init(remote, bare=True)
    run(repo, "remote", "add", "origin", str(remote))
    done = branch.commit_files(
        repo, "fazai-reports", reports(tmp_path, "x\n"), "report", remote="origin"
    )
    assert done.pushed
    assert run(remote, "rev-parse", "fazai-reports") == done.commit
    run(repo, "remote", "add", "down", "https://user:hunter2@127.0.0.1:9/nothing.git")
    with pytest.raises(ReportError) as caught:
        branch.commit_files(
            repo, "fazai-reports", reports(tmp_path, "y\n"), "report", remote="down", timeout=20
        )
    assert "git push failed" in str(caught.value) and "hunter2" not in str(caught.value)


def test_a_bare_repository_works_and_a_folder_that_is_not_one_is_refused(
    tmp_path: Path,
) -> None:
    bare = tmp_path / "bare.git"
    git.Repo.init(bare, bare=True)
    done = branch.commit_files(bare, "reports", reports(tmp_path, "x\n"), "report")
    assert run(bare, "rev-parse", "reports") == done.commit
    with pytest.raises(ReportError, match="not a git repository"):
        branch.commit_files(tmp_path / "out", "reports", reports(tmp_path, "x\n"), "r")
