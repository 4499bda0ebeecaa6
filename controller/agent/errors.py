"""The agent's failures, in FazAI's one exception tree (controller/errors.py).

FazaiError
├── GoalNotFound              fazai agent named a goal or node the desired state lacks
└── CommitBackError           a verified tool could not be committed back  (permanent)
    ├── CommitBackRefused         refused before anything was written
    └── PushRejected              the remote refused the push
StoreError
└── KnowledgeError            the knowledge base cannot be used; .path names it
    ├── KnowledgeLockedError      another process owns its local folder (temporary;
    │                             also a StoreLockedError)
    └── KnowledgeUnavailableError the Qdrant server is unreachable, timed out or
                                  failed (5xx, 429)                      (temporary)
"""

from __future__ import annotations

from controller.errors import FazaiError, StoreError, StoreLockedError


class KnowledgeError(StoreError):
    """The knowledge base cannot be used: ``path`` is its local folder or its server's
    URL (never with credentials), ``message`` says why. Permanent unless a subclass says
    otherwise: an embedder that changed dimension, a refused API key, a corrupt folder."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(path, message)
        self.args = (f"knowledge base {path}: {message}",)


class KnowledgeLockedError(KnowledgeError, StoreLockedError):
    """Another process owns the local folder: Qdrant's local mode lets one process open
    it at a time. Temporary (it frees when that process ends), but a process that needs
    the knowledge while ``fazai serve`` runs must go through it, or use a Qdrant server."""


class KnowledgeUnavailableError(KnowledgeError):
    """The Qdrant server could not answer: unreachable, timed out, 5xx or 429."""

    retryable = True


class GoalNotFound(FazaiError):
    """``fazai agent`` was given a goal or node the desired state does not hold."""


class CommitBackError(FazaiError):
    """A verified tool could not be committed back to the desired-state repository:
    ``goal`` names the goal; the message says why and what to do. Permanent: trying
    again changes nothing before someone acts (a network failure of git is a
    SourceError instead, temporary)."""

    def __init__(self, goal: str, message: str) -> None:
        self.goal = goal
        self.message = message
        super().__init__(f"committing back Goal/{goal}: {message}")


class CommitBackRefused(CommitBackError):
    """The edit is refused before anything is written: the goal already has another
    ``resolvedBy`` (a person's choice, never overwritten), a different Tool of that name
    or file exists, the goal is not where it was loaded from, or the local base branch
    is behind its remote (``direct``)."""


class PushRejected(CommitBackError):
    """The remote refused the push (not a fast-forward, a hook, a protected branch)."""
