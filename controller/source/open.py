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
    # GitPython (0.03-0.05 s to import) only when a repository may be read: a folder in
    # no repository skips its cost.
    if ref is not None or "://" in location or location.startswith("git@"):
        from controller.source import git

        if ref is not None or git.is_git_url(location):
            return git.read_git(location, ref or "HEAD", cache_dir or default_cache_dir(), subdir)
    root = Path(location) / subdir if subdir else Path(location)
    tree = directory.read_directory(root)
    if not root.is_dir() or not _maybe_in_repository(root):
        return tree
    from controller.source import git

    revision = git.head_revision(root, tree.paths())
    if revision is None:
        return tree
    # A working copy: HEAD, marked +dirty when the files read are not HEAD's.
    return tree.at_revision(revision)


def _maybe_in_repository(folder: Path) -> bool:
    """False only when no repository can hold ``folder``: neither it nor a folder above
    has a ``.git`` (directory, gitfile or link) or a ``HEAD`` (a bare repository or a
    git directory itself), which is all GitPython's search looks for."""
    here = Path(os.path.abspath(folder))  # as GitPython walks it: normalized, not resolved
    for place in (here, *here.parents):
        if os.path.lexists(place / ".git") or os.path.lexists(place / "HEAD"):
            return True
    return False


def reopen(source: str, revision: str | None, cache_dir: Path | None = None) -> SourceTree:
    """The source a run recorded (its description and revision), read again: a git source
    at the run's very commit (not its branch, which has moved on); a folder at its path,
    or, when the run recorded it at a clean commit of the repository holding it, at that
    commit (the working copy may have moved on too).

    SourceError when it cannot be found from here (a relative path recorded by an older
    FazAI, a source named by ``serve``'s configuration, a URL whose credentials were
    masked, a commit the repository no longer has): the caller then asks for PATH."""
    from controller.source import git
    from controller.source import revision as revisions

    commit = revisions.commit_of(revision) if revision else None
    recorded_git = git.is_description(source)
    if not recorded_git and Path(source).is_absolute() and Path(source).exists():
        # A folder (or, recorded by an older FazAI, perhaps a git source; a folder by
        # that name is read as today).
        if commit is not None and Path(source).is_dir():
            at_commit = _folder_at_commit(Path(source), commit, cache_dir)
            if at_commit is not None:
                return at_commit
        return open_source(source)
    parsed = git.parse_description(source)
    if parsed is not None and commit is not None:
        location, _, subdir = parsed
        if "***@" not in location and (git.is_git_url(location) or Path(location).is_dir()):
            return git.read_git(location, commit, cache_dir or default_cache_dir(), subdir)
    raise SourceError(f"the run's source {source!r} cannot be read from here")


def _folder_at_commit(folder: Path, commit: str, cache_dir: Path | None) -> SourceTree | None:
    """``folder`` read at ``commit`` of the repository holding it; None when it is in no
    repository. SourceError when the repository no longer has that commit: reading the
    working copy instead would apply other documents than the run's."""
    import git as gitpython

    from controller.source import git

    try:
        repo = gitpython.Repo(folder, search_parent_directories=True)
        top = Path(str(repo.working_tree_dir)).resolve()
        subdir = folder.resolve().relative_to(top).as_posix()
    except (gitpython.InvalidGitRepositoryError, gitpython.NoSuchPathError, ValueError):
        return None
    try:
        repo.commit(commit)
    except (ValueError, gitpython.BadName) as exc:
        raise SourceError(
            f"the run's commit {commit[:12]} is not in the repository holding {folder}"
        ) from exc
    subdir = "" if subdir == "." else subdir
    return git.read_git(str(top), commit, cache_dir or default_cache_dir(), subdir)
