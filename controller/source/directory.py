"""Desired state from a directory on disk (a working copy, or any folder).

A symbolic link is followed only when it leads to a file inside the source root (and not
into a hidden folder such as ``.git``): a ``files/x -> /etc/shadow`` or ``-> ../../key``
in a pull request must not put a controller file into a plan or onto a node. Links that
lead elsewhere are recorded as refused, so that whoever names them (a ``File.source``, or
the loader for a document) gets an error saying why, instead of "does not exist".
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from controller.errors import SourceError
from controller.source.tree import SourceTree


def read_directory(root: Path) -> SourceTree:
    if not root.exists():
        raise SourceError(f"{root}: no such file or directory")
    if root.is_file():
        # A single file is a source of one document file, named as given.
        return SourceTree(
            str(root), None, {root.name: root.read_bytes}, {root.name: root.stat().st_size}
        )
    real_root = root.resolve()
    files: dict[str, Callable[[], bytes]] = {}
    sizes: dict[str, int] = {}
    refused: dict[str, str] = {}
    try:
        for folder, dirs, names in os.walk(root):
            # Hidden folders (.git, .github, ...) never hold desired state. os.walk does
            # not descend into linked folders; one that leads outside is named, so that
            # what is expected in it is refused in words.
            kept = []
            for name in sorted(dirs):
                path = Path(folder, name)
                if name.startswith("."):
                    continue
                if path.is_symlink():
                    why = _escapes(path, real_root)
                    if why:
                        refused[path.relative_to(root).as_posix() + "/"] = why
                    continue
                kept.append(name)
            dirs[:] = kept
            for name in names:
                if name.startswith("."):
                    continue
                path = Path(folder, name)
                rel = path.relative_to(root).as_posix()
                if path.is_symlink():
                    why = _escapes(path, real_root)
                    if why:
                        refused[rel] = why
                        continue
                if not path.is_file():
                    continue
                files[rel] = _reader(path, real_root)
                sizes[rel] = path.stat().st_size
    except OSError as exc:
        raise SourceError(f"{root}: cannot read: {exc.strerror or exc}") from exc
    # Absolute: the description is recorded with each run, and `fazai rollback` reads the
    # run's source again from wherever it is started.
    return SourceTree(str(root.absolute()), None, files, sizes, refused)


def _escapes(link: Path, real_root: Path) -> str | None:
    """Why following ``link`` is refused, or None when it stays inside the source."""
    target = os.readlink(link)
    real = link.resolve()
    if real != real_root and real_root not in real.parents:
        return f"is a symbolic link to {target!r}, outside the source"
    if any(part.startswith(".") for part in real.relative_to(real_root).parts):
        return f"is a symbolic link to {target!r}, into a hidden folder of the source"
    return None


def _reader(path: Path, real_root: Path) -> Callable[[], bytes]:
    def read() -> bytes:
        # Checked again when read (files are read lazily, maybe much later): a file
        # replaced by a link in between is refused too.
        why = _escapes(path, real_root) if path.is_symlink() else None
        if why:
            raise SourceError(f"{path}: {why}")
        with open(path.resolve(), "rb", opener=_no_follow) as handle:
            return handle.read()

    return read


def _no_follow(name: str, flags: int) -> int:
    return os.open(name, flags | getattr(os, "O_NOFOLLOW", 0))
