"""Errors of the reports and notifications packages, inside FazAI's exception tree.

FazaiError
├── SettingsError   a ``reports``/``notifications`` section that cannot be used
└── ReportError     a report could not be written or committed (folder, git, push)
"""

from __future__ import annotations

from collections.abc import Sequence

from controller.errors import FazaiError
from controller.model.diagnostics import format_path

FieldPath = tuple[str | int, ...]


class SettingsError(FazaiError):
    """A configuration section is invalid. ``section`` names it (``reports``);
    ``problems`` lists every ``(path, message)`` found, ``path`` being the field inside the
    section, so the config loader can point at the file's line. ``path`` and ``message``
    are the first of them. Messages never carry a secret's value."""

    def __init__(self, section: str, problems: Sequence[tuple[FieldPath, str]]) -> None:
        if not problems:
            raise ValueError("a SettingsError needs at least one problem")
        self.section = section
        self.problems = tuple(sorted(problems, key=lambda p: (tuple(map(str, p[0])), p[1])))
        self.path, self.message = self.problems[0]
        text = "; ".join(f"{format_path((section, *path))}: {msg}" for path, msg in self.problems)
        super().__init__(text)


class ReportError(FazaiError):
    """Writing a report, committing it to the reports branch or pushing that failed."""

    retryable = True
