"""GitHub's REST API (github.com, or GitHub Enterprise Server at ``https://HOST/api/v3``).

* comments: ``GET /repos/{owner}/{repo}/issues/{number}/comments?per_page=100&page=N``
  (pages linked by ``Link: rel="next"``), ``POST`` the same path, and
  ``PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}``; a pull request is an issue
  for comments;
* statuses: ``POST /repos/{owner}/{repo}/statuses/{sha}`` with ``state`` (error, failure,
  pending, success), ``context``, ``description`` and ``target_url``;
* pull requests: ``GET /repos/{owner}/{repo}/pulls?state=open&head=OWNER:BRANCH&base=B``,
  ``POST /repos/{owner}/{repo}/pulls`` with ``title``, ``head``, ``base`` and ``body``
  (201; 422 when the branch has an open one already), ``PATCH .../pulls/{number}``;
* auth: ``Authorization: Bearer TOKEN`` (a personal access token, or the workflow's
  ``GITHUB_TOKEN`` with ``pull-requests: write`` and ``statuses: write``; opening pull
  requests also needs ``contents: write`` for the branch pushed first).
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Mapping
from typing import Any
from urllib.parse import quote

from controller.errors import ForgeApiError
from controller.forges.base import Comment, ForgeClient, PullRequest, StatusSet
from controller.forges.http import ForgeTarget

API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


class GitHubClient(ForgeClient):
    name = "github"
    max_comment_chars = 65_536

    @classmethod
    def check_repo(cls, repo: str) -> str:
        if not _REPO.match(repo) or any(p in (".", "..") for p in repo.split("/")):
            raise ValueError(f"{cls.name}: repository {repo!r}: give OWNER/NAME")
        return repo

    def auth_headers(self, target: ForgeTarget) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {target.token.reveal()}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
        }

    def _repo_path(self) -> str:
        owner, name = self.repo.split("/")
        return f"repos/{quote(owner, safe='')}/{quote(name, safe='')}"

    async def comments(self, pr: int) -> AsyncGenerator[Comment, None]:
        path = f"{self._repo_path()}/issues/{int(pr)}/comments"
        async for item in self.http.paginate(path, {"per_page": 100, "page": 1}):
            yield self._comment(item)

    async def create_comment(self, pr: int, body: str) -> Comment:
        path = f"{self._repo_path()}/issues/{int(pr)}/comments"
        item = await self.http.json("POST", path, json={"body": body}, expect=(201,))
        return self._comment(item)

    async def update_comment(self, pr: int, comment_id: int, body: str) -> Comment:
        path = f"{self._repo_path()}/issues/comments/{int(comment_id)}"
        item = await self.http.json("PATCH", path, json={"body": body})
        return self._comment(item)

    async def post_status(self, status: StatusSet) -> None:
        body: dict[str, Any] = {
            "state": status.state.value,
            "context": status.context,
            "description": status.description,
        }
        if status.target_url:
            body["target_url"] = status.target_url
        # Setting a context's state again only replaces it: harmless to repeat.
        await self.http.request(
            "POST",
            f"{self._repo_path()}/statuses/{status.sha}",
            json=body,
            expect=(201,),
            idempotent=True,
        )

    async def find_pull_request(self, head: str, base: str | None = None) -> PullRequest | None:
        owner = self.repo.split("/")[0]
        params: dict[str, str | int] = {"state": "open", "head": f"{owner}:{head}"}
        if base is not None:
            params["base"] = base
        params |= {"per_page": 100, "page": 1}
        async for item in self.http.paginate(f"{self._repo_path()}/pulls", params):
            found = self._pull(item)
            # Filtered here too: a forge that ignores ``head`` must not hand us another's.
            if found.head == head and base in (None, found.base):
                return found
        return None

    async def create_pull_request(self, head: str, base: str, title: str, body: str) -> PullRequest:
        sent = {"title": title, "head": head, "base": base, "body": body}
        item = await self.http.json("POST", f"{self._repo_path()}/pulls", json=sent, expect=(201,))
        return self._pull(item)

    async def update_pull_request(self, number: int, title: str, body: str) -> PullRequest:
        path = f"{self._repo_path()}/pulls/{int(number)}"
        item = await self.http.json(
            "PATCH", path, json={"title": title, "body": body}, expect=(200, 201)
        )
        return self._pull(item)

    def _pull(self, item: Any) -> PullRequest:
        if not isinstance(item, Mapping) or not isinstance(item.get("number"), int):
            raise ForgeApiError(self.name, "a pull request came back without a number")
        head, base = item.get("head"), item.get("base")
        return PullRequest(
            item["number"],
            item.get("html_url"),
            str(head.get("ref", "")) if isinstance(head, Mapping) else "",
            str(base.get("ref", "")) if isinstance(base, Mapping) else "",
            str(item.get("title") or ""),
            str(item.get("body") or ""),
        )

    def _comment(self, item: Any) -> Comment:
        if not isinstance(item, Mapping) or not isinstance(item.get("id"), int):
            raise ForgeApiError(self.name, "a comment came back without an id")
        user = item.get("user")
        author = user.get("login") if isinstance(user, Mapping) else None
        return Comment(item["id"], str(item.get("body") or ""), item.get("html_url"), author)
