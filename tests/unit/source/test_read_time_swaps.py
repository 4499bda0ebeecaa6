"""A directory source is read lazily (apply reads File.source again after the prompt):
whatever is swapped in after listing, a read never leaves the source. Real folders,
real links, a real FIFO."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from controller.errors import SourceError
from controller.source.open import open_source
from controller.source.tree import SourceTree

SECRET = "controller-only secret 77c1"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A controller folder laid out like the source, so a swap finds the same names."""
    ctl = tmp_path / "ctl"
    (ctl / "files" / "sub").mkdir(parents=True)
    for rel in ("files/sub/secret", "files/motd", "secret"):
        (ctl / rel).write_text(SECRET + "\n")
    return ctl


@pytest.fixture
def listed(tmp_path: Path) -> tuple[Path, SourceTree]:
    root = tmp_path / "repo"
    (root / "files" / "sub").mkdir(parents=True)
    (root / "files" / "sub" / "secret").write_text("harmless\n")
    (root / "files" / "motd").write_text("harmless\n")
    (root / "files" / "real").write_text("real\n")
    (root / "files" / "alias").symlink_to("real")
    return root, open_source(str(root))


def _refused(tree: SourceTree, path: str) -> str:
    with pytest.raises(SourceError) as caught:
        tree.read(path)
    assert SECRET not in str(caught.value)
    return str(caught.value)


def test_a_folder_swapped_for_a_link_after_listing_is_refused(
    listed: tuple[Path, SourceTree], outside: Path
) -> None:
    root, tree = listed
    shutil.rmtree(root / "files" / "sub")
    (root / "files" / "sub").symlink_to(outside / "files" / "sub")
    assert "files/sub/secret" in _refused(tree, "files/sub/secret")


def test_the_root_swapped_for_a_link_after_listing_is_refused(
    listed: tuple[Path, SourceTree], outside: Path
) -> None:
    root, tree = listed
    root.rename(root.with_name("moved"))
    root.symlink_to(outside)
    assert "outside the source" in _refused(tree, "files/motd")


def test_the_root_swapped_for_another_folder_after_listing_is_refused(
    listed: tuple[Path, SourceTree], outside: Path
) -> None:
    root, tree = listed
    root.rename(root.with_name("moved"))
    outside.rename(root)
    assert "source folder was replaced" in _refused(tree, "files/motd")


def test_a_file_swapped_for_a_link_outside_after_listing_is_refused(
    listed: tuple[Path, SourceTree], outside: Path
) -> None:
    root, tree = listed
    os.remove(root / "files" / "motd")
    (root / "files" / "motd").symlink_to(outside / "secret")
    assert "outside the source" in _refused(tree, "files/motd")


def test_an_inside_link_repointed_outside_after_listing_is_refused(
    listed: tuple[Path, SourceTree], outside: Path
) -> None:
    root, tree = listed
    assert tree.read("files/alias") == b"real\n"  # followed while it stays inside
    os.remove(root / "files" / "alias")
    (root / "files" / "alias").symlink_to(outside / "secret")
    _refused(tree, "files/alias")


def test_a_fifo_swapped_in_is_refused_at_once(listed: tuple[Path, SourceTree]) -> None:
    root, tree = listed
    os.remove(root / "files" / "motd")
    os.mkfifo(root / "files" / "motd")
    outcome: list[BaseException | bytes] = []

    def read() -> None:
        try:
            outcome.append(tree.read("files/motd"))
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=5)
    if reader.is_alive():  # unblock the hung open, then fail
        os.close(os.open(root / "files" / "motd", os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("reading a FIFO swapped in hung")
    (result,) = outcome
    assert isinstance(result, SourceError) and "regular file" in str(result)


def test_a_file_grown_after_listing_is_refused_not_read_whole(
    listed: tuple[Path, SourceTree],
) -> None:
    root, tree = listed
    (root / "files" / "motd").write_bytes(b"x" * 1_000_000)
    assert "grew since it was listed" in _refused(tree, "files/motd")
