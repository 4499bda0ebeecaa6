"""A read-only snapshot of the files of a desired-state source.

Directory and git sources both produce a :class:`SourceTree`, so loading, cross-checks and
``File.source`` lookups never care where the bytes came from, and a git ref is read
straight from the object database without a checkout.
"""

from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

DOCUMENT_SUFFIXES = (".yaml", ".yml")
# Folders named like this hold data (File.source payloads), never documents.
DATA_FOLDER = "files"


@dataclass(frozen=True)
class SourceTree:
    """Files by POSIX path relative to the source root, read lazily."""

    description: str  # e.g. "/srv/state" or "https://git.example/x.git@main"
    revision: str | None  # the git commit SHA, when the source is a git commit
    _files: Mapping[str, Callable[[], bytes]] = field(repr=False)
    _sizes: Mapping[str, int] = field(repr=False)
    # Paths (folders end in "/") that exist but are not read, with why: symbolic links
    # that lead outside the source root.
    _refused: Mapping[str, str] = field(default_factory=dict, repr=False)

    def at_revision(self, revision: str | None) -> SourceTree:
        """The same files, recorded as being at ``revision``."""
        return dataclasses.replace(self, revision=revision)

    def paths(self) -> Iterator[str]:
        return iter(sorted(self._files))

    def document_paths(self) -> list[str]:
        return [
            p
            for p in sorted(self._files)
            if p.endswith(DOCUMENT_SUFFIXES) and DATA_FOLDER not in p.split("/")[:-1]
        ]

    def refusal(self, path: str) -> str | None:
        """Why ``path`` (or a folder above it) is not read, or None when it is not refused."""
        parts = path.split("/")
        for end in range(1, len(parts)):
            why = self._refused.get("/".join(parts[:end]) + "/")
            if why:
                return why
        return self._refused.get(path)

    def refused_documents(self) -> list[tuple[str, str]]:
        """Refused paths that would have held documents: links named like a document file,
        and linked folders, outside data folders; with why each is refused."""
        out = []
        for path, why in sorted(self._refused.items()):
            folder = path.endswith("/")
            parts = path.rstrip("/").split("/")
            if DATA_FOLDER in parts[:-1] or (folder and parts[-1] == DATA_FOLDER):
                continue
            if folder or path.endswith(DOCUMENT_SUFFIXES):
                out.append((path, why))
        return out

    def exists(self, path: str) -> bool:
        return path in self._files

    def size(self, path: str) -> int:
        return self._sizes[path]

    def read(self, path: str) -> bytes:
        return self._files[path]()


def resolve_relative(document_file: str, relative: str) -> str | None:
    """Resolve ``relative`` against the folder of ``document_file``; None if it escapes the root."""
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(document_file), relative))
    if joined.startswith("../") or joined == ".." or posixpath.isabs(joined):
        return None
    return joined
