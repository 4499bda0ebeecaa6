"""An async client for the OPNsense REST API, on httpx.

Every call has a timeout. Reads are retried with exponential backoff on connection
failures and 5xx answers; writes never are (a write that may have landed must not be
sent twice). Failures map into FazAI's error tree, and the API secret never appears in
a message, a repr or a log line: auth travels only inside httpx's BasicAuth.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

from controller.errors import (
    ApiError,
    AuthenticationError,
    EndpointMissingError,
    ForbiddenError,
    RateLimitedError,
    ServerError,
    UnreachableError,
    ValidationFailedError,
    certificate_failure,
    retry_after,
)
from controller.secrets import Secret

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApiTarget:
    node: str
    url: str  # base URL, without /api
    key: Secret
    secret: Secret
    verify: bool | str = True  # False, True, or a CA bundle path
    timeout: float = 30.0
    retries: int = 3
    backoff: float = 0.5


class OpnsenseClient:
    """One firewall's API. Use as ``async with OpnsenseClient(target) as api``."""

    def __init__(self, target: ApiTarget, transport: httpx.AsyncBaseTransport | None = None):
        self.target = target
        self.requests = 0  # calls sent, retries included: benchmarks count them
        self._transport = transport
        self._http: httpx.AsyncClient | None = None

    async def __aenter__(self) -> OpnsenseClient:
        verify = ssl_context(self.target.node, self.target.verify)
        self._http = httpx.AsyncClient(
            base_url=self.target.url.rstrip("/") + "/api/",
            auth=httpx.BasicAuth(self.target.key.reveal(), self.target.secret.reveal()),
            verify=verify,
            timeout=httpx.Timeout(self.target.timeout),
            transport=self._transport,
            headers={"Accept": "application/json"},
            follow_redirects=False,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """A read: retried on connection failures and 5xx, with backoff."""
        attempt = 0
        while True:
            try:
                return await self._call("GET", path, params=params)
            except (UnreachableError, ServerError) as exc:
                attempt += 1
                delay = self.target.backoff * 2 ** (attempt - 1)
                # A firewall that asks for a longer wait (Retry-After) is left alone: the
                # reconcile loop waits that long, instead of this read holding a pass.
                if attempt > self.target.retries or not exc.retryable or (exc.delay or 0) > delay:
                    raise
                log.info("%s: GET %s failed (%s); retry %d in %.1fs",
                         self.target.node, path, exc.message, attempt, delay)  # fmt: skip
                await asyncio.sleep(delay)

    async def post(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """A write: sent once; a failure is reported, never retried blindly."""
        return await self._call("POST", path, json=body if body is not None else {})

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        if self._http is None:
            raise RuntimeError("OpnsenseClient used outside 'async with'")
        node = self.target.node
        self.requests += 1
        # A write that timed out or lost its connection may still have landed.
        unsure = "; the change may have been applied: read before sending it again"
        after = unsure if method != "GET" else ""
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise UnreachableError(
                node, f"{method} /api/{path}: no answer within {self.target.timeout:g} s{after}"
            ) from exc
        except httpx.ConnectError as exc:
            error = UnreachableError(node, f"cannot connect to {self.target.url}: {_reason(exc)}")
            if certificate_failure(exc) is not None:
                # Trying again meets the same certificate: not worth the retries.
                error.retryable = False
            raise error from exc
        except httpx.TransportError as exc:
            raise UnreachableError(
                node, f"{method} /api/{path}: connection lost: {_reason(exc)}{after}"
            ) from exc
        return _answer(node, method, path, response)


_CONTEXTS: dict[tuple[Any, ...], ssl.SSLContext] = {}
_CONTEXTS_LOCK = threading.Lock()


def ssl_context(node: str, verify: bool | str) -> ssl.SSLContext | bool:
    """The TLS trust for ``verify`` (True: httpx's default, a CA bundle path, or False),
    one context per process for each: loading a CA bundle costs 25 to 80 ms, and a plan
    with its apply opens three clients. The key holds the bundle file's identity (and
    SSL_CERT_FILE / SSL_CERT_DIR, which httpx's default honours), so a replaced bundle
    is read again; no verification is ever relaxed by the reuse."""
    if verify is False:
        return False
    if verify is True:
        key: tuple[Any, ...] = (
            "default", os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"),
        )  # fmt: skip
    else:
        try:
            st = os.stat(verify)
        except OSError as exc:
            raise UnreachableError(node, f"cannot load CA bundle {verify}: {exc}") from exc
        key = ("file", verify, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    with _CONTEXTS_LOCK:
        found = _CONTEXTS.get(key)
        if found is not None:
            return found
        try:
            if verify is True:
                context = httpx.create_ssl_context(verify=True, trust_env=True)
            else:
                context = ssl.create_default_context(cafile=verify)
        except (OSError, ssl.SSLError) as exc:
            raise UnreachableError(node, f"cannot load CA bundle {verify}: {exc}") from exc
        _CONTEXTS[key] = context
        return context


def _answer(node: str, method: str, path: str, response: httpx.Response) -> Any:
    status = response.status_code
    where = f"{method} /api/{path}"
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if status < 400 and isinstance(body, (dict, list)) and not _failed(body):
        return body  # the common case: no message to build from a 10 MB model
    message = _message(body) if body is not None else response.text[:200].strip()
    if status == 401:
        raise AuthenticationError(node, f"{where}: the API key and secret were refused (401)")
    if status == 403:
        raise ForbiddenError(
            node, f"{where}: the API key lacks the privilege for this call (403)",
            status=status, path=path,
        )  # fmt: skip
    if status == 404:
        raise EndpointMissingError(
            node, f"{where}: endpoint not found on this firmware (404)", status=status, path=path
        )
    # Retry-After (RFC 9110) on 429 and 503: the wait the firewall asks for.
    delay = retry_after(response.headers.get("Retry-After"))
    if status == 429:
        raise RateLimitedError(
            node, f"{where}: too many requests (429)", status=status, path=path, delay=delay
        )
    if status >= 500:
        raise ServerError(
            node,
            f"{where}: server error {status}: {message}",
            status=status,
            path=path,
            delay=delay,
        )
    if status >= 400:
        raise ApiError(node, f"{where}: refused ({status}): {message}", status=status, path=path)
    if body is None:
        raise ApiError(node, f"{where}: the answer is not JSON", status=status, path=path)
    if isinstance(body, dict) and body.get("result") == "failed":
        validations = _validations(body.get("validations"))
        if validations:
            details = "; ".join(f"{k}: {' '.join(v)}" for k, v in sorted(validations.items()))
            raise ValidationFailedError(
                node, f"{where}: refused: {details}", validations, path=path
            )
        raise ApiError(node, f"{where}: the firewall answered 'failed'", status=status, path=path)
    return body


def _failed(body: Any) -> bool:
    return isinstance(body, dict) and body.get("result") == "failed"


def _validations(raw: Any) -> dict[str, list[str]]:
    if not isinstance(raw, dict):
        return {}
    out: dict[str, list[str]] = {}
    for key, value in raw.items():
        out[str(key)] = [str(v) for v in value] if isinstance(value, list) else [str(value)]
    return out


def _message(body: Any) -> str:
    if isinstance(body, dict):
        for key in ("message", "errorMessage", "status"):
            if key in body:
                return str(body[key])
    return str(body)[:200]


def _reason(exc: httpx.HTTPError) -> str:
    certificate = certificate_failure(exc)
    if certificate is not None:
        return (
            f"TLS certificate verification failed: {certificate.verify_message}; give the "
            "firewall's CA in tls.caBundle (or tls.verify: false, only in labs)"
        )
    text = str(exc) or type(exc).__name__
    return text
