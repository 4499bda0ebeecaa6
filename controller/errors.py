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
    │   ├── UntrustedNodeError    a pull request changes how to reach the node: not read
    │   └── ApiError              a REST API (OPNsense) answered with a failure
    │       ├── ForbiddenError        the key lacks the privilege for the call   (403)
    │       ├── EndpointMissingError  this firmware has no such endpoint         (404)
    │       ├── ValidationFailedError the firewall refused the values; see .validations
    │       └── ServerError           the firewall failed (5xx)                  (retryable)
    ├── PlanFormatError       a plan JSON document (a file, a stored run) is not one; .path
    ├── SandboxError          the sandbox (demo, serve --sandbox) cannot start: a subnet or
    │                         port already in use, no root; says how to fix it
    ├── StoreError            the state store (runs, journal, inventory) is unusable
    │   ├── StoreLockedError      another process held the write lock too long (retryable)
    │   └── EscrowError           the escrow key is missing, unreadable or malformed
    └── ForgeError            a code forge (GitHub, GitLab, Gitea/Forgejo) failed us; names it
        ├── ForgeApiError         its REST API answered with a failure; .status, .path
        │   ├── ForgeAuthError        the forge refused the token (401) or its rights (403)
        │   ├── ForgeNotFoundError    repository, pull request or commit not found (404)
        │   ├── ForgeRateLimitedError the forge's rate limit is spent (429)       (retryable)
        │   └── ForgeUnavailableError unreachable, timed out, or 5xx               (retryable)
        └── WebhookRefused        an incoming delivery is refused; .status_code, .reason
            └── PushIgnored           authentic, but no branch push to act on (202)

``retryable`` says whether trying again later can succeed, in the spirit of kopf's
TemporaryError/PermanentError split: the reconcile loop backs off on retryable errors and
reports permanent ones without hammering the node.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from controller.hashes import mask_hashes
from controller.words import count

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
        super().__init__(f"{count(len(errors), 'error')} in the desired state")


class SourceError(FazaiError):
    """The source of desired state (a directory or a git repository at a ref) is unusable."""


class NodeError(FazaiError):
    """A node could not be read or changed. ``node`` names it. The message may quote
    what the node printed: anything shaped like a password hash in it is masked."""

    def __init__(self, node: str, message: str) -> None:
        self.node = node
        self.message = mask_hashes(message)
        super().__init__(f"{node}: {self.message}")


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


class UntrustedNodeError(NodeError):
    """A review would read a node with connection details (address, URL, credentials
    references) that only the unmerged head gives: it is not read, so a pull request
    cannot send the controller's credentials to a host of its choosing."""


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


class PlanFormatError(FazaiError):
    """A plan JSON document read back (from the store, a file) does not fit
    ``plan.schema.json``; ``path`` is the field (``changes[2].action``), "" for the whole."""

    def __init__(self, message: str, path: str = "") -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


class SandboxError(FazaiError):
    """The sandbox behind ``fazai demo`` and ``serve --sandbox`` cannot start for a reason
    of the machine, not a bug: the message says what is in the way and how to clear it."""


class StoreError(FazaiError):
    """The state store cannot be used; ``path`` names its file, ``message`` says why
    (not writable, locked, corrupt, written by a newer FazAI)."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"state store {path}: {message}")


class StoreLockedError(StoreError):
    retryable = True


class WriterLockedError(FazaiError):
    """Another live process holds the writer lock of a state store or of a node
    (``fazai apply``/``rollback``/``serve``); ``holder`` says who, as recorded by it."""

    def __init__(self, what: str, holder: str, waited: float) -> None:
        self.what = what
        self.holder = holder
        self.waited = waited
        hint = f"waited {waited:g} s" if waited else "not waited (--lock-timeout SECONDS waits)"
        super().__init__(f"{what} is locked by {holder}; {hint}")


class Interrupted(FazaiError):
    """A signal (Ctrl-C, SIGTERM) asked the run to stop: nothing new is started."""


class EscrowError(StoreError):
    """The key of the store's escrow (the secrets a rollback needs) cannot be used: not
    set, missing, unreadable, malformed, or readable by others. Never carries the key."""


class ForgeError(FazaiError):
    """A code forge failed us. ``forge`` names it (github, gitlab, gitea); messages name the
    forge and the API path, never the token."""

    def __init__(self, forge: str, message: str) -> None:
        self.forge = forge
        self.message = message
        super().__init__(f"{forge}: {message}")


class ForgeApiError(ForgeError):
    """A forge's REST API answered with a failure: ``status`` is the HTTP status (0 when
    no answer came), ``path`` the API path called."""

    def __init__(self, forge: str, message: str, *, status: int = 0, path: str = "") -> None:
        self.status = status
        self.path = path
        super().__init__(forge, message)


class ForgeAuthError(ForgeApiError):
    pass


class ForgeNotFoundError(ForgeApiError):
    pass


class ForgeRateLimitedError(ForgeApiError):
    retryable = True


class ForgeUnavailableError(ForgeApiError):
    retryable = True


class WebhookRefused(ForgeError):
    """An incoming webhook delivery is refused: answer it with ``status_code``; ``reason``
    says why (never echoing a signature or a token)."""

    def __init__(self, status_code: int, reason: str, *, forge: str = "webhook") -> None:
        self.status_code = status_code
        self.reason = reason
        super().__init__(forge, reason)


class PushIgnored(WebhookRefused):
    """An authentic delivery with no branch push to act on (a tag push, a branch deletion,
    a ping, another event). Answer 202: the forge must not count it as failed."""

    def __init__(self, reason: str, *, forge: str = "webhook") -> None:
        super().__init__(202, reason, forge=forge)
