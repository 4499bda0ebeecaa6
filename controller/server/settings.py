"""The ``server`` section of ``fazai.yaml``: where the API listens and who may call it.

``from_config`` turns the section into :class:`ServerSettings`; the controller's config
loader validates the section against ``schemas/server.schema.json`` first (with file and
line), and ``from_config`` validates again so it is safe on its own. Secrets stay
references here: they are read when the app is built, so a settings object can be logged.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import jsonschema

from controller.server.errors import ServerConfigError
from controller.settings import check, durations, sections

FORGES = ("github", "gitlab", "gitea")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


class Role(StrEnum):
    """What a token may do; each role may do what the ones before it may."""

    VIEWER = "viewer"  # GET routes, the event stream, metrics
    OPERATOR = "operator"  # also trigger reconciles
    APPROVER = "approver"  # also approve and abort pending approvals (within its scope)
    ADMIN = "admin"  # everything, on every source and node (never scoped)

    def allows(self, needed: Role) -> bool:
        order = list(Role)
        return order.index(self) >= order.index(needed)


# The first form of a token's permissions, ``scope: read|write``, still read (with a
# warning at start): ``write`` could trigger, approve and abort, which is the approver
# role exactly, so an old config keeps doing what it did, no more and no less.
LEGACY_SCOPES = {"read": Role.VIEWER, "write": Role.APPROVER}


@dataclass(frozen=True)
class TokenScope:
    """The sources and nodes a token sees and acts on; None: no restriction."""

    sources: frozenset[str] | None = None
    nodes: tuple[tuple[str, str], ...] | None = None  # matchLabels, sorted pairs

    @property
    def unrestricted(self) -> bool:
        return self.sources is None and self.nodes is None

    def has_source(self, source: str | None) -> bool:
        return self.sources is None or (source is not None and source in self.sources)

    def has_node(self, labels: Mapping[str, str] | None) -> bool:
        """A node with these labels matches the selector; a node whose labels are
        unknown (None) matches only when there is no selector."""
        if self.nodes is None:
            return True
        return labels is not None and all(labels.get(k) == v for k, v in self.nodes)


@dataclass(frozen=True)
class SecretRef:
    """``{env: NAME}`` or ``{file: PATH}``: where a secret is, never the secret."""

    env: str | None = None
    file: str | None = None

    def as_mapping(self) -> dict[str, str]:
        return {"env": self.env} if self.env is not None else {"file": self.file or ""}

    def __str__(self) -> str:
        return f"env:{self.env}" if self.env is not None else f"file:{self.file}"

    @classmethod
    def parse(cls, text: str) -> SecretRef:
        """``env:NAME`` or ``file:PATH``, as CLI options write a reference."""
        kind, sep, value = text.partition(":")
        if not sep or not value or kind not in ("env", "file"):
            raise ValueError(f"{text!r}: write env:NAME or file:PATH")
        return cls(env=value) if kind == "env" else cls(file=value)


@dataclass(frozen=True)
class TokenSetting:
    name: str
    role: Role
    ref: SecretRef
    scope: TokenScope = TokenScope()
    legacy: str | None = None  # "read" or "write": written in the deprecated scope form
    # The emails and names its owner commits under (see reconcile.actors.is_actor).
    identities: tuple[str, ...] = ()


@dataclass(frozen=True)
class WebhookSetting:
    forge: str  # one of FORGES
    ref: SecretRef


@dataclass(frozen=True)
class TlsSetting:
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class ServerSettings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT  # 0: any free port (tests)
    tokens: tuple[TokenSetting, ...] = ()
    webhooks: tuple[WebhookSetting, ...] = ()
    tls: TlsSetting | None = None
    keepalive: float = 15.0  # seconds between SSE keep-alive comments
    max_streams: int = 64  # concurrent event-stream clients
    # Against slow clients (controller.server.protocol): a request head must arrive within
    # head_timeout seconds, a body within body_timeout; at most max_connections are open
    # (fewer when the process may open fewer than twice as many files).
    head_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 500

    @property
    def listen(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    def webhook(self, forge: str) -> WebhookSetting | None:
        return next((w for w in self.webhooks if w.forge == forge), None)


def is_loopback(host: str) -> bool:
    """Only an address that cannot be reached from another machine counts: a host name
    other than ``localhost`` could resolve anywhere, so it does not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` -> (host, port); ValueError says what is wrong."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"{text!r}: write HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{text!r}: {host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise ValueError(f"{text!r}: put an IPv6 address in brackets, e.g. [::1]:8080")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"{text!r}: port {port} is out of range")
    return host, port


def check_exposure(settings: ServerSettings) -> None:
    """Refuse an API reachable from other machines that anyone could call."""
    if not settings.loopback and not settings.tokens:
        raise ServerConfigError(
            ("listen",),
            f"{settings.listen} is not a loopback address and no token is configured: "
            "anyone who can reach it could apply changes. Add server.tokens or listen on "
            "127.0.0.1",
        )


MAX_LIMIT_TIMEOUT = 3600.0


def schema() -> Mapping[str, Any]:
    return check.load_schema("controller.server", "server.schema.json")


def from_config(mapping: Mapping[str, Any] | None) -> ServerSettings:
    """The settings of a ``server`` section (None or empty: the defaults).

    Raises ServerConfigError naming the first field at fault."""
    section: Mapping[str, Any] = mapping or {}
    _validate(section)
    host, port = DEFAULT_HOST, DEFAULT_PORT
    if "listen" in section:
        try:
            host, port = parse_listen(section["listen"])
        except ValueError as exc:
            raise ServerConfigError(("listen",), str(exc)) from None
    tokens = []
    seen: set[str] = set()
    for index, item in enumerate(section.get("tokens", ())):
        if item["name"] in seen:
            raise ServerConfigError(("tokens", index, "name"), f"{item['name']!r} is used twice")
        seen.add(item["name"])
        tokens.append(_token(index, item))
    webhooks = tuple(
        WebhookSetting(forge, _ref(entry.get("secretRef") or entry["tokenRef"]))
        for forge, entry in sorted(section.get("webhooks", {}).items())
    )
    tls = None
    if "tls" in section:
        tls = TlsSetting(
            Path(section["tls"]["certFile"]).expanduser(),
            Path(section["tls"]["keyFile"]).expanduser(),
        )
    limits = section.get("limits", {})
    defaults = ServerSettings()
    settings = ServerSettings(
        host,
        port,
        tuple(tokens),
        webhooks,
        tls,
        head_timeout=_limit(limits, "headTimeout", defaults.head_timeout),
        body_timeout=_limit(limits, "bodyTimeout", defaults.body_timeout),
        max_connections=int(limits.get("maxConnections", defaults.max_connections)),
    )
    check_exposure(settings)
    return settings


def _limit(limits: Mapping[str, Any], key: str, default: float) -> float:
    try:
        seconds = durations.parse(limits.get(key, default))
    except ValueError as exc:  # what the schema cannot refuse: YAML's .inf
        raise ServerConfigError(("limits", key), str(exc)) from None
    if not 0 < seconds <= MAX_LIMIT_TIMEOUT:
        raise ServerConfigError(("limits", key), "must be more than 0 and at most 1h")
    return seconds


def _validate(section: Mapping[str, Any]) -> None:
    error = jsonschema.exceptions.best_match(check.validator(schema()).iter_errors(section))
    if error is None:
        return
    path = tuple(error.absolute_path)
    refs = [i for i, part in enumerate(path) if str(part).endswith("Ref")]
    if refs or (path[:1] == ("webhooks",) and len(path) >= 2):
        where = path[: refs[-1] + 1] if refs else path[:2]
        raise ServerConfigError(where, "give the secret by reference: {env: NAME} or {file: PATH}")
    where, message = next(iter(check.explain(error)))
    raise ServerConfigError(where, message)


def _token(index: int, item: Mapping[str, Any]) -> TokenSetting:
    """One entry of ``tokens`` (already checked against the schema): its role, from
    ``role`` or the deprecated ``scope: read|write``, and its scope."""
    at: tuple[str | int, ...] = ("tokens", index)
    scope = item.get("scope")
    legacy = scope if isinstance(scope, str) else None
    if legacy is not None and "role" in item:
        raise ServerConfigError(
            (*at, "scope"),
            f"scope: {legacy} is the old way to write a role; with role: {item['role']} "
            "give scope as {sources: [...], nodes: {matchLabels: {...}}} or leave it out",
        )
    if legacy is not None:
        role = LEGACY_SCOPES[legacy]
    elif "role" in item:
        role = Role(item["role"])
    else:
        raise ServerConfigError(at, "needs a role: viewer, operator, approver or admin")
    limits = TokenScope()
    if isinstance(scope, Mapping):
        sources = scope.get("sources")
        labels = scope.get("nodes", {}).get("matchLabels") if "nodes" in scope else None
        limits = TokenScope(
            frozenset(sources) if sources is not None else None,
            tuple(sorted(labels.items())) if labels is not None else None,
        )
        if role is Role.ADMIN and not limits.unrestricted:
            raise ServerConfigError(
                (*at, "scope"),
                "an admin token acts on every source and node; give it no scope, or make "
                "it an approver with this scope",
            )
    identities = tuple(i.strip() for i in item.get("identities", ()))
    for position, identity in enumerate(identities):
        if not identity or any(c in identity for c in "<>\n\r"):
            raise ServerConfigError(
                (*at, "identities", position),
                "an email or a name as commits carry it, without < > or line breaks",
            )
    return TokenSetting(item["name"], role, _ref(item["tokenRef"]), limits, legacy, identities)


def _ref(value: Mapping[str, str]) -> SecretRef:
    return SecretRef(env=value.get("env"), file=value.get("file"))


# fazai.yaml's loader (below this package) knows the section only through this registration.
sections.register(sections.Section("server", "controller.server", from_config))
