"""GitLab's REST API v4 (gitlab.com, or ``https://HOST/api/v4``).

* comments are merge request notes: ``GET /projects/:id/merge_requests/:iid/notes``
  (``sort=asc&order_by=created_at&per_page=100&page=N``; GitLab's default order is newest
  first; pages in ``X-Next-Page`` and ``Link``), ``POST`` the same path, and
  ``PUT /projects/:id/merge_requests/:iid/notes/:note_id``; system notes ("added 1
  commit") are skipped;
* statuses: ``POST /projects/:id/statuses/:sha`` with ``state`` (pending, running,
  success, failed, canceled, skipped), ``name``, ``description``, ``target_url``. GitLab
  has no ``error`` state: both failure and error are ``failed``. It refuses to move a
  pending status to pending again (400 "Cannot transition status via :enqueue from
  :pending"): that answer to a pending write means the status already is what we asked;
* merge requests (FazAI's pull requests): ``GET /projects/:id/merge_requests?state=opened
  &source_branch=B&target_branch=T``, ``POST /projects/:id/merge_requests`` with
  ``source_branch``, ``target_branch``, ``title`` and ``description`` (201; 409 when the
  branch has an open one already), ``PUT /projects/:id/merge_requests/:iid``;
* auth: ``PRIVATE-TOKEN: TOKEN`` (a project access token with the ``api`` scope; the CI
  job token cannot write notes).

``:id`` is a project's number or its path (``group/sub/project``, sent URL-encoded).
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Mapping
from typing import Any
from urllib.parse import quote

from controller.errors import ForgeApiError
from controller.forges.base import Comment, CommitState, ForgeClient, PullRequest, StatusSet
from controller.forges.http import ForgeTarget

API_URL = "https://gitlab.com/api/v4"
STATES = {
    CommitState.PENDING: "pending",
    CommitState.SUCCESS: "success",
    CommitState.FAILURE: "failed",
    CommitState.ERROR: "failed",
}
_PROJECT = re.compile(r"^([0-9]+|[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+)$")


class GitLabClient(ForgeClient):
    name = "gitlab"
    max_comment_chars = 1_000_000

    @classmethod
    def check_repo(cls, repo: str) -> str:
        if not _PROJECT.match(repo) or any(p in (".", "..") for p in repo.split("/")):
            raise ValueError(f"gitlab: project {repo!r}: give its number or GROUP/PROJECT")
        return repo

    def auth_headers(self, target: ForgeTarget) -> dict[str, str]:
        return {"PRIVATE-TOKEN": target.token.reveal()}

    def _project_path(self) -> str:
        return f"projects/{quote(self.repo, safe='')}"

    async def comments(self, pr: int) -> AsyncGenerator[Comment, None]:
        path = f"{self._project_path()}/merge_requests/{int(pr)}/notes"
        params: dict[str, str | int] = {
            "sort": "asc",
            "order_by": "created_at",
            "per_page": 100,
            "page": 1,
        }
        async for item in self.http.paginate(path, params):
            if isinstance(item, Mapping) and item.get("system"):
                continue
            yield self._note(item)

    async def create_comment(self, pr: int, body: str) -> Comment:
        path = f"{self._project_path()}/merge_requests/{int(pr)}/notes"
        item = await self.http.json("POST", path, json={"body": body}, expect=(201,))
        return self._note(item)

    async def update_comment(self, pr: int, comment_id: int, body: str) -> Comment:
        path = f"{self._project_path()}/merge_requests/{int(pr)}/notes/{int(comment_id)}"
        item = await self.http.json("PUT", path, json={"body": body})
        return self._note(item)

    async def post_status(self, status: StatusSet) -> None:
        body: dict[str, Any] = {
            "state": STATES[status.state],
            "name": status.context,
            "description": status.description,
        }
        if status.target_url:
            body["target_url"] = status.target_url
        try:
            await self.http.request(
                "POST",
                f"{self._project_path()}/statuses/{status.sha}",
                json=body,
                expect=(201,),
                idempotent=True,
            )
        except ForgeApiError as exc:
            if not (
                status.state is CommitState.PENDING
                and exc.status == 400
                and "cannot transition status" in exc.message.lower()
            ):
                raise

    async def find_pull_request(self, head: str, base: str | None = None) -> PullRequest | None:
        params: dict[str, str | int] = {"state": "opened", "source_branch": head}
        if base is not None:
            params["target_branch"] = base
        params |= {"per_page": 100, "page": 1}
        path = f"{self._project_path()}/merge_requests"
        async for item in self.http.paginate(path, params):
            found = self._merge_request(item)
            if found.head == head and base in (None, found.base):
                return found
        return None

    async def create_pull_request(self, head: str, base: str, title: str, body: str) -> PullRequest:
        sent = {"source_branch": head, "target_branch": base, "title": title, "description": body}
        path = f"{self._project_path()}/merge_requests"
        return self._merge_request(await self.http.json("POST", path, json=sent, expect=(201,)))

    async def update_pull_request(self, number: int, title: str, body: str) -> PullRequest:
        path = f"{self._project_path()}/merge_requests/{int(number)}"
        item = await self.http.json("PUT", path, json={"title": title, "description": body})
        return self._merge_request(item)

    def _merge_request(self, item: Any) -> PullRequest:
        if not isinstance(item, Mapping) or not isinstance(item.get("iid"), int):
            raise ForgeApiError(self.name, "a merge request came back without an iid")
        return PullRequest(
            item["iid"],
            item.get("web_url"),
            str(item.get("source_branch") or ""),
            str(item.get("target_branch") or ""),
            str(item.get("title") or ""),
            str(item.get("description") or ""),
        )

    def _note(self, item: Any) -> Comment:
        if not isinstance(item, Mapping) or not isinstance(item.get("id"), int):
            raise ForgeApiError(self.name, "a note came back without an id")
        author = item.get("author")
        login = author.get("username") if isinstance(author, Mapping) else None
        return Comment(item["id"], str(item.get("body") or ""), None, login)
