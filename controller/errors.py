"""The one exception tree of FazAI, and what each failure says about retrying.

Every failure a caller can meet is a :class:`FazaiError`. Third-party failures (httpx,
asyncssh, git, sqlite3, YAML, OS errors) are mapped into it at the boundary where they
happen, chained with ``from exc`` so the cause stays inspectable, and with messages that
never carry secrets.

Each error also says whether trying again, unchanged, can help (kopf's PermanentError /
TemporaryError split): ``retryable`` is False for a *permanent* failure (refused
credentials, 401/403, a TLS certificate or host key that does not verify, invalid input,
a policy denial) and True for a *temporary* one (a timeout, a refused or reset
connection, 5xx, 429); a temporary error may carry ``delay``, the seconds the other side
asked us to wait (``Retry-After``). :func:`retry_decision` reads that off any exception
(one that is not a FazaiError is a bug or an unmapped failure: temporary, like kopf).
The reconcile loop decides from it: a temporary failure is retried with exponential
backoff (or after its ``delay``), a permanent one at the slow ceiling only, said once,
and at once when the source changes.

    FazaiError
    ├── InvalidInputError     documents that cannot be used; carries every Diagnostic found
    │   ├── SettingsError         a fazai.yaml section that cannot be used; .problems (permanent)
    │   └── PlanFormatError       a plan JSON document (a file, a stored run) is not one; .path
    ├── SourceError           the desired-state source cannot be read      (temporary; a git
    │                         failure that names refused credentials or a missing ref: permanent)
    ├── NodeError             one node cannot be read or changed; others carry on (temporary)
    │   ├── UnreachableError      connection refused, timed out, dropped    (temporary; a TLS
    │   │                         certificate that does not verify: permanent)
    │   ├── AuthenticationError   the node refused our credentials          (permanent)
    │   ├── HostKeyError          unknown or changed host key               (permanent)
    │   ├── SecretError           a referenced secret cannot be read        (permanent)
    │   ├── FactsError            the node answered, but not with usable facts
    │   ├── UntrustedNodeError    a pull request changes how to reach the node (permanent)
    │   └── ApiError              a REST API (OPNsense) refused a call (4xx)  (permanent)
    │       ├── ForbiddenError        the key lacks the privilege for the call   (403)
    │       ├── EndpointMissingError  this firmware has no such endpoint         (404)
    │       ├── ValidationFailedError the firewall refused the values; see .validations
    │       ├── RateLimitedError      too many requests (429)            (temporary, delay)
    │       └── ServerError           the firewall failed (5xx)          (temporary, delay)
    ├── SandboxError          the sandbox (demo, serve --sandbox) cannot start: a subnet or
    │                         port already in use, no root; says how to fix it  (permanent)
    ├── StoreError            the state store (runs, journal, inventory) is unusable (permanent)
    │   ├── StoreLockedError      another process held the write lock too long (temporary)
    │   └── EscrowError           the escrow key is missing, unreadable or malformed
    ├── WriterLockedError     another live process holds the writer lock       (temporary)
    ├── Interrupted           a signal asked the run to stop
    └── ForgeError            a code forge (GitHub, GitLab, Gitea/Forgejo) failed us; names it
        ├── ForgeApiError         its REST API answered with a failure; .status, .path
        │   ├── ForgeAuthError        the forge refused the token (401) or its rights (403)
        │   ├── ForgeNotFoundError    repository, pull request or commit not found (404)
        │   ├── ForgeRateLimitedError the forge's rate limit is spent (429) (temporary, delay)
        │   └── ForgeUnavailableError unreachable, timed out, or 5xx    (temporary, delay)
        └── WebhookRefused        an incoming delivery is refused; .status_code, .reason
            └── PushIgnored           authentic, but no branch push to act on (202)

The pipeline's refusals (``PolicyError``, ``PolicyDenied``, ``ApprovalRequired``,
``RollbackSuperseded``) sit in the same tree, defined beside the stage that raises them
(``controller/pipeline/errors.py``).

The classification is a class attribute, overridden on an instance where the mapping
knows better (an UnreachableError caused by a certificate failure is permanent).
"""

from __future__ import annotations

import email.utils
import math
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass

from controller.diagnostics import Diagnostic, Location, format_path
from controller.hashes import mask_hashes
from controller.words import count


class FazaiError(Exception):
    """Base of every error FazAI raises on purpose. ``retryable``: whether trying again,
    unchanged, can succeed (temporary) or not (permanent); ``delay``: for a temporary
    error, the seconds the other side asked to wait, when it said."""

    retryable: bool = False
    delay: float | None = None


@dataclass(frozen=True)
class RetryDecision:
    """What a failure says about trying again: ``permanent`` (not before something
    changes), else temporary, after ``delay`` seconds when the other side named them."""

    permanent: bool
    delay: float | None = None
    reason: str = ""  # the error's class, for logs

    @property
    def temporary(self) -> bool:
        return not self.permanent


def retry_decision(exc: BaseException) -> RetryDecision:
    """The decision ``exc`` carries. A FazaiError says it (``retryable``, ``delay``);
    anything else (an unmapped OSError, a bug) is temporary, so a surprise is retried
    with backoff rather than given up on."""
    name = type(exc).__name__
    if isinstance(exc, FazaiError):
        delay = exc.delay if exc.retryable else None
        return RetryDecision(not exc.retryable, delay, name)
    return RetryDecision(False, None, name)


def certificate_failure(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The TLS certificate failure behind ``exc``, if that is what it is (httpx wraps
    httpcore, which wraps ssl): trying again meets the same certificate, so a mapping
    makes such a failure permanent."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds an HTTP ``Retry-After`` header asks for (delta-seconds or an HTTP date),
    None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


class InvalidInputError(FazaiError):
    """The desired state is invalid; ``diagnostics`` lists every problem found, sorted."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = tuple(diagnostics)
        errors = [d for d in self.diagnostics if d.is_error]
        super().__init__(f"{count(len(errors), 'error')} in the desired state")


class SettingsError(InvalidInputError):
    """A section of ``fazai.yaml`` is invalid. ``section`` names it (``reports``);
    ``problems`` lists every ``(path, message)`` found, ``path`` being the field inside the
    section, so the config loader can point at the file's line. ``path`` and ``message``
    are the first of them. Messages never carry a secret's value. ``file`` is the config
    file the section was read from, when the caller knows it ("" when not: the loader
    pins every problem to its own path and line anyway)."""

    def __init__(
        self,
        section: str,
        problems: Sequence[tuple[tuple[str | int, ...], str]],
        file: str = "",
    ) -> None:
        if not problems:
            raise ValueError("a SettingsError needs at least one problem")
        self.section = section
        self.file = file
        self.problems = tuple(sorted(problems, key=lambda p: (tuple(map(str, p[0])), p[1])))
        self.path, self.message = self.problems[0]
        super().__init__(
            [
                Diagnostic(Location(file), msg, path=format_path((section, *path)))
                for path, msg in self.problems
            ]
        )
        text = "; ".join(f"{format_path((section, *path))}: {msg}" for path, msg in self.problems)
        self.args = (text,)


class SourceError(FazaiError):
    """The source of desired state (a directory or a git repository at a ref) is unusable.
    Temporary unless the mapping knows better (refused credentials, no such branch)."""

    retryable = True


class NodeError(FazaiError):
    """A node could not be read or changed. ``node`` names it. The message may quote
    what the node printed: anything shaped like a password hash in it is masked."""

    retryable = True

    def __init__(self, node: str, message: str) -> None:
        self.node = node
        self.message = mask_hashes(message)
        super().__init__(f"{node}: {self.message}")


class UnreachableError(NodeError):
    retryable = True


class AuthenticationError(NodeError):
    retryable = False


class HostKeyError(NodeError):
    retryable = False


class FactsError(NodeError):
    pass


class SecretError(NodeError):
    retryable = False


class UntrustedNodeError(NodeError):
    """A review would read a node with connection details (address, URL, credentials
    references) that only the unmerged head gives: it is not read, so a pull request
    cannot send the controller's credentials to a host of its choosing."""

    retryable = False


class ApiError(NodeError):
    """An API call failed. ``status`` is the HTTP status, ``path`` the API path called;
    ``delay`` the wait the API asked for (Retry-After), for the temporary ones."""

    retryable = False

    def __init__(
        self,
        node: str,
        message: str,
        *,
        status: int = 0,
        path: str = "",
        delay: float | None = None,
    ) -> None:
        self.status = status
        self.path = path
        self.delay = delay
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


class RateLimitedError(ApiError):
    retryable = True


class ServerError(ApiError):
    retryable = True


class PlanFormatError(InvalidInputError):
    """A plan JSON document read back (from the store, a file) does not fit
    ``plan.schema.json``; ``path`` is the field (``changes[2].action``), "" for the whole,
    and ``file`` the document's file where it has one."""

    def __init__(self, message: str, path: str = "", file: str = "<plan>") -> None:
        self.path = path
        self.message = message
        super().__init__([Diagnostic(Location(file), message, "Plan", path)])
        self.args = (f"{path}: {message}" if path else message,)

    def __str__(self) -> str:
        return str(self.args[0])


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

    retryable = True

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


class AuditKeyError(StoreError):
    """The HMAC key of the audit trail cannot be used: not set where the records need it,
    missing, unreadable or malformed. Never carries the key."""


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

    def __init__(
        self,
        forge: str,
        message: str,
        *,
        status: int = 0,
        path: str = "",
        delay: float | None = None,
    ) -> None:
        self.status = status
        self.path = path
        self.delay = delay
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
