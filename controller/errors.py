"""The one exception tree of FazAI.

Every failure a caller can meet is a :class:`FazaiError`. Third-party failures (asyncssh,
git, YAML, OS errors) are mapped into it at the boundary where they happen, chained with
``from exc`` so the cause stays inspectable, and with messages that never carry secrets.

    FazaiError
    ├── InvalidInputError     documents that cannot be used; carries every Diagnostic found
    ├── SourceError           the desired-state source cannot be read (path, git ref)
    ├── NodeError             one node cannot be read or changed; others carry on
    │   ├── UnreachableError      connection refused, timed out, dropped    (retryable)
    │   ├── AuthenticationError   the node refused our credentials          (permanent)
    │   ├── HostKeyError          unknown or changed host key               (permanent)
    │   ├── SecretError           a referenced secret cannot be read        (permanent)
    │   ├── FactsError            the node answered, but not with usable facts
    │   └── ApiError              a REST API (OPNsense) answered with a failure
    │       ├── ForbiddenError        the key lacks the privilege for the call   (403)
    │       ├── EndpointMissingError  this firmware has no such endpoint         (404)
    │       ├── ValidationFailedError the firewall refused the values; see .validations
    │       └── ServerError           the firewall failed (5xx)                  (retryable)
    └── StoreError            the state store (runs, journal, inventory) is unusable
        └── StoreLockedError      another process held the write lock too long (retryable)

``retryable`` says whether trying again later can succeed, in the spirit of kopf's
TemporaryError/PermanentError split: the reconcile loop backs off on retryable errors and
reports permanent ones without hammering the node.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controller.model.diagnostics import Diagnostic


class FazaiError(Exception):
    """Base of every error FazAI raises on purpose."""

    retryable: bool = False


class InvalidInputError(FazaiError):
    """The desired state is invalid; ``diagnostics`` lists every problem found, sorted."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = tuple(diagnostics)
        errors = [d for d in self.diagnostics if d.is_error]
        super().__init__(f"{len(errors)} error(s) in the desired state")


class SourceError(FazaiError):
    """The source of desired state (a directory or a git repository at a ref) is unusable."""


class NodeError(FazaiError):
    """A node could not be read or changed. ``node`` names it."""

    def __init__(self, node: str, message: str) -> None:
        self.node = node
        self.message = message
        super().__init__(f"{node}: {message}")


class UnreachableError(NodeError):
    retryable = True


class AuthenticationError(NodeError):
    pass


class HostKeyError(NodeError):
    pass


class FactsError(NodeError):
    pass


class SecretError(NodeError):
    pass


class ApiError(NodeError):
    """An API call failed. ``status`` is the HTTP status, ``path`` the API path called."""

    def __init__(self, node: str, message: str, *, status: int = 0, path: str = "") -> None:
        self.status = status
        self.path = path
        super().__init__(node, message)


class ForbiddenError(ApiError):
    pass


class EndpointMissingError(ApiError):
    pass


class ValidationFailedError(ApiError):
    """The firewall's own validation refused a write; ``validations`` maps its field
    (``alias.name``) to its messages, which callers map back to document fields."""

    def __init__(
        self, node: str, message: str, validations: dict[str, list[str]], *, path: str = ""
    ) -> None:
        self.validations = validations
        super().__init__(node, message, status=200, path=path)


class ServerError(ApiError):
    retryable = True


class StoreError(FazaiError):
    """The state store cannot be used; ``path`` names its file, ``message`` says why
    (not writable, locked, corrupt, written by a newer FazAI)."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"state store {path}: {message}")


class StoreLockedError(StoreError):
    retryable = True
