"""scripts/copy_git_files.sh, the copy check_wheel.sh builds from: every file git knows
arrives, however long the list, and none it does not."""

from __future__ import annotations

import subprocess
from pathlib import Path

import git

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "copy_git_files.sh"


def test_a_long_file_list_is_copied_whole_and_nothing_else(tmp_path: Path) -> None:
    repo_dir = tmp_path / "repo"
    many = repo_dir / ("a-folder-with-a-long-name-" * 4)
    many.mkdir(parents=True)
    names = [f"module_with_a_rather_long_descriptive_name_{i:05d}.py" for i in range(3000)]
    for name in names:  # well over the 128 KiB one xargs command line holds
        (many / name).write_text(name)
    (repo_dir / ".gitignore").write_text("build/\n")
    (repo_dir / "gone.py").write_text("deleted in the working tree")
    repo = git.Repo.init(repo_dir)
    repo.git.add("--all")
    author = git.Actor("t", "t@example.invalid")
    repo.index.commit("files", author=author, committer=author)
    (repo_dir / "gone.py").unlink()
    (repo_dir / "new.py").write_text("untracked, not ignored")
    (repo_dir / "build").mkdir()
    (repo_dir / "build" / "stale.py").write_text("ignored")

    dest = tmp_path / "copy"
    done = subprocess.run(
        ["bash", str(SCRIPT), str(dest)], cwd=repo_dir, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    copied = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()}
    expected = {f"{many.name}/{n}" for n in names} | {".gitignore", "new.py"}
    assert copied == expected
