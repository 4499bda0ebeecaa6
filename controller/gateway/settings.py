"""Where the gateway listens and who may call it.

Tokens are references (``env:NAME``, ``file:PATH``), read when the app is built. The
exposure rule is ``fazai serve``'s: an address other than loopback needs a token (and
TLS is the operator's choice, as there), so a model that anyone on the network could
drive is never the default.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.server import settings as server_settings
from controller.server.errors import ServerConfigError
from controller.server.settings import Role, SecretRef, ServerSettings, TlsSetting, TokenSetting

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8081  # beside fazai serve's 8080
MAX_BODY = 4 * 1024 * 1024  # a request body: prompts are long, but bounded (the worker's frame)


@dataclass(frozen=True)
class GatewaySettings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT  # 0: any free port (tests)
    tokens: tuple[SecretRef, ...] = ()
    tls: TlsSetting | None = None
    max_body: int = MAX_BODY
    head_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 256

    @property
    def listen(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def server(self) -> ServerSettings:
        """The same settings as the HTTP stack of controller.server takes them: every
        token may call every route (the gateway has no roles)."""
        return ServerSettings(
            host=self.host,
            port=self.port,
            tokens=tuple(
                TokenSetting(f"token-{i}", Role.OPERATOR, ref) for i, ref in enumerate(self.tokens)
            ),
            tls=self.tls,
            head_timeout=self.head_timeout,
            body_timeout=self.body_timeout,
            max_connections=self.max_connections,
        )


def check_exposure(settings: GatewaySettings) -> None:
    """``fazai serve``'s rule, in the gateway's words."""
    if not server_settings.is_loopback(settings.host) and not settings.tokens:
        raise ServerConfigError(
            ("listen",),
            f"{settings.listen} is not a loopback address and no token is configured: "
            "anyone who can reach it could use the models. Give --token-ref env:NAME (or "
            "file:PATH) or listen on 127.0.0.1",
        )


def from_options(
    listen: str | None, token_refs: tuple[str, ...], tls_cert: str | None, tls_key: str | None
) -> GatewaySettings:
    """The settings of ``fazai model serve``'s options; ServerConfigError (or ValueError
    from the parsers) says what is wrong."""
    host, port = DEFAULT_HOST, DEFAULT_PORT
    if listen:
        try:
            host, port = server_settings.parse_listen(listen)
        except ValueError as exc:
            raise ServerConfigError(("listen",), str(exc)) from None
    refs = []
    for text in token_refs:
        try:
            refs.append(SecretRef.parse(text))
        except ValueError as exc:
            raise ServerConfigError(("tokens",), str(exc)) from None
    if (tls_cert is None) != (tls_key is None):
        raise ServerConfigError(("tls",), "give both --tls-cert and --tls-key")
    from pathlib import Path

    tls = TlsSetting(Path(tls_cert), Path(tls_key)) if tls_cert and tls_key else None
    settings = GatewaySettings(host, port, tuple(refs), tls)
    check_exposure(settings)
    return settings
