"""Errors of the HTTP API, its configuration and its clients, in FazAI's exception tree.

FazaiError
├── ServerConfigError   the ``server`` section cannot be used (a SettingsError)
├── ServerBindError     the listen address cannot be bound
└── ApiClientError      a CLI client (``fazai watch``, ``approve``) got no usable answer
"""

from __future__ import annotations

from controller.errors import FazaiError, SettingsError


class ServerConfigError(SettingsError):
    """``path`` is the field inside the ``server`` section (``("tokens", 0, "scope")``), so
    the config loader can point at its line."""

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__("server", [(path, message)])


class ServerBindError(FazaiError):
    retryable = True


class ApiClientError(FazaiError):
    """``status`` is the HTTP status the API answered with, 0 when it did not answer."""

    def __init__(self, message: str, status: int = 0) -> None:
        self.status = status
        self.retryable = status == 0 or status >= 500
        super().__init__(message)
