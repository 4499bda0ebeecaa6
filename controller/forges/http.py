"""The HTTP plumbing every forge client shares: timeouts, retries, pagination, errors.

Every call has a timeout. Failures are mapped into the ForgeError tree with the forge's
name and the API path, never the token: a 401 says "github refused the token", not what
the token was, and any text a forge echoes back is scrubbed of it. Nothing is retried
that could have been done twice: a request is retried only when it never left (the
connection could not be opened) or when repeating it is harmless (reads, edits, statuses).
Pagination follows the ``Link: rel="next"`` header (GitHub, GitLab) or GitLab's
``X-Next-Page``, and only ever to the forge's own origin, so the token never leaves it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx

import controller
from controller.errors import (
    ForgeApiError,
    ForgeAuthError,
    ForgeNotFoundError,
    ForgeRateLimitedError,
    ForgeUnavailableError,
    certificate_failure,
    retry_after,
)
from controller.secrets import Secret

DEFAULT_TIMEOUT = 30.0
ATTEMPTS = 3
BACKOFF_S = 0.5
MAX_PAGES = 200  # 20,000 comments at 100 a page: far beyond any pull request
USER_AGENT = f"fazai/{controller.__version__}"


@dataclass(frozen=True)
class ForgeTarget:
    """Where a forge's API is and how to call it."""

    forge: str  # github, gitlab, gitea
    api_url: str  # https://api.github.com, https://gitlab.com/api/v4, https://git.example/api/v1
    token: Secret = field(repr=False)
    timeout: float = DEFAULT_TIMEOUT
    verify: bool | str = True  # False, or a CA bundle path, for self-hosted forges


class ForgeHttp:
    """An httpx client bound to one forge, with its errors mapped."""

    def __init__(
        self,
        target: ForgeTarget,
        headers: Mapping[str, str],
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.target = target
        self.forge = target.forge
        self._base = httpx.URL(target.api_url.rstrip("/") + "/")
        self._client = httpx.AsyncClient(
            base_url=self._base,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json", **headers},
            timeout=target.timeout,
            verify=target.verify,
            transport=transport,
            follow_redirects=False,  # a redirect could carry the token to another host
        )

    async def __aenter__(self) -> ForgeHttp:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        expect: Collection[int] = (200,),
        idempotent: bool | None = None,
    ) -> httpx.Response:
        """Send one call; retry it only where that cannot do anything twice."""
        repeatable = method in ("GET", "PUT", "PATCH") if idempotent is None else idempotent
        shown = f"{method} /{httpx.URL(path).path.lstrip('/')}"
        for attempt in range(ATTEMPTS):
            try:
                response = await self._client.request(method, path, params=params, json=json)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                # Nothing was sent: trying again is always safe.
                error: ForgeApiError = ForgeUnavailableError(
                    self.forge, f"cannot reach {self._origin()}: {_describe(exc)}", path=shown
                )
                cause: BaseException = exc
                if certificate_failure(exc) is not None:
                    # The same certificate would be met again: permanent, not retried.
                    error.retryable = False
                    raise error from exc
            except httpx.TimeoutException as exc:
                error = ForgeUnavailableError(
                    self.forge,
                    f"no answer within {self.target.timeout:g}s to {shown}",
                    path=shown,
                )
                cause = exc
            except httpx.HTTPError as exc:
                error = ForgeUnavailableError(
                    self.forge, f"{shown} failed: {_describe(exc)}", path=shown
                )
                cause = exc
            else:
                if response.status_code in expect:
                    return response
                error = self._error(response, shown)
                cause = error
                if not (isinstance(error, ForgeUnavailableError) and repeatable):
                    raise error
            retry_anyway = isinstance(cause, httpx.ConnectError | httpx.ConnectTimeout)
            if attempt + 1 == ATTEMPTS or not (repeatable or retry_anyway):
                raise error from (cause if cause is not error else None)
            await asyncio.sleep(BACKOFF_S * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    async def json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        expect: Collection[int] = (200,),
        idempotent: bool | None = None,
    ) -> Any:
        response = await self.request(
            method, path, params=params, json=json, expect=expect, idempotent=idempotent
        )
        return self.decode(response, f"{method} {path}")

    def decode(self, response: httpx.Response, shown: str) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise ForgeApiError(
                self.forge,
                f"{shown} answered {response.status_code} with something that is not JSON",
                status=response.status_code,
                path=shown,
            ) from exc

    async def paginate(
        self, path: str, params: Mapping[str, str | int] | None = None
    ) -> AsyncIterator[Any]:
        """Every item of a list endpoint, page after page, in the order the forge gives."""
        url: str = path
        query: Mapping[str, str | int] | None = params
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            response = await self.request("GET", url, params=query)
            items = self.decode(response, f"GET {path}")
            if not isinstance(items, list):
                raise ForgeApiError(
                    self.forge, f"GET {path} answered {type(items).__name__}, not a list", path=path
                )
            for item in items:
                yield item
            following = self._next_page(response, query)
            if following is None:
                return
            url, query = following
            if url + repr(query) in seen:
                raise ForgeApiError(self.forge, f"GET {path}: pagination loops", path=path)
            seen.add(url + repr(query))
        raise ForgeApiError(self.forge, f"GET {path}: more than {MAX_PAGES} pages", path=path)

    def _next_page(
        self, response: httpx.Response, query: Mapping[str, str | int] | None
    ) -> tuple[str, Mapping[str, str | int] | None] | None:
        link = response.links.get("next", {}).get("url")
        if link:
            target = response.url.join(link)
            if not self._own(target):
                raise ForgeApiError(
                    self.forge,
                    f"the next page is on another site ({target.scheme}://{target.host}); "
                    "not following it with the token",
                )
            return str(target), None
        page = response.headers.get("x-next-page", "").strip()
        if page.isdigit() and query is not None:
            return str(response.url.copy_with(query=None)), {**query, "page": int(page)}
        return None

    def _own(self, url: httpx.URL) -> bool:
        base = self._base
        return (
            url.scheme == base.scheme
            and url.host == base.host
            and url.port == base.port
            and url.raw_path.startswith(base.raw_path)
        )

    def _origin(self) -> str:
        return f"{self._base.scheme}://{self._base.netloc.decode('ascii')}"

    def _error(self, response: httpx.Response, shown: str) -> ForgeApiError:
        status = response.status_code
        detail = self.scrub(_forge_message(response))
        said = f": {detail}" if detail else ""
        if status == 401:
            return ForgeAuthError(
                self.forge,
                f"the token was refused (401 Unauthorized) at {shown}{said}",
                status=status,
                path=shown,
            )
        if status == 429 or (
            status == 403 and response.headers.get("x-ratelimit-remaining") == "0"
        ):
            wait = response.headers.get("retry-after") or response.headers.get("x-ratelimit-reset")
            when = f"; retry after {wait}" if wait else ""
            return ForgeRateLimitedError(
                self.forge,
                f"rate limit spent ({status}) at {shown}{when}",
                status=status,
                path=shown,
                delay=_wait(response),
            )
        if status == 403:
            return ForgeAuthError(
                self.forge,
                f"the token lacks the rights for {shown} (403 Forbidden){said}",
                status=status,
                path=shown,
            )
        if status == 404:
            return ForgeNotFoundError(
                self.forge,
                f"not found: {shown} (no such repository, pull request or commit, or the "
                f"token cannot see it){said}",
                status=status,
                path=shown,
            )
        if status >= 500:
            return ForgeUnavailableError(
                self.forge,
                f"{shown} failed on the forge ({status}){said}",
                status=status,
                path=shown,
                delay=retry_after(response.headers.get("retry-after")),
            )
        return ForgeApiError(
            self.forge, f"{shown} was refused ({status}){said}", status=status, path=shown
        )

    def scrub(self, text: str) -> str:
        """``text`` without the token, should a forge ever echo it back."""
        token = self.target.token.reveal()
        return text.replace(token, "***") if token else text


def _forge_message(response: httpx.Response) -> str:
    """The reason a forge gives in its error body (GitHub and Gitea ``message``, GitLab
    ``message`` or ``error``), shortened; never the raw body of an HTML error page."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, Mapping):
        return ""
    message = body.get("message") or body.get("error") or ""
    if isinstance(message, Mapping | list):
        message = str(message)
    text = " ".join(str(message).split())
    return text[:300] + ("…" if len(text) > 300 else "")


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _wait(response: httpx.Response) -> float | None:
    """Retry-After, else GitHub's x-ratelimit-reset (the epoch second the limit resets)."""
    wait = retry_after(response.headers.get("retry-after"))
    if wait is not None:
        return wait
    reset = response.headers.get("x-ratelimit-reset", "")
    try:
        return max(0.0, float(reset) - time.time()) if reset else None
    except ValueError:
        return None
