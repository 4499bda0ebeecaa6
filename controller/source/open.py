"""Pick the source reader for what the user named: a directory, or a repository at a ref."""

from __future__ import annotations

import os
from pathlib import Path

from controller.errors import SourceError
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
    revision = git.head_revision(root, tree.paths()) if root.is_dir() else None
    if revision is None:
        return tree
    # A working copy: HEAD, marked +dirty when the files read are not HEAD's.
    return tree.at_revision(revision)


def reopen(source: str, revision: str | None, cache_dir: Path | None = None) -> SourceTree:
    """The source a run recorded (its description and revision), read again: a folder at
    its path, a git source at the run's very commit (not its branch, which has moved on).

    SourceError when it cannot be found from here (a relative path recorded by an older
    FazAI, a source named by ``serve``'s configuration, a URL whose credentials were
    masked): the caller then asks for PATH."""
    from controller.source import git
    from controller.source import revision as revisions

    if Path(source).is_absolute() and Path(source).exists():
        return open_source(source)
    parsed = git.parse_description(source)
    commit = revisions.commit_of(revision) if revision else None
    if parsed is not None and commit is not None:
        location, _, subdir = parsed
        if "***@" not in location and (git.is_git_url(location) or Path(location).is_dir()):
            return git.read_git(location, commit, cache_dir or default_cache_dir(), subdir)
    raise SourceError(f"the run's source {source!r} cannot be read from here")
