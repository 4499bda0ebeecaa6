"""Git sources, with real repositories made in tmp_path."""

from __future__ import annotations

from pathlib import Path

import git
import pytest

from controller.errors import SourceError
from controller.model import loader
from controller.source.open import open_source

AUTHOR = git.Actor("Test", "test@example.invalid")

NODE = """\
apiVersion: fazai.dev/v1alpha1
kind: Node
metadata: {name: web-1}
spec: {platform: linux, address: 10.0.0.1}
"""


def _package(state: str) -> str:
    return (
        "apiVersion: fazai.dev/v1alpha1\nkind: Package\nmetadata: {name: curl}\n"
        f"spec: {{target: {{node: web-1}}, state: {state}}}\n"
    )


def _commit(repo: git.Repo, files: dict[str, str], message: str) -> git.Commit:
    root = Path(str(repo.working_tree_dir))
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    repo.index.add(list(files))
    return repo.index.commit(message, author=AUTHOR, committer=AUTHOR)


class History:
    """A repository: v1 (curl present, tagged v1, branch old) then v2 on main (curl absent)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.repo = git.Repo.init(root, initial_branch="main")
        self.v1 = _commit(
            self.repo, {"nodes.yaml": NODE, "linux/pkg.yaml": _package("present")}, "v1"
        )
        self.repo.create_tag("v1", ref=self.v1)
        self.repo.create_head("old", self.v1)
        self.v2 = _commit(self.repo, {"linux/pkg.yaml": _package("absent")}, "v2")


@pytest.fixture
def history(tmp_path: Path) -> History:
    return History(tmp_path / "repo")


def _curl_state(location: str, ref: str | None, cache: Path) -> tuple[str | None, str]:
    state = loader.load(open_source(location, ref, cache_dir=cache))
    (pkg,) = state.resources
    return state.revision, str(pkg.spec["state"])


@pytest.mark.parametrize(
    ("ref", "version"),
    [("main", "v2"), ("HEAD", "v2"), ("old", "v1"), ("v1", "v1"), ("refs/tags/v1", "v1")],
)
def test_load_at_branch_and_tag(history: History, tmp_path: Path, ref: str, version: str) -> None:
    commit = getattr(history, version)
    revision, state = _curl_state(str(history.root), ref, tmp_path / "cache")
    assert revision == commit.hexsha
    assert state == ("present" if version == "v1" else "absent")


@pytest.mark.parametrize("length", [40, 12])
def test_load_at_commit_sha(history: History, tmp_path: Path, length: int) -> None:
    revision, state = _curl_state(str(history.root), history.v1.hexsha[:length], tmp_path / "c")
    assert revision == history.v1.hexsha
    # The file changed in v2 is not seen at v1.
    assert state == "present"


def test_file_added_later_is_not_seen_at_older_ref(history: History, tmp_path: Path) -> None:
    _commit(history.repo, {"linux/extra.yaml": NODE.replace("web-1", "web-2")}, "v3")
    old = open_source(str(history.root), "v1", cache_dir=tmp_path)
    new = open_source(str(history.root), "main", cache_dir=tmp_path)
    assert "linux/extra.yaml" not in old.document_paths()
    assert "linux/extra.yaml" in new.document_paths()


def test_git_source_ignores_uncommitted_changes(history: History, tmp_path: Path) -> None:
    (history.root / "linux" / "pkg.yaml").write_text(_package("gone"))
    (history.root / "untracked.yaml").write_text("not: committed\n")
    revision, state = _curl_state(str(history.root), "main", tmp_path)
    assert (revision, state) == (history.v2.hexsha, "absent")


def test_description_names_location_and_ref(history: History, tmp_path: Path) -> None:
    tree = open_source(str(history.root), "v1", cache_dir=tmp_path)
    # 'git::' says it is a git source: a folder named '<root>@v1' is never taken for it.
    assert tree.description == f"git::{history.root}@v1"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:p@ss@git.example/r.git", "https://***@git.example/r.git"),
        ("https://tok@git.example/a@b.git", "https://***@git.example/a@b.git"),
        (
            "https://git.example/r.git?private_token=s3cr3t&x=1",
            "https://git.example/r.git?private_token=***&x=1",
        ),
        (
            "https://git.example/r.git?access_token=s3cr3t",
            "https://git.example/r.git?access_token=***",
        ),
        ("https://git.example/r.git", "https://git.example/r.git"),
    ],
)
def test_redact_masks_all_of_the_credentials(url: str, shown: str) -> None:
    from controller.source.git import redact

    assert redact(url) == shown


@pytest.mark.parametrize("ref", ["nope", "v9", "0" * 40, "main~5"])
def test_unknown_ref_is_a_clear_source_error(history: History, tmp_path: Path, ref: str) -> None:
    with pytest.raises(SourceError) as info:
        open_source(str(history.root), ref, cache_dir=tmp_path)
    assert str(info.value) == f"{history.root}: unknown ref {ref!r}"


def test_not_a_repository_with_ref(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(SourceError, match="not a git repository"):
        open_source(str(tmp_path / "plain"), "main", cache_dir=tmp_path / "cache")


def test_missing_repository_with_ref(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such repository"):
        open_source(str(tmp_path / "absent"), "main", cache_dir=tmp_path / "cache")


def test_subdir_of_a_commit(history: History, tmp_path: Path) -> None:
    tree = open_source(str(history.root), "main", subdir="linux", cache_dir=tmp_path)
    assert list(tree.paths()) == ["pkg.yaml"]
    with pytest.raises(SourceError, match="no folder 'windows'"):
        open_source(str(history.root), "main", subdir="windows", cache_dir=tmp_path)


def test_hidden_files_are_skipped_and_links_read_as_a_checkout(
    history: History, tmp_path: Path
) -> None:
    # A link inside the tree reads as its target, as in the working copy (the directory
    # source), so both plan the same commit alike; links leading out: test_symlinks.py.
    (history.root / "link.yaml").symlink_to("nodes.yaml")
    _commit(history.repo, {".github/ci.yaml": "x: 1\n", ".hidden.yaml": "x: 1\n"}, "noise")
    history.repo.index.add(["link.yaml"])
    history.repo.index.commit("link", author=AUTHOR, committer=AUTHOR)
    tree = open_source(str(history.root), "main", cache_dir=tmp_path)
    assert tree.document_paths() == ["link.yaml", "linux/pkg.yaml", "nodes.yaml"]
    assert tree.read("link.yaml") == tree.read("nodes.yaml")


def test_bare_remote_is_mirrored_and_refetched(history: History, tmp_path: Path) -> None:
    bare = tmp_path / "remote.git"
    git.Repo.clone_from(str(history.root), bare, bare=True)
    url = bare.as_uri()
    assert url.startswith("file://")
    cache = tmp_path / "cache"

    revision, state = _curl_state(url, "main", cache)
    assert (revision, state) == (history.v2.hexsha, "absent")
    mirrors = list(cache.iterdir())
    assert len(mirrors) == 1
    assert git.Repo(mirrors[0]).bare

    # A new commit pushed to the remote is seen on the next load, through the same mirror.
    v3 = _commit(history.repo, {"linux/pkg.yaml": _package("present")}, "v3")
    history.repo.create_tag("v3", ref=v3)
    history.repo.git.push(str(bare), "main", "v3")
    assert _curl_state(url, "main", cache) == (v3.hexsha, "present")
    assert _curl_state(url, "v3", cache) == (v3.hexsha, "present")
    assert list(cache.iterdir()) == mirrors
    # Without --ref, a URL means its HEAD.
    assert _curl_state(url, None, cache)[0] == v3.hexsha


def test_unknown_ref_on_a_url(history: History, tmp_path: Path) -> None:
    url = history.root.as_uri()
    with pytest.raises(SourceError) as info:
        open_source(url, "nope", cache_dir=tmp_path)
    assert str(info.value) == f"{url}: unknown ref 'nope'"


@pytest.mark.parametrize(
    "url",
    ["http://user:secret@127.0.0.1:9/x.git", "https://tok3n-secret@127.0.0.1:9/x.git"],
)
def test_credentials_never_appear_in_errors(tmp_path: Path, url: str) -> None:
    with pytest.raises(SourceError) as info:
        open_source(url, "main", cache_dir=tmp_path)
    message = str(info.value)
    assert "secret" not in message
    assert "://***@127.0.0.1:9/x.git: git failed: " in message


def test_working_directory_records_head(history: History) -> None:
    assert open_source(str(history.root)).revision == history.v2.hexsha
    (history.root / "linux" / "pkg.yaml").write_text(_package("absent").replace("curl", "wget"))
    state = loader.load(open_source(str(history.root)))
    # Edited: the files are not v2's (test_dirty.py has the cases).
    assert state.revision == history.v2.hexsha + "+dirty"
    # A working copy is read as it is on disk, uncommitted edits included.
    assert [r.name for r in state.resources] == ["wget"]


def test_plain_directory_has_no_revision(tmp_path: Path) -> None:
    (tmp_path / "nodes.yaml").write_text(NODE)
    assert loader.load(open_source(str(tmp_path))).revision is None
