"""Bearer tokens with read and write scopes.

Tokens are compared as SHA-256 digests with :func:`hmac.compare_digest`, against every
configured token without stopping at a match, so neither the time taken nor its variation
tells a caller how much of a guess was right or which token it was close to. With no token
configured the API is open, which :func:`~controller.server.settings.check_exposure` allows
on loopback only.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from controller import secrets
from controller.secrets import Secret
from controller.server.errors import ServerConfigError
from controller.server.replies import error
from controller.server.settings import Scope, ServerSettings

MIN_TOKEN_LENGTH = 16
ANONYMOUS = "anonymous"  # the caller's name when no token is configured

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Caller:
    name: str  # the token's name from the config, never the token
    scope: Scope

    def may(self, needed: Scope) -> bool:
        return self.scope is Scope.WRITE or needed is Scope.READ


@dataclass(frozen=True)
class _Known:
    name: str
    scope: Scope
    digest: bytes


class TokenTable:
    def __init__(self, tokens: Sequence[tuple[str, Scope, Secret]]) -> None:
        self._known = tuple(_Known(n, s, _digest(t.reveal())) for n, s, t in tokens)

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> TokenTable:
        """Reads every token reference now, so a missing one stops the server at start."""
        tokens: list[tuple[str, Scope, Secret]] = []
        for index, token in enumerate(settings.tokens):
            where = ("tokens", index, "tokenRef")
            value = secrets.resolve(token.ref.as_mapping(), "server", f"tokens[{index}].tokenRef")
            if len(value.reveal()) < MIN_TOKEN_LENGTH:
                raise ServerConfigError(
                    where,
                    f"token {token.name!r} is shorter than {MIN_TOKEN_LENGTH} characters; "
                    "make one with `openssl rand -hex 32`",
                )
            if any(value == other for _, _, other in tokens):
                raise ServerConfigError(where, f"token {token.name!r} has another token's value")
            tokens.append((token.name, token.scope, value))
        return cls(tokens)

    @property
    def open(self) -> bool:
        return not self._known

    def authenticate(self, authorization: str | None) -> Caller | None:
        """The caller an ``Authorization`` header names; None when it names none."""
        if self.open:
            return Caller(ANONYMOUS, Scope.WRITE)
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        given = _digest(token)
        found: _Known | None = None
        for known in self._known:  # no early exit: see the module's docstring
            if hmac.compare_digest(given, known.digest) and found is None:
                found = known
        return Caller(found.name, found.scope) if found else None


def require(scope: Scope) -> Callable[[Endpoint], Endpoint]:
    """Wraps an endpoint so that it only runs for a caller whose token allows ``scope``;
    the caller is then ``request.state.caller``."""

    def wrap(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def guarded(request: Request) -> Response:
            table: TokenTable = request.app.state.tokens
            if table.open:
                refused = _refused_while_open(request, scope)
                if refused is not None:
                    return refused
            header = request.headers.get("authorization")
            caller = table.authenticate(header)
            if caller is None:
                challenge = 'Bearer realm="fazai"'
                if header:
                    challenge += ', error="invalid_token"'
                return error(401, "a valid bearer token is needed", {"WWW-Authenticate": challenge})
            if not caller.may(scope):
                return error(
                    403,
                    f"token {caller.name!r} has {caller.scope.value} scope; "
                    f"this route needs {scope.value}",
                    {"WWW-Authenticate": 'Bearer realm="fazai", error="insufficient_scope"'},
                )
            request.state.caller = caller
            return await endpoint(request)

        return guarded

    return wrap


_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def _refused_while_open(request: Request, scope: Scope) -> Response | None:
    """Without tokens any local process may call the API, and so may a web page the
    operator's browser shows: a page can POST cross-site without a preflight only as a
    form or plain text, and reach a loopback API under its own name by DNS rebinding.
    So an open API answers only requests addressed to a loopback host, and writes only
    as JSON (which a browser sends cross-site only after a preflight FazAI never grants)."""
    host = request.headers.get("host", "")
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if name.lower() not in _LOOPBACK_HOSTS:
        return error(403, "this API has no token configured: it answers only loopback hosts")
    if scope is Scope.WRITE:
        kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if kind != "application/json":
            return error(415, "this API has no token configured: write requests must be JSON")
    return None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
