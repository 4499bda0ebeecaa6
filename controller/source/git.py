"""Desired state from a git repository at a ref, read from the object database.

A local repository is read in place; a URL is mirrored into a cache folder first (one
bare clone per URL, fetched on each use, with a timeout). Nothing is checked out: the
tree of the resolved commit is read blob by blob, and the commit SHA is recorded.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import git

from controller.errors import SourceError
from controller.source import revision as revisions
from controller.source.tree import SourceTree, resolve_relative

GIT_TIMEOUT_S = 120


def is_git_url(location: str) -> bool:
    if Path(location).exists():
        return False
    return "://" in location or location.startswith("git@")


_SECRET_QUERY = re.compile(r"([?&][^=&#]*(?:token|secret|pass|key|auth|sig)[^=&#]*=)[^&#]*", re.I)


def redact(location: str) -> str:
    """A URL with any credentials in it masked, for messages and records: the whole
    user-info (up to the last ``@`` before the host: a password may hold an ``@``) and
    query values named like a secret (``?private_token=``)."""
    masked = re.sub(r"(://)[^/?#]*@", r"\1***@", location)
    return _SECRET_QUERY.sub(r"\1***", masked)


def open_repository(location: str, cache_dir: Path, timeout: float = GIT_TIMEOUT_S) -> git.Repo:
    """The repository at ``location``: a local one in place, a URL's mirror fetched (or
    cloned) first, each git command killed after ``timeout`` seconds."""
    shown = redact(location)
    try:
        if not is_git_url(location):
            return git.Repo(location, search_parent_directories=False)
        mirror = cache_dir / hashlib.sha256(location.encode()).hexdigest()[:16]
        if mirror.exists():
            repo = git.Repo(mirror)
            repo.git.fetch(
                "--prune",
                "origin",
                "+refs/heads/*:refs/heads/*",
                "+refs/tags/*:refs/tags/*",
                kill_after_timeout=timeout,
            )
            return repo
        mirror.parent.mkdir(parents=True, exist_ok=True)
        return git.Repo.clone_from(location, mirror, mirror=True, kill_after_timeout=timeout)
    except git.NoSuchPathError as exc:
        raise SourceError(f"{shown}: no such repository") from exc
    except git.InvalidGitRepositoryError as exc:
        raise SourceError(f"{shown}: not a git repository") from exc
    except git.GitCommandError as exc:
        raise git_failure(f"{shown}: git failed: {redact(_stderr(exc))}") from exc


def read_git(location: str, ref: str, cache_dir: Path, subdir: str = "") -> SourceTree:
    return tree_at(open_repository(location, cache_dir), location, ref, subdir)


def tree_at(repo: git.Repo, location: str, ref: str, subdir: str = "") -> SourceTree:
    """The files of ``subdir`` at ``ref`` of an opened repository, read lazily from its
    object database."""
    try:
        commit = repo.commit(ref)
        # A full 40-hex SHA is taken on trust and only looked up when read: read the tree
        # here, so a SHA that is not in the repository is an unknown ref, not a ValueError.
        tree = commit.tree
    except (git.BadName, ValueError, git.GitCommandError) as exc:
        raise SourceError(f"{redact(location)}: unknown ref {ref!r}") from exc
    if subdir:
        try:
            tree = tree / subdir.strip("/")
        except KeyError as exc:
            raise SourceError(f"{redact(location)}@{ref}: no folder {subdir!r}") from exc
    files: dict[str, Callable[[], bytes]] = {}
    sizes: dict[str, int] = {}
    links: dict[str, str] = {}
    oversized: dict[str, str] = {}
    # GitPython types paths as str | PathLike; they are always str for tree entries.
    prefix = len(str(tree.path)) + 1 if tree.path else 0
    for item in tree.traverse():
        if not isinstance(item, git.Blob):
            continue
        rel = str(item.path)[prefix:]
        if any(part.startswith(".") for part in rel.split("/")):
            continue
        if item.mode == git.Blob.link_mode:
            if item.size > MAX_LINK_BYTES:
                # No system makes such a link: the blob is crafted. Never read it whole,
                # nor quote it in the error.
                oversized[rel] = (
                    f"is a symbolic link whose target is longer than {MAX_LINK_BYTES} bytes"
                )
                continue
            links[rel] = item.data_stream.read().decode("utf-8", "replace")
            continue
        files[rel] = _reader(item)
        sizes[rel] = item.size
    refused = {**_follow_links(links, files, sizes), **oversized}
    return SourceTree(describe(location, ref, subdir), commit.hexsha, files, sizes, refused)


# go-getter's forced-getter prefix: it says a recorded source is a git one, so that a
# folder that happens to be named like ``/srv/repo@main`` is never read in its place.
PREFIX = "git::"


def describe(location: str, ref: str, subdir: str = "") -> str:
    """``git::LOCATION[//SUBDIR]@REF``, the way runs record a git source (go-getter's
    ``git::`` and ``//`` for the folder): a local path absolute and a URL's credentials
    masked, so that :func:`parse_description` can find the repository again."""
    shown = redact(location) if is_git_url(location) else os.path.abspath(location)
    folder = subdir.strip("/")
    return f"{PREFIX}{shown}//{folder}@{ref}" if folder else f"{PREFIX}{shown}@{ref}"


def is_description(source: str) -> bool:
    """Whether a recorded source says it is a git one (:func:`describe`; older FazAI
    recorded git sources without the prefix)."""
    return source.startswith(PREFIX)


def parse_description(description: str) -> tuple[str, str, str] | None:
    """(location, ref, subdir) of a :func:`describe` text, with or without its ``git::``
    prefix; None when it is not one."""
    location, at, ref = description.removeprefix(PREFIX).rpartition("@")
    if not at or not location or not ref:
        return None
    scheme = location.find("://")
    start = scheme + 3 if scheme >= 0 else 0
    cut = location.find("//", start)
    if cut < 0:
        return location, ref, ""
    return location[:cut], ref, location[cut + 2 :]


MAX_LINK_HOPS = 40  # as the kernel's ELOOP limit
MAX_LINK_BYTES = 4096  # PATH_MAX: the longest target a link on disk can have


def _follow_links(
    links: dict[str, str], files: dict[str, Callable[[], bytes]], sizes: dict[str, int]
) -> dict[str, str]:
    """Give each committed symbolic link that leads to a file of the tree that file's
    content, as a checkout would; refuse the others (outside the tree, into a hidden
    folder, or to nothing), with why. Nothing outside the object database is ever read."""
    refused: dict[str, str] = {}
    for link, target in links.items():
        where: str | None = link
        for _ in range(MAX_LINK_HOPS):
            assert where is not None
            step = links.get(where)
            if step is None:
                break
            where = resolve_relative(where, step)
            if where is None:
                break
        if where is None:
            refused[link] = f"is a symbolic link to {target!r}, outside the source"
        elif where in links:
            refused[link] = f"is a symbolic link to {target!r}, in a loop of links"
        elif where in files:
            files[link], sizes[link] = files[where], sizes[where]
        elif any(part.startswith(".") for part in where.split("/")):
            refused[link] = f"is a symbolic link to {target!r}, into a hidden folder of the source"
        else:
            refused[link] = f"is a symbolic link to {target!r}, which is not a file of the source"
    return refused


def head_revision(path: Path, read: Iterable[str] = ()) -> str | None:
    """The HEAD commit of the repository holding ``path``, marked ``+dirty`` when the
    files read are not that commit's: a file under ``path`` modified, staged or untracked;
    a file of ``read`` (paths relative to ``path``) that HEAD does not hold as a blob (an
    ignored file, a file inside a submodule, whose contents HEAD does not record); or a
    file git was told not to look at (assume-unchanged, skip-worktree), whose edits
    ``git status`` hides. None outside a repository (recorded, never required)."""
    try:
        repo = git.Repo(path, search_parent_directories=True)
        sha = str(repo.head.commit.hexsha)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError, ValueError):
        return None
    try:
        # Only what is under the source counts: an edited README beside it changes nothing.
        changed = repo.is_dirty(
            index=True, working_tree=True, untracked_files=True, path=str(path.resolve())
        ) or _unrecorded(repo, path, read)
    except (git.GitCommandError, ValueError, OSError):
        changed = True  # git cannot tell (a damaged index): never vouch for the commit
    return revisions.dirty(sha) if changed else sha


def _unrecorded(repo: git.Repo, path: Path, read: Iterable[str]) -> bool:
    """Whether a file read is not HEAD's, in ways ``git status`` does not report."""
    top = Path(str(repo.working_tree_dir)).resolve()
    base = path.resolve().relative_to(top).as_posix()  # ValueError: not in the work tree
    prefix = "" if base == "." else base + "/"
    # Whole listings filtered here, not pathspecs: a folder named '*' is not a glob.
    listed = repo.git.ls_files("-v", "-z", kill_after_timeout=GIT_TIMEOUT_S)
    for entry in str(listed).split("\0"):
        tag, _, name = entry.partition(" ")
        if name.startswith(prefix) and (tag.islower() or tag == "S"):
            return True  # assume-unchanged (lower case) or skip-worktree
    blobs = set()
    tree = repo.git.ls_tree("-r", "-z", "--full-tree", "HEAD", kill_after_timeout=GIT_TIMEOUT_S)
    for entry in str(tree).split("\0"):
        info, _, name = entry.partition("\t")
        if info.split(" ")[1:2] == ["blob"] and name.startswith(prefix):
            blobs.add(name)
    return any(prefix + rel not in blobs for rel in read)


def _reader(blob: git.Blob) -> Callable[[], bytes]:
    def read() -> bytes:
        data: bytes = blob.data_stream.read()
        return data

    return read


# What git prints when trying again cannot help before someone changes a credential, a
# known_hosts entry or a CA bundle (kept lower-case; matched anywhere in stderr).
_PERMANENT = (
    "authentication failed",
    "permission denied",
    "host key verification failed",
    "remote host identification has changed",
    "could not read username",
    "could not read password",
    "terminal prompts disabled",
    "ssl certificate problem",
    "certificate verify failed",
    "server certificate verification failed",
    "the requested url returned error: 401",
    "the requested url returned error: 403",
)


def git_failure(message: str, stderr: str | None = None) -> SourceError:
    """A SourceError for a failed git command, permanent when git's ``stderr`` (default:
    ``message``, which quotes it) says the remote refused our credentials or could not be
    verified; a network failure, a timeout or a remote gone for now stays temporary."""
    error = SourceError(message)
    lowered = (message if stderr is None else stderr).lower()
    if any(marker in lowered for marker in _PERMANENT):
        error.retryable = False
    return error


def _stderr(exc: git.GitCommandError) -> str:
    text = str(exc.stderr or exc).strip()
    return text.removeprefix("stderr:").strip(" '\n")
