"""Problems found in documents, each pinned to a file, line and column.

A run collects every problem at once and prints them sorted, in the form compilers use
(``FILE:LINE:COL: KIND/NAME: field.path: message``), so editors can jump to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, order=True)
class Location:
    """A 1-based position in a file of the source, ``file`` relative to the source root."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line <= 0:
            return self.file
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, order=True)
class Diagnostic:
    location: Location
    message: str = field(compare=True)
    subject: str = ""  # "Kind/name" of the document, when known
    path: str = ""  # dotted field path inside the document, when known
    severity: Severity = Severity.ERROR

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def __str__(self) -> str:
        parts = [str(self.location)] if self.location.file else []
        if self.severity is Severity.WARNING:
            parts.append("warning")
        if self.subject:
            parts.append(self.subject)
        if self.path:
            parts.append(self.path)
        parts.append(self.message)
        return ": ".join(parts)


def format_path(path: tuple[str | int, ...]) -> str:
    """``("spec", "content", 0)`` -> ``spec.content[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
