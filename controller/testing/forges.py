"""A local forge: the part of GitHub's, GitLab's and Gitea's REST APIs FazAI uses, on
loopback over real HTTP, so the production clients are tested as they run.

Request and answer shapes follow each forge's documentation: authentication headers
(GitHub ``Authorization: Bearer``, GitLab ``PRIVATE-TOKEN``, Gitea ``Authorization:
token``) and their 401/404 bodies; pull request comments (GitHub issue comments with
``Link`` pagination, ``per_page`` up to 100; GitLab merge request notes, newest first by
default, with ``X-Next-Page``/``X-Total-Pages`` and ``Link``, ``per_page`` up to 100;
Gitea issue comments, all in one answer with ``X-Total-Count``, as Gitea and Forgejo
do); commit statuses with each forge's states, including GitLab's refusal to move a
pending status to pending; pull requests as FazAI opens them (GitHub and Gitea
``/repos/{owner}/{repo}/pulls``, GitLab ``/projects/:id/merge_requests``: listed by state
and, on GitHub and GitLab, by branch; opened, with each forge's refusal of a second open
one for the same branches; edited), their branches checked against ``branches`` when
given (a callable naming the repository's branches, such as a bare remote's heads).
Comments, statuses and pull requests are kept in memory; every request is logged for
assertions; answers can be made to fail on demand.

    with ForgeServer("github", repo="acme/infra", pulls=[7]) as forge:
        target = ForgeTarget("github", forge.api_url, Secret(forge.token))
        ...
        assert len(forge.comments(7)) == 1
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import (
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    MutableMapping,
)
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any
from urllib.parse import quote, unquote, urlencode

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

__all__ = ["ForgeServer", "RequestRecord", "webhook_headers"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

PREFIX = {"github": "", "gitlab": "/api/v4", "gitea": "/api/v1"}
GITHUB_STATES = {"error", "failure", "pending", "success"}
GITLAB_STATES = {"pending", "running", "success", "failed", "canceled", "skipped"}
GITEA_STATES = {"pending", "success", "error", "failure", "warning"}
_SHA = re.compile(r"^[0-9a-f]{7,64}$")
PROJECT_ID = 4711  # the GitLab project's number, beside its path


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str  # as sent, percent-encoding kept (GitLab project paths)
    query: Mapping[str, str]
    status: int
    auth: str | None  # the scheme the client used: "Bearer", "token", "PRIVATE-TOKEN"
    body: Any = None


@dataclass
class _Failure:
    status: int
    method: str | None
    path: str | None
    times: int


@dataclass
class _State:
    pulls: set[int]
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    statuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1001))
    prs: dict[int, dict[str, Any]] = field(default_factory=dict)  # opened through the API


class _NotFound(Exception):
    pass


class _Refused(Exception):
    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body


def _raw_path(request: Request) -> str:
    """The path as sent, percent-encoding kept: GitLab's links keep ``group%2Fproject``."""
    raw: bytes = request.scope.get("raw_path") or request.scope["path"].encode()
    return raw.decode("latin-1").split("?", 1)[0]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ForgeApp:
    """The ASGI app: authentication, routing on the raw path, the three dialects."""

    def __init__(
        self,
        forge: str,
        token: str,
        repo: str,
        pulls: Iterable[int],
        user: str,
        branches: Callable[[], Collection[str]] | None = None,
    ) -> None:
        if forge not in PREFIX:
            raise ValueError(f"unknown forge {forge!r}")
        self.forge = forge
        self.token = token
        self.repo = repo
        self.user = user
        self.state = _State(set(pulls))
        self.branches = branches
        self.requests: list[RequestRecord] = []
        self.failures: list[_Failure] = []
        self.lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        path = _raw_path(request)
        body: Any = None
        raw = await request.body()
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        scheme, secret = self._credentials(request)
        with self.lock:
            response = self._answer(request, path, scheme, secret, body)
            self.requests.append(
                RequestRecord(
                    request.method,
                    path,
                    dict(request.query_params),
                    response.status_code,
                    scheme,
                    body,
                )
            )
        await response(scope, receive, send)

    # -- authentication -------------------------------------------------------------------

    def _credentials(self, request: Request) -> tuple[str | None, str | None]:
        if self.forge == "gitlab" and "private-token" in request.headers:
            return "PRIVATE-TOKEN", request.headers["private-token"]
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        return (scheme, value.strip()) if header else (None, None)

    def _authenticated(self, scheme: str | None, secret: str | None) -> bool:
        accepted = {
            "github": {"Bearer", "token"},
            "gitlab": {"PRIVATE-TOKEN", "Bearer"},
            "gitea": {"token", "Bearer"},
        }[self.forge]
        return scheme in accepted and secret is not None and hmac.compare_digest(secret, self.token)

    def _unauthorized(self, scheme: str | None) -> Response:
        if self.forge == "github":
            message = "Requires authentication" if scheme is None else "Bad credentials"
            return JSONResponse(
                {"message": message, "documentation_url": "https://docs.github.com/rest",
                 "status": "401"},
                401,
            )  # fmt: skip
        if self.forge == "gitlab":
            return JSONResponse({"message": "401 Unauthorized"}, 401)
        return JSONResponse({"message": "token is required", "url": self._swagger()}, 401)

    def _swagger(self) -> str:
        return "/api/swagger"

    # -- dispatch ---------------------------------------------------------------------------

    def _answer(
        self, request: Request, path: str, scheme: str | None, secret: str | None, body: Any
    ) -> Response:
        failure = self._take_failure(request.method, path)
        if failure is not None:
            return self._error(failure, "injected failure")
        if not self._authenticated(scheme, secret):
            return self._unauthorized(scheme)
        prefix = PREFIX[self.forge]
        if not path.startswith(prefix + "/"):
            return self._error(404, "Not Found")
        route = path[len(prefix) :]
        try:
            handler = {"github": self._github, "gitlab": self._gitlab, "gitea": self._gitea}
            return handler[self.forge](request, route, body)
        except _NotFound:
            return self._error(404, "Not Found")
        except _Refused as refused:
            return JSONResponse(refused.body, refused.status)

    def _take_failure(self, method: str, path: str) -> int | None:
        for failure in self.failures:
            if (failure.method in (None, method)) and (
                failure.path is None or failure.path in path
            ):
                failure.times -= 1
                if failure.times <= 0:
                    self.failures.remove(failure)
                return failure.status
        return None

    def _error(self, status: int, message: str) -> Response:
        if self.forge == "github":
            body: dict[str, Any] = {
                "message": "Not Found" if status == 404 else message,
                "documentation_url": "https://docs.github.com/rest",
                "status": str(status),
            }
        elif self.forge == "gitlab":
            body = {"message": "404 Not found" if status == 404 else f"{status} {message}"}
        else:
            text = "The target couldn't be found." if status == 404 else message
            body = {"message": text, "url": self._swagger(), "errors": []}
        return JSONResponse(body, status)

    def _pull(self, number: str) -> int:
        pr = int(number)
        if pr not in self.state.pulls:
            raise _NotFound
        return pr

    def _repo(self, owner: str, name: str) -> None:
        if f"{unquote(owner)}/{unquote(name)}" != self.repo:
            raise _NotFound

    def _user(self) -> dict[str, Any]:
        return {"login": self.user, "id": 4242, "type": "Bot"}

    # -- GitHub -----------------------------------------------------------------------------

    def _github(self, request: Request, route: str, body: Any) -> Response:
        method = request.method
        if m := re.fullmatch(r"/repos/([^/]+)/([^/]+)/issues/(\d+)/comments", route):
            self._repo(m[1], m[2])
            pr = self._pull(m[3])
            if method == "GET":
                return self._paged_github(request, self.state.comments.get(pr, []))
            if method == "POST":
                text = self._github_body(body)
                item = self._github_comment(pr, text, self.user)
                return JSONResponse(item, 201)
        if m := re.fullmatch(r"/repos/([^/]+)/([^/]+)/issues/comments/(\d+)", route):
            self._repo(m[1], m[2])
            if method == "PATCH":
                item = self._find_comment(int(m[3]))
                item["body"] = self._github_body(body)
                item["updated_at"] = _now()
                return JSONResponse(item, 200)
        if m := re.fullmatch(r"/repos/([^/]+)/([^/]+)/statuses/([^/]+)", route):
            self._repo(m[1], m[2])
            if method == "POST":
                sha = self._sha(m[3], 422, "No commit found for SHA: " + m[3])
                state = body.get("state") if isinstance(body, Mapping) else None
                if state not in GITHUB_STATES:
                    raise _Refused(422, {"message": "Validation Failed", "errors": [
                        {"resource": "Status", "field": "state", "code": "custom",
                         "message": "state is not included in the list"}]})  # fmt: skip
                status = {
                    "id": next(self.state.ids),
                    "state": state,
                    "context": body.get("context") or "default",
                    "description": body.get("description"),
                    "target_url": body.get("target_url"),
                    "creator": self._user(),
                    "created_at": _now(),
                    "updated_at": _now(),
                }
                self.state.statuses.setdefault(sha, []).append(status)
                return JSONResponse(status, 201)
        if m := re.fullmatch(r"/repos/([^/]+)/([^/]+)/pulls", route):
            self._repo(m[1], m[2])
            if method == "GET":
                query = request.query_params
                owner = self.repo.split("/")[0]
                head = query.get("head")
                listed = [
                    p for p in self._pulls_in(query.get("state", "open"))
                    if (head is None or f"{owner}:{p['head']['ref']}" == head)
                    and query.get("base") in (None, p["base"]["ref"])
                ]  # fmt: skip
                return self._paged_github(request, listed)
            if method == "POST":
                return self._github_open(body if isinstance(body, Mapping) else {})
        if m := re.fullmatch(r"/repos/([^/]+)/([^/]+)/pulls/(\d+)", route):
            self._repo(m[1], m[2])
            pull = self.state.prs.get(int(m[3]))
            if pull is None:
                raise _NotFound
            if method == "GET":
                return JSONResponse(pull, 200)
            if method == "PATCH":
                self._edit_pull(pull, body, "body")
                return JSONResponse(pull, 200)
        raise _NotFound

    def _pulls_in(self, state: str) -> list[dict[str, Any]]:
        wanted = {"open": {"open", "opened"}, "opened": {"open", "opened"},
                  "closed": {"closed", "merged"}, "merged": {"merged"},
                  "all": {"open", "opened", "closed", "merged"}}.get(state, set())  # fmt: skip
        return [p for n, p in sorted(self.state.prs.items()) if p["state"] in wanted]

    def _missing_branches(self, *names: str) -> list[str]:
        if self.branches is None:
            return []
        known = set(self.branches())
        return [n for n in names if n not in known]

    def _open_pull(self, head: str, base: str) -> dict[str, Any] | None:
        for item in self._pulls_in("open"):
            branches = (item.get("head", {}).get("ref"), item.get("base", {}).get("ref"))
            if self.forge == "gitlab":
                branches = (item["source_branch"], item["target_branch"])
            if branches == (head, base):
                return item
        return None

    def _next_pull(self) -> int:
        number = max([*self.state.pulls, 0]) + 1
        self.state.pulls.add(number)
        return number

    def _edit_pull(self, item: dict[str, Any], body: Any, text_key: str) -> None:
        if not isinstance(body, Mapping):
            raise _Refused(422, {"message": "Invalid request."})
        for key in ("title", text_key):
            if key in body:
                item[key] = body[key]
        if body.get("state") in ("closed", "open"):
            item["state"] = body["state"]
        if body.get("state_event") == "close":
            item["state"] = "closed"
        item["updated_at"] = _now()

    def _pull_branches(self, item: dict[str, Any], head: str, base: str) -> None:
        owner = self.repo.split("/")[0]
        item["head"] = {"ref": head, "label": f"{owner}:{head}", "sha": None}
        item["base"] = {"ref": base, "label": f"{owner}:{base}", "sha": None}

    def _github_open(self, body: Mapping[str, Any]) -> Response:
        missing = [k for k in ("title", "head", "base") if not isinstance(body.get(k), str)]
        if missing:
            raise _Refused(422, {"message": "Validation Failed", "errors": [
                {"resource": "PullRequest", "code": "missing_field", "field": k}
                for k in missing]})  # fmt: skip
        head, base = str(body["head"]).split(":")[-1], str(body["base"])
        absent = self._missing_branches(head, base)
        if absent:
            raise _Refused(422, {"message": "Validation Failed", "errors": [
                {"resource": "PullRequest", "code": "invalid",
                 "field": "head" if head in absent else "base"}]})  # fmt: skip
        if self._open_pull(head, base) is not None:
            owner = self.repo.split("/")[0]
            raise _Refused(422, {"message": "Validation Failed", "errors": [
                {"resource": "PullRequest", "code": "custom",
                 "message": f"A pull request already exists for {owner}:{head}."}]})  # fmt: skip
        if len(str(body.get("body") or "")) > 65536:
            raise _Refused(422, {"message": "Validation Failed", "errors": [
                {"resource": "PullRequest", "code": "custom", "field": "body",
                 "message": "body is too long (maximum is 65536 characters)"}]})  # fmt: skip
        number = self._next_pull()
        item: dict[str, Any] = {
            "id": next(self.state.ids),
            "number": number,
            "state": "open",
            "title": body["title"],
            "body": body.get("body"),
            "html_url": f"https://github.example/{self.repo}/pull/{number}",
            "url": f"/repos/{self.repo}/pulls/{number}",
            "user": self._user(),
            "draft": bool(body.get("draft", False)),
            "merged": False,
            "created_at": _now(),
            "updated_at": _now(),
        }
        self._pull_branches(item, head, base)
        self.state.prs[number] = item
        return JSONResponse(item, 201)

    def _github_body(self, body: Any) -> str:
        if not isinstance(body, Mapping) or not isinstance(body.get("body"), str):
            raise _Refused(422, {"message": 'Invalid request.\n\n"body" wasn\'t supplied.'})
        if len(body["body"]) > 65536:
            raise _Refused(422, {"message": "Validation Failed", "errors": [
                {"resource": "IssueComment", "code": "custom", "field": "body",
                 "message": "body is too long (maximum is 65536 characters)"}]})  # fmt: skip
        return str(body["body"])

    def _github_comment(self, pr: int, text: str, login: str) -> dict[str, Any]:
        cid = next(self.state.ids)
        item = {
            "id": cid,
            "node_id": f"IC_{cid}",
            "url": f"/repos/{self.repo}/issues/comments/{cid}",
            "html_url": f"https://github.example/{self.repo}/pull/{pr}#issuecomment-{cid}",
            "body": text,
            "user": {"login": login, "id": 4242 if login == self.user else 17, "type": "User"},
            "created_at": _now(),
            "updated_at": _now(),
            "issue_url": f"/repos/{self.repo}/issues/{pr}",
            "author_association": "MEMBER",
        }
        self.state.comments.setdefault(pr, []).append(item)
        return item

    def _paged_github(
        self,
        request: Request,
        items: list[dict[str, Any]],
        size: str = "per_page",
        default: int = 30,
        most: int = 100,
    ) -> Response:
        per_page = min(max(int(request.query_params.get(size, default)), 1), most)
        page = max(int(request.query_params.get("page", 1)), 1)
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        links = []

        def url(p: int) -> str:
            query = {**request.query_params, size: str(per_page), "page": str(p)}
            return f"{request.base_url}{_raw_path(request).lstrip('/')}?{urlencode(query)}"

        if page < last:
            links += [f'<{url(page + 1)}>; rel="next"', f'<{url(last)}>; rel="last"']
        if page > 1:
            links += [f'<{url(page - 1)}>; rel="prev"', f'<{url(1)}>; rel="first"']
        headers = {"Link": ", ".join(links)} if links else {}
        return JSONResponse(chunk, 200, headers=headers)

    # -- GitLab -----------------------------------------------------------------------------

    def _gitlab(self, request: Request, route: str, body: Any) -> Response:
        method = request.method
        if m := re.fullmatch(r"/projects/([^/]+)/merge_requests/(\d+)/notes", route):
            self._project(m[1])
            mr = self._pull(m[2])
            if method == "GET":
                return self._paged_gitlab(request, self.state.comments.get(mr, []))
            if method == "POST":
                return JSONResponse(self._gitlab_note(mr, self._gitlab_body(body), self.user), 201)
        if m := re.fullmatch(r"/projects/([^/]+)/merge_requests/(\d+)/notes/(\d+)", route):
            self._project(m[1])
            mr = self._pull(m[2])
            if method == "PUT":
                item = self._find_comment(int(m[3]), mr)
                item["body"] = self._gitlab_body(body)
                item["updated_at"] = _now()
                return JSONResponse(item, 200)
        if m := re.fullmatch(r"/projects/([^/]+)/statuses/([^/]+)", route):
            self._project(m[1])
            if method == "POST":
                sha = self._sha(m[2], 404, "404 Commit Not Found")
                return self._gitlab_status(sha, body if isinstance(body, Mapping) else {})
        if m := re.fullmatch(r"/projects/([^/]+)/merge_requests", route):
            self._project(m[1])
            if method == "GET":
                query = request.query_params
                listed = [
                    p for p in self._pulls_in(query.get("state", "all"))
                    if query.get("source_branch") in (None, p["source_branch"])
                    and query.get("target_branch") in (None, p["target_branch"])
                ]  # fmt: skip
                return self._paged_gitlab(request, listed)
            if method == "POST":
                return self._gitlab_open(body if isinstance(body, Mapping) else {})
        if m := re.fullmatch(r"/projects/([^/]+)/merge_requests/(\d+)", route):
            self._project(m[1])
            pull = self.state.prs.get(int(m[2]))
            if pull is None:
                raise _NotFound
            if method == "GET":
                return JSONResponse(pull, 200)
            if method == "PUT":
                self._edit_pull(pull, body, "description")
                return JSONResponse(pull, 200)
        raise _NotFound

    def _gitlab_open(self, body: Mapping[str, Any]) -> Response:
        missing = [k for k in ("source_branch", "target_branch", "title") if not body.get(k)]
        if missing:
            raise _Refused(400, {"error": f"{missing[0]} is missing"})
        head, base = str(body["source_branch"]), str(body["target_branch"])
        absent = self._missing_branches(head, base)
        if absent:
            which = "Source" if head in absent else "Target"
            raise _Refused(400, {"message": [f"Validate branches {which} branch does not exist"]})
        found = self._open_pull(head, base)
        if found is not None:
            raise _Refused(409, {"message": [
                "Another open merge request already exists for this source branch: "
                f"!{found['iid']}"]})  # fmt: skip
        iid = self._next_pull()
        item: dict[str, Any] = {
            "id": next(self.state.ids),
            "iid": iid,
            "project_id": PROJECT_ID,
            "title": body["title"],
            "description": body.get("description"),
            "state": "opened",
            "source_branch": head,
            "target_branch": base,
            "web_url": f"https://gitlab.example/{self.repo}/-/merge_requests/{iid}",
            "author": {"id": 4242, "username": self.user, "name": self.user, "state": "active"},
            "created_at": _now(),
            "updated_at": _now(),
        }
        self.state.prs[iid] = item
        return JSONResponse(item, 201)

    def _project(self, raw: str) -> None:
        # A path must come URL-encoded (group%2Fproject); a number is the project's id.
        if unquote(raw) != self.repo and raw != str(PROJECT_ID):
            raise _NotFound

    def _gitlab_body(self, body: Any) -> str:
        if not isinstance(body, Mapping) or not isinstance(body.get("body"), str):
            raise _Refused(400, {"error": "body is missing"})
        if len(body["body"]) > 1_000_000:
            raise _Refused(
                400, {"message": {"note": ["is too long (maximum is 1000000 characters)"]}}
            )
        return str(body["body"])

    def _gitlab_note(
        self, mr: int, text: str, username: str, system: bool = False
    ) -> dict[str, Any]:
        nid = next(self.state.ids)
        item = {
            "id": nid,
            "type": None,
            "body": text,
            "attachment": None,
            "author": {"id": 4242 if username == self.user else 17, "username": username,
                       "name": username, "state": "active"},
            "created_at": _now(),
            "updated_at": _now(),
            "system": system,
            "noteable_id": 900 + mr,
            "noteable_type": "MergeRequest",
            "noteable_iid": mr,
            "resolvable": False,
            "confidential": False,
            "internal": False,
        }  # fmt: skip
        self.state.comments.setdefault(mr, []).append(item)
        return item

    def _gitlab_status(self, sha: str, body: Mapping[str, Any]) -> Response:
        state = body.get("state")
        if state not in GITLAB_STATES:
            raise _Refused(400, {"error": "state does not have a valid value"})
        name = body.get("name") or body.get("context") or "default"
        existing = [s for s in self.state.statuses.get(sha, []) if s["name"] == name]
        latest = existing[-1] if existing else None
        # The generic commit status state machine: an open (pending/running) status is
        # moved on; moving it to the state it is in is refused.
        if latest is not None and latest["status"] in ("pending", "running"):
            if latest["status"] == state:
                event = "enqueue" if state == "pending" else "run"
                raise _Refused(400, {"message": f"Cannot transition status via :{event} from "
                                     f":{state} (Reason(s): Status cannot transition via "
                                     f'"{event}")'})  # fmt: skip
            latest.update(status=state, description=body.get("description"),
                          target_url=body.get("target_url"), finished_at=_now())  # fmt: skip
            return JSONResponse(latest, 201)
        status = {
            "id": next(self.state.ids),
            "sha": sha,
            "ref": body.get("ref") or "main",
            "status": state,
            "name": name,
            "target_url": body.get("target_url"),
            "description": body.get("description"),
            "created_at": _now(),
            "started_at": None,
            "finished_at": None,
            "allow_failure": False,
            "coverage": None,
            "author": {"id": 4242, "username": self.user, "name": self.user, "state": "active"},
        }
        self.state.statuses.setdefault(sha, []).append(status)
        return JSONResponse(status, 201)

    def _paged_gitlab(self, request: Request, items: list[dict[str, Any]]) -> Response:
        per_page = min(max(int(request.query_params.get("per_page", 20)), 1), 100)
        page = max(int(request.query_params.get("page", 1)), 1)
        key = request.query_params.get("order_by", "created_at")
        ordered = sorted(items, key=lambda i: (i[key if key in i else "created_at"], i["id"]))
        if request.query_params.get("sort", "desc") == "desc":
            ordered.reverse()
        last = max(1, -(-len(ordered) // per_page))
        chunk = ordered[(page - 1) * per_page : page * per_page]

        def url(p: int) -> str:
            query = {**request.query_params, "per_page": str(per_page), "page": str(p)}
            return f"{request.base_url}{_raw_path(request).lstrip('/')}?{urlencode(query)}"

        links = [f'<{url(1)}>; rel="first"', f'<{url(last)}>; rel="last"']
        if page < last:
            links.insert(0, f'<{url(page + 1)}>; rel="next"')
        headers = {
            "X-Page": str(page),
            "X-Per-Page": str(per_page),
            "X-Total": str(len(ordered)),
            "X-Total-Pages": str(last),
            "X-Next-Page": str(page + 1) if page < last else "",
            "X-Prev-Page": str(page - 1) if page > 1 else "",
            "Link": ", ".join(links),
        }
        return JSONResponse(chunk, 200, headers=headers)

    # -- Gitea ------------------------------------------------------------------------------

    def _gitea(self, request: Request, route: str, body: Any) -> Response:
        method = request.method
        if m := re.fullmatch(r"/repos/([^/]+)/([^/]+)/issues/(\d+)/comments", route):
            self._repo(m[1], m[2])
            pr = self._pull(m[3])
            if method == "GET":
                # No page/limit on this endpoint, in Gitea and in Forgejo: everything at once.
                items = self.state.comments.get(pr, [])
                return JSONResponse(items, 200, headers={"X-Total-Count": str(len(items))})
            if method == "POST":
                return JSONResponse(self._gitea_comment(pr, self._gitea_body(body), self.user), 201)
        if m := re.fullmatch(r"/repos/([^/]+)/([^/]+)/issues/comments/(\d+)", route):
            self._repo(m[1], m[2])
            if method == "PATCH":
                item = self._find_comment(int(m[3]))
                item["body"] = self._gitea_body(body)
                item["updated_at"] = _now()
                return JSONResponse(item, 200)
        if m := re.fullmatch(r"/repos/([^/]+)/([^/]+)/statuses/([^/]+)", route):
            self._repo(m[1], m[2])
            if method == "POST":
                sha = self._sha(m[3], 404, "The target couldn't be found.")
                state = body.get("state") if isinstance(body, Mapping) else None
                if state not in GITEA_STATES:
                    raise _Refused(
                        422, {"message": "[State]: invalid state", "url": self._swagger()}
                    )
                status = {
                    "id": next(self.state.ids),
                    "status": state,
                    "target_url": body.get("target_url", ""),
                    "description": body.get("description", ""),
                    "url": f"/api/v1/repos/{self.repo}/statuses/{sha}",
                    "context": body.get("context", ""),
                    "creator": {"login": self.user, "id": 4242},
                    "created_at": _now(),
                    "updated_at": _now(),
                }
                self.state.statuses.setdefault(sha, []).append(status)
                return JSONResponse(status, 201)
        if m := re.fullmatch(r"/repos/([^/]+)/([^/]+)/pulls", route):
            self._repo(m[1], m[2])
            if method == "GET":
                # Gitea filters by state (and labels, milestone, poster), never by branch.
                listed = self._pulls_in(request.query_params.get("state", "open"))
                return self._paged_github(request, listed, "limit", 20, 50)
            if method == "POST":
                return self._gitea_open(body if isinstance(body, Mapping) else {})
        if m := re.fullmatch(r"/repos/([^/]+)/([^/]+)/pulls/(\d+)", route):
            self._repo(m[1], m[2])
            pull = self.state.prs.get(int(m[3]))
            if pull is None:
                raise _NotFound
            if method == "GET":
                return JSONResponse(pull, 200)
            if method == "PATCH":
                self._edit_pull(pull, body, "body")
                return JSONResponse(pull, 201)  # Gitea answers an edit with 201
        raise _NotFound

    def _gitea_open(self, body: Mapping[str, Any]) -> Response:
        head, base = str(body.get("head") or ""), str(body.get("base") or "")
        if not head or not base or not body.get("title"):
            raise _Refused(422, {"message": "[Title]: Required", "url": self._swagger()})
        if self._missing_branches(head, base):
            return self._error(404, "Not Found")
        found = self._open_pull(head, base)
        if found is not None:
            raise _Refused(409, {"message": (
                f"pull request already exists for these targets [id: {found['id']}, "
                f"issue_id: {found['id']}, head_repo_id: 1, base_repo_id: 1, "
                f"head_branch: {head}, base_branch: {base}]"), "url": self._swagger()})  # fmt: skip
        number = self._next_pull()
        item: dict[str, Any] = {
            "id": next(self.state.ids),
            "number": number,
            "state": "open",
            "title": body["title"],
            "body": body.get("body") or "",
            "html_url": f"https://gitea.example/{self.repo}/pulls/{number}",
            "url": f"https://gitea.example/{self.repo}/pulls/{number}",
            "user": {"id": 4242, "login": self.user},
            "merged": False,
            "created_at": _now(),
            "updated_at": _now(),
        }
        self._pull_branches(item, head, base)
        self.state.prs[number] = item
        return JSONResponse(item, 201)

    def _gitea_body(self, body: Any) -> str:
        if not isinstance(body, Mapping) or not isinstance(body.get("body"), str):
            raise _Refused(422, {"message": "[Body]: Required", "url": self._swagger()})
        return str(body["body"])

    def _gitea_comment(self, pr: int, text: str, login: str) -> dict[str, Any]:
        cid = next(self.state.ids)
        item = {
            "id": cid,
            "html_url": f"https://gitea.example/{self.repo}/pulls/{pr}#issuecomment-{cid}",
            "pull_request_url": f"https://gitea.example/{self.repo}/pulls/{pr}",
            "issue_url": "",
            "user": {"id": 4242 if login == self.user else 17, "login": login},
            "original_author": "",
            "original_author_id": 0,
            "body": text,
            "assets": [],
            "created_at": _now(),
            "updated_at": _now(),
        }
        self.state.comments.setdefault(pr, []).append(item)
        return item

    # -- shared -----------------------------------------------------------------------------

    def _find_comment(self, cid: int, pr: int | None = None) -> dict[str, Any]:
        for number, items in self.state.comments.items():
            for item in items:
                if item["id"] == cid and pr in (None, number):
                    return item
        raise _NotFound

    def _sha(self, sha: str, status: int, message: str) -> str:
        if not _SHA.match(sha):
            raise _Refused(status, {"message": message})
        return sha


class ForgeServer:
    """A forge's API on loopback, served from a background thread, for one repository."""

    def __init__(
        self,
        forge: str,
        *,
        repo: str = "acme/infra",
        pulls: Iterable[int] = (1,),
        token: str | None = None,
        user: str = "fazai-bot",
        host: str = "127.0.0.1",
        port: int = 0,
        branches: Callable[[], Collection[str]] | None = None,
    ) -> None:
        prefix = {"github": "ghp_", "gitlab": "glpat-", "gitea": ""}[forge]
        self.forge = forge
        self.token = token or prefix + secrets.token_hex(20)
        self.app = ForgeApp(forge, self.token, repo, pulls, user, branches)
        self.host = host
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return self.url + PREFIX[self.forge]

    @property
    def requests(self) -> list[RequestRecord]:
        with self.app.lock:
            return list(self.app.requests)

    def add_pull(self, number: int) -> None:
        self.app.state.pulls.add(number)

    def add_comment(self, pr: int, body: str, user: str = "alice", *, system: bool = False) -> int:
        """A comment someone else wrote (on GitLab, ``system`` makes it a system note)."""
        with self.app.lock:
            if self.forge == "github":
                item = self.app._github_comment(pr, body, user)
            elif self.forge == "gitlab":
                item = self.app._gitlab_note(pr, body, user, system)
            else:
                item = self.app._gitea_comment(pr, body, user)
        return int(item["id"])

    def comments(self, pr: int) -> list[dict[str, Any]]:
        with self.app.lock:
            return [dict(c) for c in self.app.state.comments.get(pr, [])]

    def pull_requests(self) -> list[dict[str, Any]]:
        """Every pull request opened through the API, in any state, by number."""
        with self.app.lock:
            return [dict(p) for _, p in sorted(self.app.state.prs.items())]

    def close_pull_request(self, number: int, *, merged: bool = False) -> None:
        """Close (or merge) a pull request opened through the API, as a person would."""
        with self.app.lock:
            item = self.app.state.prs[number]
            item["state"] = "merged" if merged else "closed"
            if "merged" in item:
                item["merged"] = merged
                item["state"] = "closed"

    def statuses(self, sha: str) -> list[dict[str, Any]]:
        with self.app.lock:
            return [dict(s) for s in self.app.state.statuses.get(sha, [])]

    def fail(
        self, status: int, *, method: str | None = None, path: str | None = None, times: int = 1
    ) -> None:
        """Answer the next ``times`` matching requests with ``status`` (before auth)."""
        with self.app.lock:
            self.app.failures.append(_Failure(status, method, path, times))

    def project_path(self) -> str:
        """The repository as GitLab wants it in a URL: ``group%2Fproject``."""
        return quote(self.app.repo, safe="")

    def start(self) -> ForgeServer:
        config = uvicorn.Config(
            self.app, host=self.host, port=self.port, log_level="warning", access_log=False,
            lifespan="off",
        )  # fmt: skip
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(target=server.run, name=f"{self.forge}-forge", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the local {self.forge} did not start")
            time.sleep(0.01)
        self.port = server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    def __enter__(self) -> ForgeServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def webhook_headers(
    forge: str,
    body: bytes,
    secret: str | None,
    *,
    event: str | None = None,
    delivery: str | None = None,
) -> dict[str, str]:
    """The headers a forge sends with a delivery of ``body`` signed with ``secret``:
    GitHub ``X-Hub-Signature-256: sha256=HEX``; GitLab the secret itself in
    ``X-Gitlab-Token``; Gitea ``X-Gitea-Signature: HEX`` (Forgejo also
    ``X-Forgejo-Signature``)."""
    delivery = delivery or str(uuid.uuid4())
    digest = (
        hmac.new(secret.encode(), body, hashlib.sha256).hexdigest() if secret is not None else None
    )
    headers = {"Content-Type": "application/json"}
    if forge == "github":
        headers |= {"X-GitHub-Event": event or "push", "X-GitHub-Delivery": delivery}
        if digest:
            headers["X-Hub-Signature-256"] = f"sha256={digest}"
    elif forge == "gitlab":
        headers |= {"X-Gitlab-Event": event or "Push Hook", "X-Gitlab-Event-UUID": delivery}
        if secret is not None:
            headers["X-Gitlab-Token"] = secret
    elif forge in ("gitea", "forgejo"):
        headers |= {"X-Gitea-Event": event or "push", "X-Gitea-Delivery": delivery}
        if forge == "forgejo":
            headers |= {"X-Forgejo-Event": event or "push", "X-Forgejo-Delivery": delivery}
        if digest:
            headers["X-Gitea-Signature"] = digest
            if forge == "forgejo":
                headers["X-Forgejo-Signature"] = digest
    else:
        raise ValueError(f"unknown forge {forge!r}")
    return headers
