"""Symbolic links in a source: followed only to files inside it, refused in words otherwise.

Real folders, real links, real git repositories with committed link blobs; and the real
command line, whose plan must never show what a link outside the source leads to.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import git
import pytest

from controller.errors import InvalidInputError
from controller.model import loader
from controller.source.open import open_source

AUTHOR = git.Actor("Test", "test@example.invalid")
SECRET = "controller-only secret 5f3a9c"

NODE = """\
apiVersion: fazai.dev/v1alpha1
kind: Node
metadata: {name: web-1}
spec: {platform: linux, address: 10.0.0.1}
"""

FILE = """\
apiVersion: fazai.dev/v1alpha1
kind: File
metadata: {name: motd}
spec:
  target: {node: web-1}
  path: /etc/motd
  source: files/motd
"""


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A controller file that no source may read."""
    secret = tmp_path / "controller" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text(SECRET + "\n")
    return secret


def _source(root: Path) -> Path:
    (root / "files").mkdir(parents=True)
    (root / "nodes.yaml").write_text(NODE)
    (root / "file.yaml").write_text(FILE)
    return root


def _errors(location: str, ref: str | None = None) -> list[str]:
    with pytest.raises(InvalidInputError) as caught:
        loader.load(open_source(location, ref, cache_dir=Path("/nonexistent")))
    return [str(d) for d in caught.value.diagnostics if d.is_error]


@pytest.mark.parametrize("how", ["absolute", "relative"])
def test_file_source_linked_outside_the_directory_is_refused(
    tmp_path: Path, outside: Path, how: str
) -> None:
    root = _source(tmp_path / "repo")
    target = str(outside) if how == "absolute" else os.path.relpath(outside, root / "files")
    (root / "files" / "motd").symlink_to(target)
    assert _errors(str(root)) == [
        f"file.yaml:7:3: File/motd: spec.source: source file 'files/motd' is a symbolic "
        f"link to {target!r}, outside the source; a source must be a file of the repository"
    ]


def test_file_source_through_a_linked_folder_outside_is_refused(
    tmp_path: Path, outside: Path
) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "nodes.yaml").write_text(NODE)
    (root / "file.yaml").write_text(FILE.replace("files/motd", "files/secret.txt"))
    (root / "files").symlink_to(outside.parent)
    errors = _errors(str(root))
    assert len(errors) == 1
    assert "source file 'files/secret.txt' is a symbolic link to" in errors[0]
    assert errors[0].startswith("file.yaml:7:3: File/motd: spec.source:")


def test_link_into_the_git_folder_is_refused(tmp_path: Path) -> None:
    root = _source(tmp_path / "repo")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[remote]\nurl = https://token@example\n")
    (root / "files" / "motd").symlink_to("../.git/config")
    (errors,) = _errors(str(root))
    assert "into a hidden folder of the source" in errors


def test_link_inside_the_source_is_followed(tmp_path: Path) -> None:
    root = _source(tmp_path / "repo")
    (root / "files" / "real-motd").write_text("welcome\n")
    (root / "files" / "motd").symlink_to("real-motd")
    state = loader.load(open_source(str(root)))
    assert state.source.read("files/motd") == b"welcome\n"


def test_linked_documents_and_folders_outside_are_refused(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "nodes.yaml").write_text(NODE)
    elsewhere = outside.parent / "more.yaml"
    elsewhere.write_text(NODE.replace("web-1", "web-2"))
    (root / "more.yaml").symlink_to(elsewhere)
    (root / "linux").symlink_to(outside.parent)
    assert _errors(str(root)) == [
        f"linux/: is a symbolic link to {str(outside.parent)!r}, outside the source; "
        "FazAI reads only files of the source",
        f"more.yaml: is a symbolic link to {str(elsewhere)!r}, outside the source; "
        "FazAI reads only files of the source",
    ]


def test_plan_never_shows_what_a_link_outside_leads_to(tmp_path: Path, outside: Path) -> None:
    root = _source(tmp_path / "repo")
    (root / "files" / "motd").symlink_to(outside)
    result = subprocess.run(
        [sys.executable, "-c", "from controller.cli import run; run()", "plan", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "outside the source" in result.stderr
    assert SECRET not in result.stdout + result.stderr


def _commit_link(root: Path, link: str, target: str) -> git.Repo:
    """A repository whose commit holds ``link`` as a symbolic link blob to ``target``."""
    _source(root)
    repo = git.Repo.init(root, initial_branch="main")
    (root / link).symlink_to(target)
    repo.index.add(["nodes.yaml", "file.yaml", link])
    repo.index.commit("link", author=AUTHOR, committer=AUTHOR)
    blob = repo.head.commit.tree / link
    assert blob.mode == git.Blob.link_mode
    return repo


@pytest.mark.parametrize("how", ["absolute", "relative"])
def test_git_link_blob_outside_is_refused_and_never_followed(
    tmp_path: Path, outside: Path, how: str
) -> None:
    root = tmp_path / "repo"
    target = str(outside) if how == "absolute" else os.path.relpath(outside, root / "files")
    _commit_link(root, "files/motd", target)
    assert _errors(str(root), "main") == [
        f"file.yaml:7:3: File/motd: spec.source: source file 'files/motd' is a symbolic "
        f"link to {target!r}, outside the source; a source must be a file of the repository"
    ]


def test_git_link_blob_inside_is_followed_in_the_tree(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    repo = _commit_link(root, "files/motd", "real-motd")
    (root / "files" / "real-motd").write_text("committed\n")
    repo.index.add(["files/real-motd"])
    repo.index.commit("target", author=AUTHOR, committer=AUTHOR)
    # The working copy differs: only the committed blob may be read.
    (root / "files" / "real-motd").write_text("uncommitted\n")
    state = loader.load(open_source(str(root), "main", cache_dir=Path("/nonexistent")))
    assert state.source.read("files/motd") == b"committed\n"


def test_a_crafted_huge_git_link_blob_is_refused_unread(tmp_path: Path) -> None:
    """No file system makes a 1 MB link target, but a pushed commit can hold one: it must
    not be read whole, nor quoted in the error."""
    root = tmp_path / "repo"
    _source(root)
    repo = git.Repo.init(root, initial_branch="main")
    (root / "target").write_text("a/" * 500_000)
    sha = repo.git.hash_object("-w", "target")
    repo.git.update_index("--add", "--cacheinfo", f"120000,{sha},files/motd")
    repo.index.add(["nodes.yaml", "file.yaml"])
    repo.index.commit("crafted", author=AUTHOR, committer=AUTHOR)
    (error,) = _errors(str(root), "main")
    assert "longer than 4096 bytes" in error and len(error) < 300
