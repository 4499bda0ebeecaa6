"""Committing reports to a branch of a local git repository, without touching anything else.

Plumbing only: blobs are written with ``hash-object``, the tree is built in a temporary
index file (``GIT_INDEX_FILE``) starting from the branch's last tree, the commit is made
with ``commit-tree`` and the branch moved with ``update-ref`` *from the parent we built
on*, so a concurrent writer makes this commit fail instead of being overwritten. The
user's working tree, index, HEAD and current branch are never read or written; a branch
that is checked out in any worktree is refused, since moving it would make that
worktree's files look changed. A missing branch is created as an orphan (no parent), so
report history never mixes with the code's.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import git

from controller.reports.errors import ReportError
from controller.source.git import redact

GIT_TIMEOUT_S = 60


@dataclass(frozen=True)
class Committed:
    commit: str | None  # None: the branch already held exactly these files
    pushed: bool = False


def commit_files(
    repository: Path,
    branch: str,
    files: Mapping[str, Path],
    message: str,
    *,
    author: tuple[str, str] = ("FazAI", "fazai@localhost"),
    remote: str | None = None,
    timeout: float = GIT_TIMEOUT_S,
) -> Committed:
    """Add ``files`` ({path in the branch: file on disk}) to ``branch`` of ``repository``
    in one commit; push it to ``remote`` when given. Blocking: call from a thread."""
    ref = f"refs/heads/{branch}"
    try:
        repo = git.Repo(repository)
    except (git.NoSuchPathError, git.InvalidGitRepositoryError) as exc:
        raise ReportError(f"{repository}: not a git repository") from exc
    try:
        with repo:
            repo.git.check_ref_format(ref)
            _refuse_checked_out(repo, ref)
            parent = _resolve(repo, ref)
            commit = _commit(repo, parent, files, message, author, timeout)
            if commit is None:
                return Committed(None)
            # From ``parent`` (or "" = must not exist yet): never overwrite another writer.
            repo.git.update_ref(
                "-m", "fazai: report", ref, commit, parent or "", kill_after_timeout=timeout
            )
            if remote:
                repo.git.push("--porcelain", remote, f"{ref}:{ref}", kill_after_timeout=timeout)
            return Committed(commit, pushed=bool(remote))
    except git.GitCommandError as exc:
        raise ReportError(f"{repository}: git {_verb(exc)} failed: {redact(_stderr(exc))}") from exc


def _refuse_checked_out(repo: git.Repo, ref: str) -> None:
    listing = repo.git.worktree("list", "--porcelain")
    worktree = ""
    for line in listing.splitlines():
        if line.startswith("worktree "):
            worktree = line.removeprefix("worktree ")
        elif line == f"branch {ref}":
            raise ReportError(
                f"{ref.removeprefix('refs/heads/')} is checked out in {worktree}; "
                "reports are committed only to a branch no worktree has checked out"
            )


def _resolve(repo: git.Repo, ref: str) -> str | None:
    try:
        return str(repo.git.rev_parse("--verify", "--quiet", f"{ref}^{{commit}}")) or None
    except git.GitCommandError:
        return None  # no such branch yet


def _commit(
    repo: git.Repo,
    parent: str | None,
    files: Mapping[str, Path],
    message: str,
    author: tuple[str, str],
    timeout: float,
) -> str | None:
    name, email = author
    with tempfile.TemporaryDirectory(prefix="fazai-index-") as temp:
        env = {
            "GIT_INDEX_FILE": str(Path(temp) / "index"),
            "GIT_AUTHOR_NAME": name,
            "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": name,
            "GIT_COMMITTER_EMAIL": email,
        }
        kw = {"env": env, "kill_after_timeout": timeout}
        if parent:
            repo.git.read_tree(parent, **kw)
        else:
            repo.git.read_tree("--empty", **kw)
        for path, source in sorted(files.items()):
            blob = repo.git.hash_object("-w", "--no-filters", "--", str(source), **kw)
            repo.git.update_index("--add", "--cacheinfo", f"100644,{blob},{path}", **kw)
        tree = repo.git.write_tree(**kw)
        if parent and tree == repo.git.rev_parse(f"{parent}^{{tree}}"):
            return None
        parents = ["-p", parent] if parent else []
        return str(repo.git.commit_tree(tree, *parents, "-m", message, **kw))


def _verb(exc: git.GitCommandError) -> str:
    command = exc.command if isinstance(exc.command, list) else str(exc.command).split()
    return str(command[1]) if len(command) > 1 else "command"


def _stderr(exc: git.GitCommandError) -> str:
    text = exc.stderr if isinstance(exc.stderr, str) else ""
    return text.strip().removeprefix("stderr:").strip().strip("'").strip() or str(exc.status)
