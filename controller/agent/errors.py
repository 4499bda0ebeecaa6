"""The agent's failures, in FazAI's one exception tree (controller/errors.py).

FazaiError
└── GoalNotFound              fazai agent named a goal or node the desired state lacks
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
