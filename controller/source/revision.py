"""How a revision is written: a commit SHA, or ``SHA+dirty`` for a working copy whose
files differ from that commit (modified, staged or untracked files under the source).

A dirty revision names a commit the planned files are *not* at, so it is marked wherever
it is stored or shown, and never taken for a commit (see :func:`commit_of`).
"""

from __future__ import annotations

from typing import TypeGuard

DIRTY = "+dirty"
SHORT = 12


def dirty(sha: str) -> str:
    return sha + DIRTY


def is_dirty(revision: str | None) -> TypeGuard[str]:
    return revision is not None and revision.endswith(DIRTY)


def commit_of(revision: str) -> str | None:
    """The commit ``revision`` is exactly at, or None for a dirty one (its files are not
    in any commit)."""
    return None if is_dirty(revision) else revision


def short(revision: str, width: int = SHORT) -> str:
    """The first ``width`` characters of the SHA, keeping the ``+dirty`` mark."""
    if is_dirty(revision):
        return revision[: len(revision) - len(DIRTY)][:width] + DIRTY
    return revision[:width]
