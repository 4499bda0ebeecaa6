"""Gitea's and Forgejo's REST API (``https://HOST/api/v1``): GitHub's shape for what FazAI
uses, so :class:`GiteaClient` is the GitHub client with these differences:

* comments: ``GET /repos/{owner}/{repo}/issues/{index}/comments`` answers every comment
  at once (the endpoint takes no ``page``/``limit``, and says how many in
  ``X-Total-Count``; a ``Link: rel="next"`` would still be followed);
* statuses: the same call, with one more ``state`` (warning) FazAI does not send;
* pull requests: ``GET /repos/{owner}/{repo}/pulls?state=open&limit=50&page=N`` (no
  filter by branch: every open one is looked at, pages linked by ``Link``); ``POST`` the
  same path (201; 409 when the branch has an open one already) and ``PATCH
  .../pulls/{index}``, which Gitea answers with 201;
* auth: ``Authorization: token TOKEN`` (an access token with the repository scope).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from controller.forges.base import Comment, PullRequest
from controller.forges.github import GitHubClient
from controller.forges.http import ForgeTarget


class GiteaClient(GitHubClient):
    name = "gitea"
    max_comment_chars = 65_536  # Gitea stores LONGTEXT; kept at GitHub's size for readability

    def auth_headers(self, target: ForgeTarget) -> dict[str, str]:
        return {"Authorization": f"token {target.token.reveal()}"}

    async def comments(self, pr: int) -> AsyncGenerator[Comment, None]:
        async for item in self.http.paginate(f"{self._repo_path()}/issues/{int(pr)}/comments"):
            yield self._comment(item)

    async def find_pull_request(self, head: str, base: str | None = None) -> PullRequest | None:
        params: dict[str, str | int] = {"state": "open", "limit": 50, "page": 1}
        async for item in self.http.paginate(f"{self._repo_path()}/pulls", params):
            found = self._pull(item)
            if found.head == head and base in (None, found.base):
                return found
        return None
