"""Desired state from a directory on disk (a working copy, or any folder)."""

from __future__ import annotations

import os
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
    files = {}
    sizes = {}
    try:
        for folder, dirs, names in os.walk(root):
            # Hidden folders (.git, .github, ...) never hold desired state.
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in names:
                if name.startswith("."):
                    continue
                path = Path(folder, name)
                if not path.is_file():
                    continue
                rel = path.relative_to(root).as_posix()
                files[rel] = path.read_bytes
                sizes[rel] = path.stat().st_size
    except OSError as exc:
        raise SourceError(f"{root}: cannot read: {exc.strerror or exc}") from exc
    return SourceTree(str(root), None, files, sizes)
