"""Errors of the reports and notifications packages, inside FazAI's exception tree.

FazaiError
└── ReportError     a report could not be written or committed (folder, git, push)

A section that cannot be used raises :class:`controller.errors.SettingsError` (the
settings kit's error, re-exported here for the callers that import it from here).
"""

from __future__ import annotations

from controller.errors import FazaiError, SettingsError

FieldPath = tuple[str | int, ...]

__all__ = ["FieldPath", "ReportError", "SettingsError"]


class ReportError(FazaiError):
    """Writing a report, committing it to the reports branch or pushing that failed."""

    retryable = True
