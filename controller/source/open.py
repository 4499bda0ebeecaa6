"""Pick the source reader for what the user named: a directory, or a repository at a ref."""

from __future__ import annotations

import os
from pathlib import Path

from controller.source import directory
from controller.source.tree import SourceTree


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "fazai" / "git"


def open_source(
    location: str, ref: str | None = None, subdir: str = "", cache_dir: Path | None = None
) -> SourceTree:
    """A directory as it is on disk, or, with ``ref`` (or a URL), a git commit's tree."""
    # GitPython is imported only when a repository is read: plain folders skip its cost.
    from controller.source import git

    if ref is not None or git.is_git_url(location):
        return git.read_git(location, ref or "HEAD", cache_dir or default_cache_dir(), subdir)
    root = Path(location) / subdir if subdir else Path(location)
    tree = directory.read_directory(root)
    revision = git.head_revision(root) if root.is_dir() else None
    if revision is None:
        return tree
    # A working copy: HEAD, marked +dirty when the files read are not HEAD's.
    return tree.at_revision(revision)
