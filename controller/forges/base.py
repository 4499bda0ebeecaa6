"""What every forge client offers: one plan comment per pull request, commit statuses,
and the pull requests FazAI opens itself.

A client implements calls against its forge's REST API (list, create and edit the
comments of a pull request; set a commit status; find, open and edit a pull request);
:meth:`ForgeClient.upsert_comment` and :meth:`ForgeClient.propose` are built on them,
the same for all forges.
"""

from __future__ import annotations

import abc
import re
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType

import httpx

from controller.errors import ForgeApiError, ForgeError
from controller.forges import comment
from controller.forges.http import ForgeHttp, ForgeTarget

STATUS_CONTEXT = "fazai/plan"
MAX_DESCRIPTION = 140  # GitHub's limit for a status description; the strictest of the three
_SHA = re.compile(r"^[0-9a-f]{7,64}$")


class CommitState(StrEnum):
    PENDING = "pending"  # the plan is being made
    SUCCESS = "success"  # the plan was made; it may have changes
    FAILURE = "failure"  # the head is wrong: invalid documents, a resource that cannot be planned
    ERROR = "error"  # the plan could not be made: a node unreachable, FazAI failed


@dataclass(frozen=True)
class Comment:
    id: int
    body: str
    url: str | None = None
    author: str | None = None


@dataclass(frozen=True)
class Upserted:
    comment: Comment
    created: bool  # False: an earlier plan comment was updated in place


@dataclass(frozen=True)
class StatusSet:
    sha: str
    state: CommitState
    context: str
    description: str
    target_url: str | None = None


@dataclass(frozen=True)
class PullRequest:
    """An open pull request (GitLab: merge request; ``number`` is its iid)."""

    number: int
    url: str | None
    head: str  # the branch it proposes
    base: str  # the branch it merges into
    title: str = ""
    body: str = ""


@dataclass(frozen=True)
class Proposed:
    pull: PullRequest
    created: bool  # False: the open pull request of that branch was reused (and updated)


class ForgeClient(abc.ABC):
    """One repository (or GitLab project) on one forge."""

    name: str = ""
    max_comment_chars: int = 65_536

    def __init__(
        self, target: ForgeTarget, repo: str, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.repo = self.check_repo(repo)
        self.http = ForgeHttp(target, self.auth_headers(target), transport)

    async def __aenter__(self) -> ForgeClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.http.aclose()

    # -- what each forge implements ------------------------------------------------------

    @classmethod
    @abc.abstractmethod
    def check_repo(cls, repo: str) -> str:
        """``repo`` in this forge's form, or ValueError saying what is expected."""

    @abc.abstractmethod
    def auth_headers(self, target: ForgeTarget) -> dict[str, str]: ...

    @abc.abstractmethod
    def comments(self, pr: int) -> AsyncGenerator[Comment, None]:
        """Every comment of pull request ``pr``, oldest first, all pages."""

    @abc.abstractmethod
    async def create_comment(self, pr: int, body: str) -> Comment: ...

    @abc.abstractmethod
    async def update_comment(self, pr: int, comment_id: int, body: str) -> Comment: ...

    @abc.abstractmethod
    async def post_status(self, status: StatusSet) -> None: ...

    @abc.abstractmethod
    async def find_pull_request(self, head: str, base: str | None = None) -> PullRequest | None:
        """The open pull request from branch ``head`` of this repository (into ``base``,
        when given); None when there is none."""

    @abc.abstractmethod
    async def create_pull_request(self, head: str, base: str, title: str, body: str) -> PullRequest:
        """Open a pull request from ``head`` into ``base`` (both branches of this repository)."""

    @abc.abstractmethod
    async def update_pull_request(self, number: int, title: str, body: str) -> PullRequest: ...

    # -- shared -----------------------------------------------------------------------------

    async def upsert_comment(self, pr: int, body: str, mark: str = comment.MARKER) -> Upserted:
        """Update our plan comment on ``pr`` (found by ``mark`` on its first line), or add
        it. A retryable failure is tried once more from the listing, so a comment whose
        creation did land before the failure is updated, not posted twice."""
        text = comment.with_marker(body, mark)
        if len(text) > self.max_comment_chars:
            raise ForgeError(
                self.name,
                f"the comment is {len(text)} characters; {self.name} takes at most "
                f"{self.max_comment_chars}",
            )
        for attempt in range(2):
            try:
                existing = None
                async with aclosing(self.comments(pr)) as listed:
                    async for found in listed:
                        if comment.is_ours(found.body, mark):
                            existing = found
                            break
                if existing is None:
                    return Upserted(await self.create_comment(pr, text), created=True)
                if existing.body == text:
                    return Upserted(existing, created=False)
                return Upserted(await self.update_comment(pr, existing.id, text), created=False)
            except ForgeError as exc:
                if not exc.retryable or attempt == 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def propose(self, head: str, base: str, title: str, body: str) -> Proposed:
        """The open pull request of ``head`` into ``base``, its title and body made these;
        opened when there is none. A failure that may have opened it anyway (retryable,
        or the forge saying one exists already) is looked up once more, so a branch never
        gets two."""
        if len(body) > self.max_comment_chars:
            raise ForgeError(
                self.name,
                f"the pull request's body is {len(body)} characters; {self.name} takes at "
                f"most {self.max_comment_chars}",
            )
        for attempt in range(2):
            try:
                found = await self.find_pull_request(head, base)
                if found is None:
                    return Proposed(await self.create_pull_request(head, base, title, body), True)
                if (found.title, found.body) == (title, body):
                    return Proposed(found, created=False)
                return Proposed(await self.update_pull_request(found.number, title, body), False)
            except ForgeError as exc:
                exists = isinstance(exc, ForgeApiError) and exc.status in (409, 422)
                if not (exc.retryable or exists) or attempt == 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def set_status(
        self,
        sha: str,
        state: CommitState,
        description: str,
        *,
        context: str = STATUS_CONTEXT,
        target_url: str | None = None,
    ) -> StatusSet:
        if not _SHA.match(sha):
            raise ValueError(f"{sha!r} is not a commit SHA (hex, 7 to 64 digits)")
        short = " ".join(description.split())
        if len(short) > MAX_DESCRIPTION:
            short = short[: MAX_DESCRIPTION - 1] + "…"
        status = StatusSet(sha, state, context, short, target_url)
        await self.post_status(status)
        return status
