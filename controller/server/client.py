"""The HTTP client of the CLI commands that talk to a running controller
(``fazai watch``, ``fazai approve``, ``fazai approvals``).

Every request has a connect timeout. The event stream has no overall deadline, only an
idle one well above the server's keep-alive interval: a healthy stream is never cut, a
silently dead connection (a peer that vanished without closing) is noticed and resumed
with ``Last-Event-ID`` instead of leaving ``fazai watch`` staring at nothing forever.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from controller.secrets import Secret
from controller.server import sse
from controller.server.errors import ApiClientError

DEFAULT_URL = "http://127.0.0.1:8080"
CONNECT_TIMEOUT = 5.0
REQUEST_TIMEOUT = 30.0
APPROVE_TIMEOUT = 600.0  # approving may wait for the apply it starts
STREAM_IDLE_TIMEOUT = 60.0  # four keep-alive intervals of the server
RECONNECT_FIRST, RECONNECT_MAX = 0.5, 10.0


class ApiClient:
    def __init__(
        self,
        url: str,
        token: Secret | None = None,
        *,
        verify: str | bool = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = _shown(url)
        headers = {"User-Agent": "fazai-cli"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token.reveal()}"
        self._http = httpx.Client(
            base_url=url.rstrip("/"),
            headers=headers,
            verify=verify,
            transport=transport,
            timeout=httpx.Timeout(REQUEST_TIMEOUT, connect=CONNECT_TIMEOUT),
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self._call("GET", path, params=params)

    def post(self, path: str, body: Any = None, read_timeout: float = REQUEST_TIMEOUT) -> Any:
        timeout = httpx.Timeout(REQUEST_TIMEOUT, connect=CONNECT_TIMEOUT, read=read_timeout)
        # Always JSON, even empty: an API without tokens takes writes only as JSON.
        return self._call("POST", path, json={} if body is None else body, timeout=timeout)

    def approve(self, approval_id: str) -> dict[str, Any]:
        """The API's answer: ``run_id`` once the plan is applied, else null with the
        approvals it has (``approvals``, ``approvedBy``) and needs (``required``)."""
        path = f"/api/v1/approvals/{_segment(approval_id)}/approve"
        answer: dict[str, Any] = self.post(path, read_timeout=APPROVE_TIMEOUT)
        return answer

    def abort(self, approval_id: str) -> None:
        self.post(f"/api/v1/approvals/{_segment(approval_id)}/abort")

    def approvals(self) -> list[dict[str, Any]]:
        answer: list[dict[str, Any]] = self.get("/api/v1/approvals")["approvals"]
        return answer

    def events(
        self,
        since: int | None = None,
        on_status: Callable[[str], None] = lambda _: None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Iterator[dict[str, Any]]:
        """Every event from now on (after ``since`` when given), as ``Event.to_dict()``
        gives it, for ever: a dropped stream is resumed after the last event received.
        Refusals that waiting cannot cure (401, 403, 404) raise ApiClientError."""
        last_id = since
        delay = RECONNECT_FIRST
        timeout = httpx.Timeout(REQUEST_TIMEOUT, connect=CONNECT_TIMEOUT, read=STREAM_IDLE_TIMEOUT)
        while True:
            parser = sse.Parser()
            headers = {"Accept": "text/event-stream"}
            if last_id is not None:
                headers["Last-Event-ID"] = str(last_id)
            try:
                with self._http.stream(
                    "GET", "/api/v1/events", headers=headers, timeout=timeout
                ) as response:
                    if response.status_code != 200:
                        response.read()
                        failure = _failure(response)
                        if not failure.retryable:
                            raise failure
                        reason = str(failure)
                    else:
                        on_status(f"connected to {self.url}")
                        delay = RECONNECT_FIRST
                        for message in parser.feed(response.iter_lines()):
                            event = json.loads(message.data)
                            if (
                                message.id is not None
                                and message.id.isascii()
                                and message.id.isdigit()
                            ):
                                last_id = int(message.id)
                            yield event
                        reason = "the server closed the stream"
            except httpx.TransportError as exc:
                reason = _transport_reason(exc)
            wait = parser.retry / 1000 if parser.retry is not None else delay
            wait = max(wait, delay)
            on_status(f"stream lost ({reason}); reconnecting in {wait:.1f}s")
            sleep(wait)
            delay = min(delay * 2, RECONNECT_MAX)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ApiClientError(f"{self.url}: {_transport_reason(exc)}") from exc
        if response.status_code >= 400:
            raise _failure(response)
        try:
            return response.json()
        except ValueError as exc:
            raise ApiClientError(
                f"{self.url}{path} answered with something that is not JSON", response.status_code
            ) from exc


def _failure(response: httpx.Response) -> ApiClientError:
    try:
        message = str(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        message = response.reason_phrase or "failed"
    status = response.status_code
    if status == 401:
        message += " (give one with --token-ref env:NAME or file:PATH)"
    return ApiClientError(f"{response.request.url.path}: {status} {message}", status)


def _transport_reason(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect: {exc}" if str(exc) else "cannot connect"
    if isinstance(exc, httpx.ReadTimeout):
        return f"no data for {STREAM_IDLE_TIMEOUT:.0f}s"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _segment(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _shown(url: str) -> str:
    """The URL without credentials, for messages."""
    parsed = httpx.URL(url)
    return str(parsed.copy_with(username=None, password=None)) if parsed.userinfo else url
