"""One configured git source: its branch's head, the tree at a commit, its signatures.

A URL is mirrored into the cache (``controller.source.git``) and fetched when a reconcile
starts; a repository path on this machine is read in place. Every git command has the
source's timeout. The methods block: the loop runs them in a thread.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import git

from controller.errors import SourceError
from controller.reconcile.config import SourceConfig
from controller.source import git as gitsource
from controller.source.signatures import SignaturePolicy, Verdict
from controller.source.tree import SourceTree

_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # Never wait for a password nobody will type.
    env["GIT_TERMINAL_PROMPT"] = "0"
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    return env


class GitSource:
    def __init__(
        self, config: SourceConfig, cache_dir: Path, signatures: SignaturePolicy | None = None
    ) -> None:
        self.config = config
        self.cache_dir = cache_dir
        self.signatures = signatures
        self.shown = gitsource.redact(config.url)
        self._repo: git.Repo | None = None

    @property
    def ref(self) -> str:
        return f"refs/heads/{self.config.branch}"

    def remote_head(self) -> str | None:
        """The branch's head as the remote has it now (``git ls-remote``: no objects are
        transferred); None when the branch does not exist there."""
        try:
            result = subprocess.run(
                ["git", "ls-remote", "--", self.config.url, self.ref],
                capture_output=True,
                text=True,
                timeout=self.config.timeout,
                env=_env(),
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise SourceError(
                f"{self.shown}: git ls-remote timed out after {self.config.timeout:g} s"
            ) from exc
        except OSError as exc:
            raise SourceError(f"{self.shown}: cannot run git: {exc}") from exc
        if result.returncode != 0:
            lines = result.stderr.strip().splitlines()
            detail = gitsource.redact(lines[-1] if lines else "failed")
            # The last line is the summary; the cause (a refused key) may be above it.
            raise gitsource.git_failure(f"{self.shown}: git ls-remote: {detail}", result.stderr)
        for line in result.stdout.splitlines():
            sha, _, name = line.partition("\t")
            if name == self.ref and _SHA.match(sha):
                return sha
        return None

    def fetch(self) -> str:
        """Bring the branch up to date (fetch a URL's mirror) and return its head commit."""
        repo = gitsource.open_repository(self.config.url, self.cache_dir, self.config.timeout)
        self._repo = repo
        try:
            return str(repo.commit(self.ref).hexsha)
        except (git.BadName, ValueError, git.GitCommandError) as exc:
            # Not before the branch is pushed: the poller sees it appear and asks at once.
            missing = SourceError(f"{self.shown}: no branch {self.config.branch!r}")
            missing.retryable = False
            raise missing from exc

    def tree(self, revision: str) -> SourceTree:
        repo = self._repo or gitsource.open_repository(
            self.config.url, self.cache_dir, self.config.timeout
        )
        self._repo = repo
        return gitsource.tree_at(repo, self.config.url, revision, self.config.path)

    def people(self, revision: str) -> tuple[str, str]:
        """The author and the committer of commit ``revision``, each "Name <email>"."""
        repo = self._repo or gitsource.open_repository(
            self.config.url, self.cache_dir, self.config.timeout
        )
        try:
            commit = repo.commit(revision)
            author, committer = commit.author, commit.committer
        except (git.BadName, ValueError, git.GitCommandError) as exc:
            raise SourceError(f"{self.shown}: no commit {revision[:12]}") from exc
        return f"{author.name} <{author.email}>", f"{committer.name} <{committer.email}>"

    def verify(self, revision: str) -> Verdict | None:
        """None when the source does not check signatures."""
        if self.signatures is None:
            return None
        repo = self._repo or gitsource.open_repository(
            self.config.url, self.cache_dir, self.config.timeout
        )
        return self.signatures.verify(str(repo.git_dir), revision)

    def watched_dirs(self) -> list[Path]:
        """The git directories of the watched working copy, whose HEAD and refs change
        when a commit is made (a linked worktree has two)."""
        if self.config.watch is None:
            return []
        try:
            repo = git.Repo(self.config.watch)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
            raise SourceError(f"{self.config.watch}: not a git working copy") from exc
        dirs = {Path(repo.git_dir).resolve(), Path(repo.common_dir).resolve()}
        return sorted(dirs)
