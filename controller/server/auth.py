"""Bearer tokens, each with a name, a role and a scope.

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
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response

from controller import secrets
from controller.secrets import Secret
from controller.server.errors import ServerConfigError
from controller.server.replies import error
from controller.server.settings import Role, ServerSettings, TokenScope

MIN_TOKEN_LENGTH = 16
ANONYMOUS = "anonymous"  # the caller's name when no token is configured

Endpoint = Callable[[Request], Awaitable[Response]]

log = logging.getLogger("fazai.server")


@dataclass(frozen=True)
class Caller:
    name: str  # the token's name from the config, never the token
    role: Role
    scope: TokenScope = field(default_factory=TokenScope)
    identities: tuple[str, ...] = ()  # the emails and names it commits under

    def may(self, needed: Role) -> bool:
        return self.role.allows(needed)


@dataclass(frozen=True)
class _Known:
    caller: Caller
    digest: bytes


class TokenTable:
    def __init__(self, tokens: Sequence[tuple[Caller, Secret]]) -> None:
        self._known = tuple(_Known(c, _digest(t.reveal())) for c, t in tokens)

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> TokenTable:
        """Reads every token reference now, so a missing one stops the server at start."""
        tokens: list[tuple[Caller, Secret]] = []
        for index, token in enumerate(settings.tokens):
            if token.legacy is not None:
                log.warning(
                    "server.tokens[%d] (%s): scope: %s is deprecated; write role: %s instead",
                    index,
                    token.name,
                    token.legacy,
                    token.role.value,
                )
            where = ("tokens", index, "tokenRef")
            value = secrets.resolve(token.ref.as_mapping(), "server", f"tokens[{index}].tokenRef")
            if len(value.reveal()) < MIN_TOKEN_LENGTH:
                raise ServerConfigError(
                    where,
                    f"token {token.name!r} is shorter than {MIN_TOKEN_LENGTH} characters; "
                    "make one with `openssl rand -hex 32`",
                )
            if any(value == other for _, other in tokens):
                raise ServerConfigError(where, f"token {token.name!r} has another token's value")
            caller = Caller(token.name, token.role, token.scope, token.identities)
            tokens.append((caller, value))
        return cls(tokens)

    @property
    def open(self) -> bool:
        return not self._known

    def authenticate(self, authorization: str | None) -> Caller | None:
        """The caller an ``Authorization`` header names; None when it names none."""
        if self.open:
            # Loopback only (see _refused_while_open); what ``write`` was before roles.
            return Caller(ANONYMOUS, Role.APPROVER)
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        given = _digest(token)
        found: _Known | None = None
        for known in self._known:  # no early exit: see the module's docstring
            if hmac.compare_digest(given, known.digest) and found is None:
                found = known
        return found.caller if found else None


def require(role: Role) -> Callable[[Endpoint], Endpoint]:
    """Wraps an endpoint so that it only runs for a caller whose role includes ``role``;
    the caller is then ``request.state.caller``."""

    def wrap(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def guarded(request: Request) -> Response:
            table: TokenTable = request.app.state.tokens
            if table.open:
                refused = _refused_while_open(request, role)
                if refused is not None:
                    return refused
            header = request.headers.get("authorization")
            caller = table.authenticate(header)
            if caller is None:
                challenge = 'Bearer realm="fazai"'
                if header:
                    challenge += ', error="invalid_token"'
                return error(401, "a valid bearer token is needed", {"WWW-Authenticate": challenge})
            if not caller.may(role):
                return error(
                    403,
                    f"token {caller.name!r} has the {caller.role.value} role; "
                    f"this route needs {role.value}",
                    {"WWW-Authenticate": 'Bearer realm="fazai", error="insufficient_scope"'},
                )
            request.state.caller = caller
            return await endpoint(request)

        return guarded

    return wrap


_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def _refused_while_open(request: Request, role: Role) -> Response | None:
    """Without tokens any local process may call the API, and so may a web page the
    operator's browser shows: a page can POST cross-site without a preflight only as a
    form or plain text, and reach a loopback API under its own name by DNS rebinding.
    So an open API answers only requests addressed to a loopback host, and writes only
    as JSON (which a browser sends cross-site only after a preflight FazAI never grants)."""
    host = request.headers.get("host", "")
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if name.lower() not in _LOOPBACK_HOSTS:
        return error(403, "this API has no token configured: it answers only loopback hosts")
    if role is not Role.VIEWER:
        kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if kind != "application/json":
            return error(415, "this API has no token configured: write requests must be JSON")
    return None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
